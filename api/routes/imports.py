"""Standard formats through the gateway: X12 837 and FHIR Claim in, 835 payment posting, ClaimResponse out.

The body is the file as it is (an X12 interchange, a FHIR JSON resource). Each claim of it is
answered as the JSON batch path answers it (``ClaimResult``), with where it was in the file
(``source``: segment, position, envelope control numbers). A part of the file the standard
rejects on its own (one ST..SE set with a wrong SE01, one group with a wrong GE01) is listed
in ``rejected`` and the rest is still taken; a file that cannot be read at all (truncated,
wrong IEA01, not UTF-8, over the size limit) is refused whole, 422 ``format_invalid`` naming
the segment and position, and nothing of it is submitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import (
    ContextDep,
    GatewayDep,
    PayerMember,
    ProviderMember,
    ReaderMember,
    RuntimeDep,
    format_ref,
    parse_ref,
)
from api.gateway import Gateway
from api.middleware import RequestContext
from api.routes.claims import ERRORS, count_results, ensure_node, refs_touched, submit_documents
from api.runtime import Runtime
from api.schemas import ImportAnswer, ImportedClaimResult, RemittanceAnswer
from ledger.errors import FormatError
from ledger.formats import ImportedClaim
from ledger.formats.fhir import claim_response, read_fhir_claim
from ledger.formats.x835 import read_835
from ledger.formats.x837 import read_837
from ledger.remittance import PostingSummary, post_remittance
from ledger.service import Member

router = APIRouter(prefix="/v1", tags=["formats"])

FileQuery = Annotated[
    str | None, Query(max_length=255, description="The file's name, echoed in every answer's source.")
]

IMPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    207: {"description": "Some claims were not recorded (or not posted): read each result."},
    413: {"description": "The file is larger than the gateway takes (settings.max_import_bytes)."},
}


def _x12_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/edi-x12": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    }


async def _import_claims(
    request: Request,
    read: Callable[[bytes], tuple[str, list[ImportedClaim], list[FormatError]]],
    runtime: Runtime,
    gateway: Gateway,
    ctx: RequestContext,
    member: Member,
    response: Response,
    file: str | None,
) -> ImportAnswer:
    """Read the body with ``read`` (off the event loop) and answer it as :func:`_answer_claims` does."""
    data = await request.body()

    def work() -> ImportAnswer:
        ensure_node(runtime)
        kind, items, rejected = read(data)
        return _answer_claims(
            runtime, gateway, ctx, member, response, kind=kind, file=file, items=items, rejected=rejected
        )

    return await run_in_threadpool(work)


def _answer_claims(
    runtime: Runtime,
    gateway: Gateway,
    ctx: RequestContext,
    member: Member,
    response: Response,
    *,
    kind: str,
    file: str | None,
    items: list[ImportedClaim],
    rejected: list[FormatError],
) -> ImportAnswer:
    """Submit the readable items (in batches the JSON path takes) and answer every item in file order."""
    results: list[ImportedClaimResult | None] = [None] * len(items)
    readable = [i for i, item in enumerate(items) if item.data is not None]
    limit = runtime.settings.max_batch_claims
    for start in range(0, len(readable), limit):
        chunk = readable[start : start + limit]
        answers = submit_documents(runtime, member, [items[i].data for i in chunk])
        for i, answer in zip(chunk, answers, strict=True):
            results[i] = ImportedClaimResult.model_validate(
                {**answer.model_dump(), "source": items[i].source.to_dict()}
            )
    for i, item in enumerate(items):
        if results[i] is None:
            results[i] = ImportedClaimResult.model_validate(
                {
                    "status": "invalid",
                    "http_status": 422,
                    "claim_id": item.claim_id,
                    "problems": [p.to_dict() for p in item.problems],
                    "source": item.source.to_dict(),
                }
            )
    final = [r for r in results if r is not None]
    count_results(gateway, final)
    ctx.claims = refs_touched(final)
    summary = {str(status): n for status, n in Counter(r.status for r in final).items()}
    summary["suspect"] = sum(1 for r in final if r.suspect)
    summary["rejected_parts"] = len(rejected)
    clean = all(r.status in ("recorded", "voided") for r in final) and not rejected
    response.status_code = 200 if clean else 207
    return ImportAnswer.model_validate(
        {
            "format": kind,
            "file": file,
            "results": final,
            "rejected": [e.to_dict() for e in rejected],
            "summary": summary,
        }
    )


@router.post(
    "/imports/837",
    response_model=ImportAnswer,
    summary="Submit the claims of an X12 837P or 837I file",
    description="One result per claim (CLM), in file order, each as `POST /v1/claims` would answer it, with its "
    "source segment and position. 200 when every claim was recorded, 207 when any was not.",
    responses=IMPORT_ERRORS,
    openapi_extra=_x12_body("An X12 005010 837P (X222A1) or 837I (X223A2) interchange."),
)
async def import_837(
    request: Request,
    member: ProviderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    ctx: ContextDep,
    response: Response,
    file: FileQuery = None,
) -> ImportAnswer:
    def read(data: bytes) -> tuple[str, list[ImportedClaim], list[FormatError]]:
        parsed = read_837(data, file=file)
        return parsed.kind, parsed.claims, parsed.rejected

    return await _import_claims(request, read, runtime, gateway, ctx, member, response, file)


@router.post(
    "/imports/fhir",
    response_model=ImportAnswer,
    summary="Submit a FHIR R4 Claim, or a Bundle of Claims",
    description="Each Claim answered as `POST /v1/claims` would answer it, with the entry it came from. "
    "FHIR R4 JSON (read with the R4B models, wire-compatible for Claim).",
    responses=IMPORT_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/fhir+json": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def import_fhir(
    request: Request,
    member: ProviderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    ctx: ContextDep,
    response: Response,
    file: FileQuery = None,
) -> ImportAnswer:
    def read(data: bytes) -> tuple[str, list[ImportedClaim], list[FormatError]]:
        return "FHIR", read_fhir_claim(data, file=file), []

    return await _import_claims(request, read, runtime, gateway, ctx, member, response, file)


@router.post(
    "/imports/835",
    response_model=RemittanceAnswer,
    summary="Post the payments of an X12 835 remittance",
    description="Each CLP matched to its claim (CLP01 = the provider's claim id) among the claims addressed to "
    "the calling payer and moved along the payer steps: acknowledged, adjudicated (allowed = CLP04 + CLP05, CARC "
    "codes from CAS) and paid; CLP02 4 denies, 22 reverses a payment. 200 when every CLP was posted (or was "
    "already), 207 when any was refused: read each result.",
    responses=IMPORT_ERRORS,
    openapi_extra=_x12_body("An X12 005010 835 (X221A1) interchange."),
)
async def import_835(
    request: Request,
    member: PayerMember,
    runtime: RuntimeDep,
    ctx: ContextDep,
    response: Response,
    file: FileQuery = None,
) -> RemittanceAnswer:
    data = await request.body()

    def work() -> RemittanceAnswer:
        ensure_node(runtime)
        parsed = read_835(data, file=file)
        results = []
        for remittance in parsed.remittances:
            results += post_remittance(runtime.service, member, remittance)
        summary = PostingSummary()
        summary.add(results, parsed.rejected)
        ctx.claims = [r.ref for r in results if r.ref]
        response.status_code = 200 if summary.refused == 0 and not parsed.rejected else 207
        return RemittanceAnswer.model_validate(
            {
                "file": file,
                "remittances": [
                    {
                        "source": r.source.to_dict(),
                        "payer_id": r.payer_id,
                        "payee_npi": r.payee_npi,
                        "trace_number": r.trace_number,
                        "payment_cents": r.payment_cents,
                        "payment_date": r.payment_date,
                        "remittance_hash": "0x" + r.digest.hex(),
                        "claims": len(r.claims),
                    }
                    for r in parsed.remittances
                ],
                "results": [r.to_dict() for r in results],
                "rejected": [e.to_dict() for e in parsed.rejected],
                "summary": summary.to_dict(),
            }
        )

    return await run_in_threadpool(work)


@router.get(
    "/claims/{ref}/claim-response",
    summary="The claim's adjudication and payment as a FHIR R4 ClaimResponse",
    responses={**ERRORS, 200: {"content": {"application/fhir+json": {}}}},
)
def fhir_claim_response(ref: str, member: ReaderMember, runtime: RuntimeDep, ctx: ContextDep) -> Response:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    service = runtime.service
    record = service.claim_for(member, key, version)
    body = claim_response(
        record,
        claim_id=_claim_id(runtime, record),
        history=service.history(key, version),
        payer=runtime.consortium.name_of(record["payer_org"]),
        provider=runtime.consortium.name_of(record["provider_org"]),
    )
    return Response(orjson.dumps(body), media_type="application/fhir+json")


def _claim_id(runtime: Runtime, record: dict[str, Any]) -> str | None:
    """The provider's claim id, when this gateway holds the claim's document."""
    claim_id = (runtime.service.document_of(record) or {}).get("claim_id")
    return claim_id if isinstance(claim_id, str) else None
