"""Provider endpoints: submit one claim or a batch, list and read claims, void, replace."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Query, Response

from api.deps import (
    ContextDep,
    GatewayDep,
    ProviderMember,
    ReaderMember,
    RuntimeDep,
    format_ref,
    parse_ref,
)
from api.errors import ApiError, error_body
from api.futures import wait_all
from api.gateway import Gateway
from api.metrics import Metrics
from api.middleware import RequestContext
from api.runtime import Runtime
from api.schemas import (
    CLAIM_EXAMPLES,
    REPLACEMENT_EXAMPLE,
    BatchIn,
    BatchResult,
    ClaimAction,
    ClaimPublic,
    ClaimResult,
    ClaimsPage,
    ErrorBody,
)
from api.views import claim_public, claim_result
from ledger.chain import STATUSES
from ledger.claim import normalise_claim_data
from ledger.errors import ChainUnavailableError, ClaimNotFoundError, LedgerError
from ledger.listing import MAX_PAGE, ClaimFilter
from ledger.service import ClaimOutcome, Member, QueuedSubmission, StagedSubmission, WouldBlock, parse_ledger_ref

router = APIRouter(prefix="/v1", tags=["claims"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid API key."},
    403: {"model": ErrorBody, "description": "The key's role may not do this, or not to this claim."},
    413: {"model": ErrorBody, "description": "The body is larger than the gateway takes."},
    422: {"model": ErrorBody, "description": "Invalid: every problem listed (field, value, rule, message)."},
    503: {"model": ErrorBody, "description": "The node is unreachable; nothing was accepted. Retry after Retry-After."},
}
CLAIM_SCHEMA = {"$ref": "#/components/schemas/Claim"}
CLAIM_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": CLAIM_SCHEMA}}}}
CHANGING_FREQUENCIES = ("7", "8")
LISTABLE_STATUSES = tuple(s for s in STATUSES if s != "none")
LOOP_STAGE_MAX = 4
"""Up to this many claims a request are checked on the event loop; a larger batch in a worker thread."""


# ---------------------------------------------------------------------- shared with other routers


def ensure_node(runtime: Runtime) -> None:
    """Refuse at once (503) while the node is unreachable, rather than queue work behind it (a probe, unless
    a recent call found it up or calls are waiting on a busy node: Runtime.node_answered_recently)."""
    if not runtime.node_answers():
        raise ChainUnavailableError(f"the node at {runtime.rpc_url} does not answer: nothing was accepted; retry later")


async def ensure_node_async(runtime: Runtime) -> None:
    """:func:`ensure_node` on the event loop: a call to the node within settings.node_check_s that found it
    up will do (the pipelines' and the indexer's count), else one probe that concurrent requests share."""
    if not await runtime.node_answers_async():
        raise ChainUnavailableError(f"the node at {runtime.rpc_url} does not answer: nothing was accepted; retry later")


def _changes_claim(document: Any) -> tuple[str, str | None] | None:
    """(frequency, original ref) of a replacement or void document, in the ledger's normal form."""
    if not isinstance(document, dict):
        return None
    normal = normalise_claim_data(document)
    frequency = normal.get("frequency")
    if frequency not in CHANGING_FREQUENCIES:
        return None
    original = normal.get("original_claim_id")
    return str(frequency), original if isinstance(original, str) else None


def _original_refused(runtime: Runtime, member: Member, document: Any) -> ClaimResult | None:
    """A replacement or void may only name a claim of the caller's own: 404 unseen, 403 not its own."""
    change = _changes_claim(document)
    if change is None or change[1] is None:
        return None  # an original, or the ledger's validation names the missing original
    claim_id = document.get("claim_id") if isinstance(document.get("claim_id"), str) else None
    ref = change[1]
    parsed = parse_ledger_ref(ref)
    if parsed is None:
        return None  # a claim id (837 REF*F8): the ledger looks for it among the caller's own claims
    key, version = parsed
    try:
        record = runtime.service.claim_for(member, key, version)
    except ClaimNotFoundError as exc:
        return _failed(claim_id, 404, exc)
    if record["provider_org"] != member.org:
        return _failed(
            claim_id,
            403,
            LedgerError(
                f"{member.name} did not submit claim {ref}: only its provider may replace or void it",
                details={"original": ref},
            ),
            code="permission_denied",
        )
    return None


