"""History, verification, auditor reports (JSON or CSV) and the access audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from api.deps import AuditorMember, ContextDep, GatewayDep, ReaderMember, RuntimeDep, format_ref, parse_ref
from api.routes.claims import CLAIM_BODY, ERRORS
from api.runtime import Runtime
from api.schemas import (
    CLAIM_EXAMPLES,
    AccessEntry,
    AccessLogPage,
    AccessLogVerification,
    AnchorCheck,
    ClaimHistory,
    DuplicatesReport,
    DuplicatesRow,
    ErrorBody,
    PayerRow,
    PayersReport,
    VerifyResult,
)
from api.views import claim_public, history_event, when
from ledger import reports
from ledger.errors import ClaimNotFoundError

router = APIRouter(prefix="/v1", tags=["audit"])

CSV = "text/csv"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV: {"schema": {"type": "string"}}},
        "description": "JSON, or CSV with ?format=csv or Accept: text/csv.",
    }
}


@router.get(
    "/claims/{ref}/history",
    response_model=ClaimHistory,
    summary="The full history of a claim",
    description=(
        "Every event of the claim on chain, oldest first: who (organisation, account), what (the event and its "
        "values), when (block time), block and transaction. A refused exact duplicate of it is there too."
    ),
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such claim that you may see."}},
)
async def claim_history(
    ref: str, member: ReaderMember, runtime: RuntimeDep, gateway: GatewayDep, ctx: ContextDep
) -> ClaimHistory:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]

    def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return runtime.service.claim_for(member, key, version), runtime.service.history(key, version)

    record, events = await gateway.read(read)
    return ClaimHistory(
        ref=format_ref(key, version),
        claim=claim_public(record, runtime.consortium),
        events=[history_event(e, runtime.consortium) for e in events],
    )


@router.post(
    "/verify",
    response_model=VerifyResult,
    summary="Verify a claim document against the ledger",
    description=(
        "Whether this exact document (after the ledger's normal form) is one recorded, which claim, and its "
        "status. Any change to the document gives `matches: false`. Answers for claims the caller may see."
    ),
    responses=ERRORS,
    openapi_extra=CLAIM_BODY,
)
def verify(
    claim: Annotated[dict[str, Any], Body(openapi_examples=CLAIM_EXAMPLES)],
    member: ReaderMember,
    runtime: RuntimeDep,
    ctx: ContextDep,
) -> VerifyResult:
    found = runtime.service.verify(claim)
    if not found.get("matches"):
        return VerifyResult(matches=False)
    key = bytes.fromhex(found["exact_key"][2:])
    try:
        runtime.service.claim_for(member, key, found["version"])
    except ClaimNotFoundError:
        return VerifyResult(matches=False)
    ref = format_ref(key, found["version"])
    ctx.claims = [ref]
    return VerifyResult(
        matches=True,
        ref=ref,
        exact_key=found["exact_key"],
        version=found["version"],
        status=found["status"],
        key_id=found.get("key_id"),
    )


# ---------------------------------------------------------------------- reports


def _period(start: date | None, end: date | None) -> tuple[int, int]:
    """[start 00:00 UTC, the day after end 00:00 UTC); open ends are the epoch and tomorrow."""
    first = int(datetime.combine(start, time.min, UTC).timestamp()) if start else 0
    last_day = end or (datetime.now(UTC).date())
    return first, int(datetime.combine(last_day + timedelta(days=1), time.min, UTC).timestamp())


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return CSV in accept and "application/json" not in accept


ReportFrom = Annotated[date | None, Query(alias="from", description="First day of the period (UTC).")]
ReportTo = Annotated[date | None, Query(alias="to", description="Last day of the period (UTC), included.")]
ReportFormat = Annotated[Literal["json", "csv"] | None, Query(alias="format")]


def _named(rows: list[dict[str, Any]], runtime: Runtime, column: str, name: str) -> list[dict[str, Any]]:
    return [{name: runtime.consortium.name_of(r[column]), **r} for r in rows]


@router.get(
    "/reports/duplicates",
    response_model=DuplicatesReport,
    summary="Refused duplicates and suspect flags per provider over a period",
    responses={**ERRORS, **CSV_RESPONSE},
)
def duplicates_report(
    request: Request,
    member: AuditorMember,
    runtime: RuntimeDep,
    period_from: ReportFrom = None,
    period_to: ReportTo = None,
    fmt: ReportFormat = None,
) -> Any:
    start, end = _period(period_from, period_to)
    rows = _named(runtime.service.duplicates_by_provider(start, end), runtime, "provider_org", "provider")
    if _wants_csv(request, fmt):
        return Response(reports.to_csv(rows), media_type=CSV)
    return DuplicatesReport(period_from=when(start), period_to=when(end), rows=[DuplicatesRow(**r) for r in rows])


@router.get(
    "/reports/payers",
    response_model=PayersReport,
    summary="Denial rate and days from submission to payment per payer over a period",
    responses={**ERRORS, **CSV_RESPONSE},
)
def payers_report(
    request: Request,
    member: AuditorMember,
    runtime: RuntimeDep,
    period_from: ReportFrom = None,
    period_to: ReportTo = None,
    fmt: ReportFormat = None,
) -> Any:
    start, end = _period(period_from, period_to)
    rows = _named(runtime.service.payer_figures(start, end), runtime, "payer_org", "payer")
    if _wants_csv(request, fmt):
        return Response(reports.to_csv(rows), media_type=CSV)
    return PayersReport(period_from=when(start), period_to=when(end), rows=[PayerRow(**r) for r in rows])


# ---------------------------------------------------------------------- access audit log


@router.get(
    "/audit/access-log",
    response_model=AccessLogPage,
    summary="Read the access audit log",
    description="Who read or changed which claim, when, with which request and outcome; hash-chained, oldest first.",
    responses=ERRORS,
)
def access_log(
    member: AuditorMember,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, description="Entries after this position.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    claim: Annotated[str | None, Query(description="Only entries about this claim ref.")] = None,
) -> AccessLogPage:
    entries = runtime.access_log.entries(after=after, limit=limit, claim=claim)
    shown = [AccessEntry(**{**e.to_dict(), "at": when(e.at)}) for e in entries]
    return AccessLogPage(entries=shown, next_after=shown[-1].seq if len(shown) == limit else None)


@router.get(
    "/audit/access-log/verify",
    response_model=AccessLogVerification,
    summary="Verify the access audit log's hash chain and its on-chain anchors",
    description="`ok: false` names the first broken position (an altered, missing or reordered entry).",
    responses=ERRORS,
)
def verify_access_log(member: AuditorMember, runtime: RuntimeDep) -> AccessLogVerification:
    return access_log_verification(runtime)


def access_log_verification(runtime: Runtime) -> AccessLogVerification:
    result = runtime.access_log.verify()
    anchors = []
    for anchor in runtime.access_log.anchors():
        try:
            holds = runtime.access_log.check_anchor(anchor)
        except Exception:  # noqa: BLE001 - an anchored entry that is gone is a broken anchor
            holds = False
        anchors.append(AnchorCheck(**anchor, holds=holds))
    return AccessLogVerification(
        ok=result.ok and all(a.holds for a in anchors),
        entries=result.entries,
        head=result.head,
        first_broken=result.first_broken,
        reason=result.reason,
        anchors=anchors,
    )
