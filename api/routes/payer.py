"""Payer endpoints: the claims addressed to it; acknowledge, adjudicate, record and reverse payment."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ContextDep, GatewayDep, PayerMember, RuntimeDep, format_ref, parse_ref
from api.routes.claims import (
    ERRORS,
    CursorQuery,
    FromQuery,
    StatusQuery,
    ToQuery,
    action_answer,
    claims_page,
    ensure_node,
)
from api.schemas import AcknowledgeIn, AdjudicateIn, ClaimAction, ClaimsPage, ErrorBody, PaymentIn, ReversalIn
from ledger.listing import MAX_PAGE

router = APIRouter(prefix="/v1", tags=["payer"])

STEP_ERRORS = {
    **ERRORS,
    404: {"model": ErrorBody, "description": "No such claim addressed to this payer."},
    409: {"model": ErrorBody, "description": "The claim's status does not allow this step (invalid_transition)."},
}


@router.get(
    "/payer/claims",
    response_model=ClaimsPage,
    summary="List the claims addressed to this payer",
    responses=ERRORS,
)
async def payer_claims(
    member: PayerMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    status: StatusQuery = None,
    submitted_from: FromQuery = None,
    submitted_to: ToQuery = None,
    provider: Annotated[str | None, Query(description="Only claims of this provider.")] = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ClaimsPage:
    return await gateway.read(
        lambda: claims_page(
            runtime,
            member,
            status=status,
            submitted_from=submitted_from,
            submitted_to=submitted_to,
            payer=None,
            provider=provider,
            cursor=cursor,
            limit=limit,
        )
    )


@router.post(
    "/claims/{ref}/acknowledge",
    response_model=ClaimAction,
    summary="Acknowledge a claim (accept or reject, 277CA)",
    description="Submitted -> accepted (A2) or rejected (A3, with a reason). Only the payer it is addressed to.",
    responses=STEP_ERRORS,
)
def acknowledge(
    ref: str, body: AcknowledgeIn, member: PayerMember, runtime: RuntimeDep, ctx: ContextDep
) -> ClaimAction:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    ensure_node(runtime)
    tx = runtime.service.acknowledge(member, key, version, body.accepted, body.reason)
    return action_answer(runtime, member, key, version, tx)


@router.post(
    "/claims/{ref}/adjudicate",
    response_model=ClaimAction,
    summary="Adjudicate a claim",
    description="Accepted -> adjudicated: approved, partly approved or denied, with the allowed amount and CARC codes.",
    responses=STEP_ERRORS,
)
def adjudicate(ref: str, body: AdjudicateIn, member: PayerMember, runtime: RuntimeDep, ctx: ContextDep) -> ClaimAction:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    ensure_node(runtime)
    tx = runtime.service.adjudicate(member, key, version, body.outcome, body.allowed_cents, body.carc_codes)
    return action_answer(runtime, member, key, version, tx)


@router.post(
    "/claims/{ref}/payment",
    response_model=ClaimAction,
    summary="Record the payment of a claim",
    description="Adjudicated -> paid, with the amount and a hash of the 835 remittance or the EFT trace number.",
    responses=STEP_ERRORS,
)
def record_payment(ref: str, body: PaymentIn, member: PayerMember, runtime: RuntimeDep, ctx: ContextDep) -> ClaimAction:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    ensure_node(runtime)
    remittance = _remittance_hash(body.remittance_hash, body.trace)
    tx = runtime.service.record_payment(member, key, version, body.paid_cents, remittance)
    return action_answer(runtime, member, key, version, tx)


@router.post(
    "/claims/{ref}/reversal",
    response_model=ClaimAction,
    summary="Reverse the payment of a claim (835 CLP02 22)",
    description="Paid -> accepted again: the payment is taken back and the claim is open for a corrected "
    "adjudication and payment. Only the payer it is addressed to.",
    responses=STEP_ERRORS,
)
def reverse_payment(
    ref: str, body: ReversalIn, member: PayerMember, runtime: RuntimeDep, ctx: ContextDep
) -> ClaimAction:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    ensure_node(runtime)
    remittance = _remittance_hash(body.remittance_hash, body.trace)
    tx = runtime.service.reverse_payment(member, key, version, remittance)
    return action_answer(runtime, member, key, version, tx)


def _remittance_hash(remittance_hash: str | None, trace: str | None) -> bytes:
    """The 32 bytes the ledger keeps: the hash given, or the SHA-256 of the trace number."""
    if remittance_hash is not None:
        return bytes.fromhex(remittance_hash[2:])
    assert trace is not None  # the body's validator requires one of the two
    return hashlib.sha256(trace.strip().encode("utf-8")).digest()