def _failed(claim_id: str | None, status: int, exc: LedgerError, *, code: str | None = None) -> ClaimResult:
    body = error_body(code or exc.code, exc.message, exc.details)["error"]
    return ClaimResult(status="failed", http_status=status, claim_id=claim_id, error=body)


def submit_documents(runtime: Runtime, member: Member, documents: Sequence[Any]) -> list[ClaimResult]:
    """One result per document, in order: the ledger's outcome, or the gateway's refusal of the original named."""
    ensure_node(runtime)
    results: list[ClaimResult | None] = [_original_refused(runtime, member, d) for d in documents]
    to_submit = [i for i, r in enumerate(results) if r is None]
    if to_submit:
        outcomes: list[ClaimOutcome] = runtime.service.submit(member, [documents[i] for i in to_submit])
        for i, outcome in zip(to_submit, outcomes, strict=True):
            results[i] = claim_result(outcome)
    final = [r for r in results if r is not None]
    return final


async def submit_documents_async(
    runtime: Runtime,
    member: Member,
    documents: Sequence[Any],
    *,
    checks: anyio.CapacityLimiter | None = None,
    metrics: Metrics | None = None,
) -> list[ClaimResult]:
    """:func:`submit_documents` for a coroutine. A few original claims are checked and fingerprinted on
    the event loop and wait for their documents' write and for the chain without holding a thread; a
    batch is checked in one worker thread (``checks`` limits how many at once); a replacement or void
    goes the thread way whole. ``metrics`` is given the time each stage took."""
    await ensure_node_async(runtime)
    if any(_changes_claim(d) is not None for d in documents):
        # A replacement or void reads the index for the claim it names: all of it in a worker thread.
        return await anyio.to_thread.run_sync(submit_documents, runtime, member, documents)
    service = runtime.service
    started = monotonic()
    staged: StagedSubmission | None = None
    if len(documents) <= LOOP_STAGE_MAX:
        # A few claims: checked and fingerprinted right here (a fraction of a millisecond of CPU, less
        # than a worker thread's hop costs), unless a step would wait on the node or the store.
        with contextlib.suppress(WouldBlock):
            staged = service.stage(member, documents, blocking=False)
    if staged is None:
        staged = await anyio.to_thread.run_sync(lambda: service.stage(member, documents), limiter=checks)
    ready = staged
    checked_at = monotonic()
    await asyncio.wrap_future(ready.stored)  # the documents' write, awaited holding no thread
    stored_at = monotonic()
    queued: QueuedSubmission | None = None
    if len(documents) <= LOOP_STAGE_MAX:  # a batch's queueing (a future a claim) would hold up the loop
        with contextlib.suppress(WouldBlock):  # unless the account's pipeline is not started yet
            queued = service.queue_stored(ready, blocking=False)
    if queued is None:
        queued = await anyio.to_thread.run_sync(lambda: service.queue_stored(ready), limiter=checks)
    queued_at = monotonic()
    rpc = service.rpc

    def node_gone() -> bool:  # a call since the claims were queued found the node unreachable
        return rpc.failed_at > queued_at and rpc.failed_at > rpc.answered_at

    answered = await wait_all(queued.futures, max(0.0, queued.deadline - queued_at), give_up=node_gone)
    if answered and metrics is not None:
        metrics.observe_submission(
            {
                "check": checked_at - started,
                "store": stored_at - checked_at,
                "queue": queued_at - stored_at,
                "chain": monotonic() - queued_at,
            }
        )
    if not answered and node_gone():
        raise ChainUnavailableError(
            f"the node at {runtime.rpc_url} stopped answering while the claims waited for it: they are kept "
            "and may still be recorded when it is back; retry with the same Idempotency-Key or look them up",
            retry_after=runtime.settings.retry_after_s,
        )
    return [claim_result(outcome) for outcome in queued.outcomes()]


def count_results(gateway: Gateway, results: Sequence[ClaimResult]) -> None:
    for status, n in Counter(r.status for r in results).items():
        gateway.metrics.count_claims(status, n)


