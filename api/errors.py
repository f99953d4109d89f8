"""Every error answer in one shape, ``{"error": {"code", "message", "details"}}``, and its HTTP status.

    ledger error family            HTTP   code
    ClaimValidationError            422   claim_invalid (details.problems: field, value, rule, message)
    FormatError                     422   format_invalid (details.rule, details.source: segment, position)
    DuplicateClaimError             409   exact_duplicate (details.existing names the record)
    ClaimNotFoundError              404   claim_not_found (also a claim the caller may not see)
    PermissionDeniedError           403   permission_denied
    LifecycleError                  409   lifecycle_violation
    ChainUnavailableError           503   chain_unavailable, with Retry-After
    NodeError                       503   node_error, with Retry-After
    ContractRevertError             by the contract's error name (REVERT_STATUS), code its snake_case name:
                                    404 unknown claim / organisation; 403 not the claim's provider or
                                    payer, an unknown or inactive account; 409 the claim's state does
                                    not allow it, already exists; 422 any other rule the values broke
    consortium errors               404 unknown organisation / key, 409 exists, 503 operator cannot fund,
                                    422 bad name or role
    anything else                   500   internal_error (no internals: the request id to quote)

And the gateway's own: 401 ``unauthenticated``, 403 ``role_not_allowed``, 413 ``body_too_large``,
422 ``request_invalid`` (FastAPI's request validation, same problem shape),
``idempotency_key_reused`` (422), ``idempotency_in_flight`` (409).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.consortium import (
    ApiKeyNotFoundError,
    ConsortiumError,
    FundingError,
    OrganisationExistsError,
    OrganisationNotFoundError,
)
from ledger.errors import (
    ChainUnavailableError,
    ClaimNotFoundError,
    ClaimValidationError,
    ContractRevertError,
    DuplicateClaimError,
    FormatError,
    InvalidCursorError,
    LedgerError,
    LifecycleError,
    NodeError,
    PermissionDeniedError,
)

log = logging.getLogger("claimledger.api")

DEFAULT_RETRY_AFTER_S = 2

FAMILY_STATUS: tuple[tuple[type[LedgerError], int], ...] = (
    (ClaimValidationError, 422),
    (InvalidCursorError, 422),
    (FormatError, 422),
    (DuplicateClaimError, 409),
    (ClaimNotFoundError, 404),
    (PermissionDeniedError, 403),
    (LifecycleError, 409),
    (ChainUnavailableError, 503),
    (NodeError, 503),
    (OrganisationExistsError, 409),
    (OrganisationNotFoundError, 404),
    (ApiKeyNotFoundError, 404),
    (FundingError, 503),
    (ConsortiumError, 422),
)

REVERT_STATUS: dict[str, int] = {
    "ClaimLedgerUnknownClaim": 404,
    "ClaimLedgerUnknownOrganisation": 404,
    "ClaimLedgerNotClaimProvider": 403,
    "ClaimLedgerNotClaimPayer": 403,
    "ClaimLedgerUnknownAccount": 403,
    "ClaimLedgerOrganisationInactive": 403,
    "AccessControlUnauthorizedAccount": 403,
    "ClaimLedgerInvalidTransition": 409,
    "ClaimLedgerNotPayable": 409,
    "ClaimLedgerOrganisationExists": 409,
    "ClaimLedgerAccountAlreadyMember": 409,
}
"""HTTP status of a contract refusal by its custom error; any other refusal is 422 (the values broke a rule)."""


class ApiError(Exception):
    """An answer the gateway itself gives (auth, roles, limits, idempotency)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def revert_code(error_name: str) -> str:
    """``ClaimLedgerInvalidTransition`` -> ``invalid_transition``: stable, as the contract's error names are."""
    name = error_name.removeprefix("ClaimLedger")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "contract_revert"


def unauthenticated(message: str = "a valid API key is required") -> ApiError:
    return ApiError(
        401,
        "unauthenticated",
        f"{message}: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        headers={"WWW-Authenticate": "Bearer"},
    )


def status_of(exc: LedgerError) -> int:
    if isinstance(exc, ContractRevertError):
        return REVERT_STATUS.get(exc.error, 422)
    for family, status in FAMILY_STATUS:
        if isinstance(exc, family):
            return status
    return 500


def ledger_error_parts(
    exc: LedgerError, request_id: str | None, retry_after_s: int = DEFAULT_RETRY_AFTER_S
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of the answer to ``exc``."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 500:
        log.error("request %s failed: %s: %s", request_id, type(exc).__name__, exc.message)
        return status, internal_body(request_id), headers
    code, details = exc.code, dict(exc.details)
    if isinstance(exc, ContractRevertError):
        code = revert_code(exc.error)
        details = {"contract_error": exc.error, "args": details.get("args", {}), "call": details.get("call")}
    if isinstance(exc, DuplicateClaimError):
        details["existing"] = with_ref(exc.existing)
    if status == 503:
        retry_after = max(retry_after_s, round(getattr(exc, "retry_after", 0)))
        headers["Retry-After"] = str(retry_after)
        details["retry_after"] = retry_after
    return status, error_body(code, exc.message, details), headers


def internal_body(request_id: str | None) -> dict[str, Any]:
    return error_body(
        "internal_error",
        f"the gateway failed on this request; quote request id {request_id} to its operator",
        {"request_id": request_id},
    )


def with_ref(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record naming a ledger claim, with its ``ref`` (``0x<exact key>:<version>``) added."""
    if record is None:
        return None
    key, version = record.get("exact_key"), record.get("version")
    return {"ref": f"{key}:{version}" if key and version else None, **record}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install(app: FastAPI, *, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> None:
    async def on_ledger_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LedgerError)
        status, body, headers = ledger_error_parts(exc, _request_id(request), retry_after_s)
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status_code, headers=exc.headers)

    async def on_request_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                "value": _jsonable(e.get("input")),
                "rule": e.get("type", "invalid"),
                "message": e.get("msg", "invalid value"),
            }
            for e in exc.errors()
        ]
        first = problems[0]["message"] if problems else "invalid request"
        return JSONResponse(
            error_body(
                "request_invalid",
                f"the request is not valid: {len(problems)} problem(s), first: {first}",
                {"problems": problems},
            ),
            status_code=422,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 401: "unauthenticated"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))

    app.add_exception_handler(LedgerError, on_ledger_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_request_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
