"""Shared dependencies: the runtime's parts, the calling member, roles, claim refs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from api.errors import ApiError, unauthenticated
from api.gateway import Gateway
from api.middleware import RequestContext, context
from api.runtime import Runtime
from ledger.consortium import Consortium
from ledger.errors import ChainUnavailableError
from ledger.service import ClaimLedgerService, Member, parse_ledger_ref

# Declared for the OpenAPI schema (and its "Authorize" button); the key itself is read once per
# request by Gateway.authenticate_scope, from either header.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key in `X-API-Key`")


# The dependencies are coroutines: FastAPI runs a plain function dependency in a worker thread,
# a hop (and a turn at the GIL) per dependency per request for what takes microseconds.


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_gateway(request: Request) -> Gateway:
    return _gateway(request)


async def get_runtime(request: Request) -> Runtime:
    runtime = _gateway(request).runtime
    if runtime is None:
        raise ChainUnavailableError("the gateway is starting or stopping: retry shortly")
    return runtime


async def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ClaimLedgerService:
    return runtime.service


async def get_consortium(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Consortium:
    return runtime.consortium


async def get_context(request: Request) -> RequestContext:
    return context(request.scope)


async def current_member(
    request: Request,
    _runtime: Annotated[Runtime, Depends(get_runtime)],
    _b: Annotated[object, Security(_bearer)] = None,
    _k: Annotated[object, Security(_api_key)] = None,
) -> Member:
    member = await _gateway(request).authenticate(request.scope)
    if member is None:
        given = request.headers.get("authorization") or request.headers.get("x-api-key")
        raise unauthenticated("the API key is unknown or revoked" if given else "no API key")
    return member


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[ClaimLedgerService, Depends(get_service)]
ConsortiumDep = Annotated[Consortium, Depends(get_consortium)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
CurrentMember = Annotated[Member, Depends(current_member)]


def require_role(*roles: str) -> Callable[[Member], Awaitable[Member]]:
    """A dependency: the calling member, if its role is one of ``roles``; else 403."""

    async def check(member: CurrentMember) -> Member:
        if member.role not in roles:
            raise ApiError(
                403,
                "role_not_allowed",
                f"{member.name} is a {member.role}; this takes a {' or '.join(roles)} key",
                {"role": member.role, "allowed": list(roles)},
            )
        return member

    return check


ProviderMember = Annotated[Member, Depends(require_role("provider"))]
PayerMember = Annotated[Member, Depends(require_role("payer"))]
AuditorMember = Annotated[Member, Depends(require_role("auditor"))]
ReaderMember = Annotated[Member, Depends(require_role("provider", "payer", "auditor"))]
OperatorMember = Annotated[Member, Depends(require_role("operator"))]


def parse_ref(ref: str) -> tuple[bytes, int]:
    """``0x<64 hex exact key>:<version>`` -> (exact key, version); else 422 ``ref_invalid``."""
    parsed = parse_ledger_ref(ref)
    if parsed is None:
        raise ApiError(
            422,
            "ref_invalid",
            f"{ref!r} is not a ledger claim reference: write it 0x<64 hex digits of the exact key>:<version>",
            {"ref": ref},
        )
    return parsed


def format_ref(exact_key: bytes | str, version: int) -> str:
    key = exact_key if isinstance(exact_key, str) else "0x" + exact_key.hex()
    return f"{key.lower()}:{version}"