def refs_touched(results: Sequence[ClaimResult]) -> list[str]:
    """The ledger claims a submission recorded, voided, or tried to duplicate (for the access log)."""
    refs = []
    for r in results:
        ref = r.ref or (r.existing.ref if r.existing else None)
        if ref:
            refs.append(ref)
    return refs


def single_answer(result: ClaimResult, response: Response, *, retry_after_s: int) -> ClaimResult:
    """The answer to a one-claim POST: 201 recorded, 200 voided, else the error in the common shape."""
    if result.status in ("recorded", "voided"):
        response.status_code = result.http_status
        if result.ref:
            response.headers["Location"] = f"/v1/claims/{result.ref}"
        return result
    if result.status == "duplicate":
        existing = result.existing.model_dump() if result.existing else None
        shown = existing["ref"] if existing else "an earlier claim"
        raise ApiError(
            409,
            "exact_duplicate",
            f"claim {result.claim_id} is an exact duplicate of ledger claim {shown} (CARC 18): it was not recorded; "
            "void or replace that claim rather than send it again",
            {"existing": existing, "carc": "18", "claim_id": result.claim_id},
        )
    if result.status == "invalid":
        problems = [p.model_dump() for p in result.problems]
        first = problems[0]["message"] if problems else "no detail"
        raise ApiError(
            422,
            "claim_invalid",
            f"claim {result.claim_id or '(no id)'} is not clean: {len(problems)} problem(s), first: {first}",
            {"problems": problems, "claim_id": result.claim_id},
        )
    error = result.error
    assert error is not None
    headers = {"Retry-After": str(retry_after_s)} if result.http_status == 503 else None
    raise ApiError(result.http_status, error.code, error.message, error.details, headers)


# ---------------------------------------------------------------------- submit


@router.post(
    "/claims",
    status_code=201,
    response_model=ClaimResult,
    summary="Submit one claim",
    description=(
        "201 recorded (with its ledger receipt; `suspect` and `suspects` name any live claim a line matches); "
        "200 for a void (frequency 8); 409 `exact_duplicate` naming the record already on the ledger (CARC 18); "
        "422 `claim_invalid` with every problem. A replacement (frequency 7) or void (8) names the claim it "
        "changes in `original_claim_id` as `0x<exact key>:<version>`."
    ),
    responses={
        **ERRORS,
        200: {"model": ClaimResult, "description": "Voided."},
        409: {"model": ErrorBody, "description": "An exact duplicate of a live claim."},
    },
    openapi_extra=CLAIM_BODY,
)
async def submit_claim(
    claim: Annotated[dict[str, Any], Body(openapi_examples=CLAIM_EXAMPLES)],
    member: ProviderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    ctx: ContextDep,
    response: Response,
) -> ClaimResult:
    return await answer_single_claim(runtime, member, gateway, ctx, claim, response)


async def answer_single_claim(
    runtime: Runtime, member: Member, gateway: Gateway, ctx: RequestContext, claim: dict[str, Any], response: Response
) -> ClaimResult:
    """What a one-claim POST answers (the route above, and ``api.fast_path`` for the plain case): the
    ledger's outcome, counted, its claim noted for the access log; ``response`` gets the status and Location."""
    [result] = await submit_documents_async(runtime, member, [claim], metrics=gateway.metrics)
    count_results(gateway, [result])
    ctx.claims = refs_touched([result])
    return single_answer(result, response, retry_after_s=runtime.settings.retry_after_s)


