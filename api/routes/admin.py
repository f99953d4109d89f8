"""Operator endpoints: organisations and their API keys; and ``/v1/me`` for any key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from api.deps import ConsortiumDep, CurrentMember, GatewayDep, OperatorMember
from api.routes.claims import ERRORS
from api.runtime import note_keys_changed
from api.schemas import (
    ApiKeyIn,
    ApiKeyIssued,
    ApiKeyPublic,
    ErrorBody,
    MemberPublic,
    OrganisationCreated,
    OrganisationIn,
    OrganisationPublic,
)
from api.views import when
from ledger.consortium import ApiKeyInfo, IssuedKey, Organisation

router = APIRouter(prefix="/v1", tags=["admin"])

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorBody, "description": "No such organisation or key."},
    409: {"model": ErrorBody, "description": "The organisation exists already."},
    503: {"model": ErrorBody, "description": "The node is unreachable, or the operator cannot fund the new account."},
}


def _org(org: Organisation) -> OrganisationPublic:
    return OrganisationPublic(**{**org.to_dict(), "created_at": when(org.created_at)})


def _issued(key: IssuedKey) -> ApiKeyIssued:
    return ApiKeyIssued(key=key.key, prefix=key.prefix, organisation=key.organisation, created_at=when(key.created_at))


def _key(info: ApiKeyInfo) -> ApiKeyPublic:
    return ApiKeyPublic(
        prefix=info.prefix,
        organisation=info.organisation,
        label=info.label,
        created_at=when(info.created_at),
        revoked_at=when(info.revoked_at),
    )


@router.get("/me", response_model=MemberPublic, summary="The organisation and role of this API key", responses=ERRORS)
def me(member: CurrentMember) -> MemberPublic:
    return MemberPublic(
        organisation=member.name, role=member.role, org_index=member.org, address=member.account.address
    )


@router.post(
    "/admin/organisations",
    status_code=201,
    response_model=OrganisationCreated,
    summary="Create an organisation",
    description=(
        "A new chain account (its key kept only in the encrypted keystore), funded with gas by the operator, "
        "registered on chain with its role, and a first API key (shown this once). Sending the same request "
        "again finishes a creation that stopped half way."
    ),
    responses=ADMIN_ERRORS,
)
def create_organisation(body: OrganisationIn, member: OperatorMember, consortium: ConsortiumDep) -> OrganisationCreated:
    org = consortium.create_organisation(body.name, body.role)
    key = consortium.issue_key(org.name, label="first key")
    return OrganisationCreated(organisation=_org(org), api_key=_issued(key))


@router.get(
    "/admin/organisations",
    response_model=list[OrganisationPublic],
    summary="List organisations",
    responses=ADMIN_ERRORS,
)
def list_organisations(member: OperatorMember, consortium: ConsortiumDep) -> list[OrganisationPublic]:
    return [_org(o) for o in consortium.organisations()]


@router.post(
    "/admin/organisations/{name}/keys",
    status_code=201,
    response_model=ApiKeyIssued,
    summary="Issue an API key to an organisation",
    responses=ADMIN_ERRORS,
)
def issue_key(
    name: str,
    member: OperatorMember,
    consortium: ConsortiumDep,
    body: Annotated[ApiKeyIn | None, Body()] = None,
) -> ApiKeyIssued:
    return _issued(consortium.issue_key(name.strip().upper(), label=body.label if body else None))


@router.get(
    "/admin/keys", response_model=list[ApiKeyPublic], summary="List API keys (prefixes only)", responses=ADMIN_ERRORS
)
def list_keys(
    member: OperatorMember,
    consortium: ConsortiumDep,
    organisation: Annotated[str | None, Query()] = None,
) -> list[ApiKeyPublic]:
    return [_key(k) for k in consortium.api_keys(organisation.strip().upper() if organisation else None)]


@router.post(
    "/admin/keys/{prefix}/revoke", response_model=ApiKeyPublic, summary="Revoke an API key", responses=ADMIN_ERRORS
)
def revoke_key(prefix: str, member: OperatorMember, consortium: ConsortiumDep, gateway: GatewayDep) -> ApiKeyPublic:
    revoked = consortium.revoke_key(prefix)
    gateway.forget_keys()
    note_keys_changed(gateway.settings.data_dir)
    return _key(revoked)