@router.post(
    "/claims/batch",
    response_model=BatchResult,
    summary="Submit a batch of claims",
    description=(
        "One result per claim, in the order sent, each with the status it alone would have had "
        "(`http_status`). The answer is 200 when every claim was recorded (or voided), 207 Multi-Status "
        "when any was not: read each result."
    ),
    responses={**ERRORS, 207: {"model": BatchResult, "description": "Some claims were not recorded."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["claims"],
                        "properties": {"claims": {"type": "array", "items": {"$ref": "#/components/schemas/Claim"}}},
                    }
                }
            },
        }
    },
)
async def submit_batch(
    batch: Annotated[
        BatchIn,
        Body(
            openapi_examples={
                "two": {
                    "summary": "Two claims",
                    "value": {
                        "claims": [
                            CLAIM_EXAMPLES["original"]["value"],
                            {
                                **CLAIM_EXAMPLES["original"]["value"],
                                "claim_id": "CLM-0002",
                                "member_id": "MBR100200301",
                            },
                        ]
                    },
                }
            }
        ),
    ],
    member: ProviderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    ctx: ContextDep,
    response: Response,
) -> BatchResult:
    limit = runtime.settings.max_batch_claims
    if len(batch.claims) > limit:
        raise ApiError(
            422,
            "batch_too_large",
            f"a batch takes at most {limit} claims, not {len(batch.claims)}: split it",
            {"max_batch_claims": limit, "claims": len(batch.claims)},
        )
    results = await submit_documents_async(
        runtime, member, batch.claims, checks=gateway.batch_checks, metrics=gateway.metrics
    )
    count_results(gateway, results)
    ctx.claims = refs_touched(results)
    summary = {str(status): n for status, n in Counter(r.status for r in results).items()}
    response.status_code = 200 if all(r.status in ("recorded", "voided") for r in results) else 207
    return BatchResult(results=results, summary=summary)


# ---------------------------------------------------------------------- read


def _day_start(day: date | None) -> int | None:
    return None if day is None else int(datetime.combine(day, time.min, UTC).timestamp())


def _org_filter(runtime: Runtime, name: str | None, what: str) -> int | None:
    if name is None:
        return None
    index = runtime.service.org_index(name.strip().upper())
    if not index:
        raise ApiError(422, "unknown_organisation", f"{what} {name!r} is not a consortium member", {what: name})
    return index


def claims_page(
    runtime: Runtime,
    member: Member,
    *,
    status: list[str] | None,
    submitted_from: date | None,
    submitted_to: date | None,
    payer: str | None,
    provider: str | None,
    cursor: str | None,
    limit: int,
) -> ClaimsPage:
    for s in status or ():
        if s not in LISTABLE_STATUSES:
            raise ApiError(
                422,
                "request_invalid",
                f"status {s!r} is not one of {', '.join(LISTABLE_STATUSES)}",
                {
                    "problems": [
                        {
                            "field": "query.status",
                            "value": s,
                            "rule": "enum",
                            "message": f"one of {', '.join(LISTABLE_STATUSES)}",
                        }
                    ]
                },
            )
    where = ClaimFilter(
        statuses=tuple(status or ()),
        submitted_from=_day_start(submitted_from),
        submitted_before=_day_start(submitted_to + timedelta(days=1)) if submitted_to else None,
        payer_org=_org_filter(runtime, payer, "payer"),
        provider_org=_org_filter(runtime, provider, "provider"),
    )
    rows, next_cursor = runtime.service.list_claims(member, where, cursor=cursor, limit=limit)
    return ClaimsPage(items=[claim_public(r, runtime.consortium) for r in rows], next_cursor=next_cursor)


StatusQuery = Annotated[list[str] | None, Query(description="Only claims in these statuses (repeat it).")]
FromQuery = Annotated[date | None, Query(alias="from", description="Submitted on or after this day (UTC).")]
ToQuery = Annotated[date | None, Query(alias="to", description="Submitted on or before this day (UTC).")]
CursorQuery = Annotated[str | None, Query(description="next_cursor of the previous page.")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE)]


@router.get(
    "/claims",
    response_model=ClaimsPage,
    summary="List claims",
    description="A provider sees the claims it submitted, a payer those addressed to it, an auditor all. Newest first.",
    responses=ERRORS,
)
async def list_claims(
    member: ReaderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    status: StatusQuery = None,
    submitted_from: FromQuery = None,
    submitted_to: ToQuery = None,
    payer: Annotated[str | None, Query(description="Only claims addressed to this payer, e.g. PAYER-ACME.")] = None,
    provider: Annotated[str | None, Query(description="Only claims of this provider.")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> ClaimsPage:
    return await gateway.read(
        lambda: claims_page(
            runtime,
            member,
            status=status,
            submitted_from=submitted_from,
            submitted_to=submitted_to,
            payer=payer,
            provider=provider,
            cursor=cursor,
            limit=limit,
        )
    )


@router.get(
    "/claims/{ref}",
    response_model=ClaimPublic,
    summary="Read one claim",
    description="404 when there is no such claim or the caller may not see it.",
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such claim that you may see."}},
)
async def get_claim(
    ref: str, member: ReaderMember, runtime: RuntimeDep, gateway: GatewayDep, ctx: ContextDep
) -> ClaimPublic:
    key, version = parse_ref(ref)
    record = await gateway.read(lambda: runtime.service.claim_for(member, key, version))
    ctx.claims = [format_ref(key, version)]
    return claim_public(record, runtime.consortium)


# ---------------------------------------------------------------------- change


def action_answer(runtime: Runtime, member: Member, key: bytes, version: int, tx: dict[str, Any]) -> ClaimAction:
    record = runtime.service.claim_for(member, key, version)
    return ClaimAction(
        ref=format_ref(key, version),
        status=record["status"],
        tx_hash=tx.get("tx_hash"),
        block_number=tx.get("block_number"),
        claim=claim_public(record, runtime.consortium),
    )


@router.post(
    "/claims/{ref}/void",
    response_model=ClaimAction,
    summary="Void a claim",
    description="Only the claim's provider, before payment. It ends and releases its duplicate keys.",
    responses={
        **ERRORS,
        404: {"model": ErrorBody, "description": "No such claim that you may see."},
        409: {"model": ErrorBody, "description": "Its status does not allow it."},
    },
)
def void_claim(
    ref: str, member: ProviderMember, runtime: RuntimeDep, gateway: GatewayDep, ctx: ContextDep
) -> ClaimAction:
    key, version = parse_ref(ref)
    ctx.claims = [format_ref(key, version)]
    ensure_node(runtime)
    outcome = runtime.service.void(member, key, version)
    if outcome.status != "voided":
        raise ApiError(409, "not_voided", f"claim {ref} was not voided ({outcome.status})", {"status": outcome.status})
    gateway.metrics.count_claims("voided")
    tx = {"tx_hash": outcome.tx_hash, "block_number": outcome.block_number}
    return action_answer(runtime, member, key, version, tx)


@router.post(
    "/claims/{ref}/replace",
    status_code=201,
    response_model=ClaimResult,
    summary="Replace a claim",
    description=(
        "The body is the corrected claim; it is recorded as a replacement (frequency 7) of `ref`, takes over "
        "its keys and is not a duplicate of it. Only the claim's provider, before payment. The endpoint sets "
        "`frequency` to 7 and `original_claim_id` to `ref` (leave them out, or give those values)."
    ),
    responses={**ERRORS, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    openapi_extra=CLAIM_BODY,
)
def replace_claim(
    ref: str,
    claim: Annotated[
        dict[str, Any],
        Body(
            openapi_examples={
                "replacement": {"value": {**REPLACEMENT_EXAMPLE, "frequency": None, "original_claim_id": None}}
            }
        ),
    ],
    member: ProviderMember,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    ctx: ContextDep,
    response: Response,
) -> ClaimResult:
    key, version = parse_ref(ref)
    canonical = format_ref(key, version)
    normal = normalise_claim_data(claim)
    if normal.get("frequency") == "8":
        raise ApiError(
            422,
            "claim_invalid",
            "a void (frequency 8) is not a replacement: POST /v1/claims/{ref}/void instead",
            {
                "problems": [
                    {
                        "field": "frequency",
                        "value": claim.get("frequency"),
                        "rule": "frequency_invalid",
                        "message": "a replacement has frequency 7 (or 1, or none: this endpoint makes it 7)",
                    }
                ]
            },
        )
    original = normal.get("original_claim_id")
    if original not in (None, "") and str(original).lower() != canonical:
        raise ApiError(
            422,
            "claim_invalid",
            f"original_claim_id {original!r} is not the claim replaced ({canonical})",
            {
                "problems": [
                    {
                        "field": "original_claim_id",
                        "value": original,
                        "rule": "original_mismatch",
                        "message": f"must be {canonical} or left out",
                    }
                ]
            },
        )
    document = {**claim, "frequency": "7", "original_claim_id": canonical}
    [result] = submit_documents(runtime, member, [document])
    count_results(gateway, [result])
    ctx.claims = [canonical, *refs_touched([result])]
    return single_answer(result, response, retry_after_s=runtime.settings.retry_after_s)
