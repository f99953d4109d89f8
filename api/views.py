"""Ledger records and outcomes turned into the gateway's response schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

import orjson

from api.deps import format_ref
from api.errors import REVERT_STATUS, revert_code, with_ref
from api.schemas import (
    ClaimPointer,
    ClaimPublic,
    ClaimResult,
    ErrorDetail,
    EventActor,
    HistoryEvent,
    Problem,
    SuspectMatch,
)
from ledger.chain import OUTCOMES, code_text
from ledger.consortium import Consortium
from ledger.service import ClaimOutcome

SECONDS_PER_DAY = 86_400
OUTCOME_STATUS = {"recorded": 201, "voided": 200, "duplicate": 409, "invalid": 422}
ERROR_STATUS = {"chain_unavailable": 503, "claim_not_found": 404, "permission_denied": 403, "claim_invalid": 422}


@overload
def when(seconds: int) -> datetime: ...
@overload
def when(seconds: None) -> None: ...
def when(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def claim_public(record: dict[str, Any], consortium: Consortium) -> ClaimPublic:
    """``record`` as ``ClaimLedgerService.claim`` returns it (bytes already 0x-hex) or a raw index row."""
    key = _hex(record["exact_key"])
    assert key is not None
    replaces_key = _hex(record.get("replaces_key"))
    submitted_at, paid_at = record["submitted_at"], record.get("paid_at")
    return ClaimPublic(
        ref=format_ref(key, record["version"]),
        exact_key=key,
        version=record["version"],
        status=record["status"],
        frequency=record["frequency"],
        suspect=bool(record["suspect"]),
        provider=consortium.name_of(record["provider_org"]),
        provider_org=record["provider_org"],
        payer=consortium.name_of(record["payer_org"]),
        payer_org=record["payer_org"],
        total_charge_cents=record["total_charge"],
        line_count=record["line_count"],
        key_id=record["key_id"],
        document_hash=_hex(record["document_hash"]) or "",
        replaces=format_ref(replaces_key, record["replaces_version"]) if replaces_key else None,
        outcome=record.get("outcome"),
        allowed_cents=record.get("allowed_amount"),
        paid_cents=record.get("paid_amount"),
        submitted_at=when(submitted_at),
        submitted_block=record["submitted_block"],
        submitted_tx=record["submitted_tx"],
        paid_at=when(paid_at),
        days_to_payment=round((paid_at - submitted_at) / SECONDS_PER_DAY, 2) if paid_at is not None else None,
    )


def pointer(record: dict[str, Any] | None) -> ClaimPointer | None:
    shown = with_ref(record)
    if shown is None or not shown.get("exact_key"):
        return None
    return ClaimPointer(ref=shown["ref"], exact_key=shown["exact_key"], version=shown.get("version"))


def error_status(error: dict[str, Any]) -> int:
    """The HTTP status of a ledger error as ``LedgerError.to_dict`` wrote it."""
    code = error.get("code", "")
    if code == "contract_revert":
        return REVERT_STATUS.get(str(error.get("details", {}).get("error", "")), 422)
    return ERROR_STATUS.get(code, 500)


def error_detail(error: dict[str, Any]) -> ErrorDetail:
    if error.get("code") == "contract_revert":
        details = error.get("details", {})
        name = str(details.get("error", ""))
        return ErrorDetail(
            code=revert_code(name),
            message=str(error.get("message", "")),
            details={"contract_error": name, "args": details.get("args", {})},
        )
    if error_status(error) == 500:
        return ErrorDetail(code="internal_error", message="the ledger could not record this claim", details={})
    return ErrorDetail(
        code=str(error.get("code")), message=str(error.get("message", "")), details=dict(error.get("details") or {})
    )


def claim_result(outcome: ClaimOutcome) -> ClaimResult:
    status = outcome.status
    http_status = OUTCOME_STATUS.get(status) or (error_status(outcome.error) if outcome.error else 500)
    ref = format_ref(outcome.exact_key, outcome.version) if outcome.exact_key and outcome.version else None
    suspects = [
        SuspectMatch(
            line_index=s["line_index"],
            earlier=ClaimPointer(
                ref=format_ref(s["earlier_exact_key"], s["earlier_version"]),
                exact_key=s["earlier_exact_key"],
                version=s["earlier_version"],
            ),
        )
        for s in outcome.suspects
    ]
    return ClaimResult(
        status=status,  # type: ignore[arg-type]
        http_status=http_status,
        claim_id=outcome.claim_id,
        ref=ref if status in ("recorded", "voided") else None,
        exact_key=outcome.exact_key,
        version=outcome.version if status in ("recorded", "voided") else None,
        document_hash=outcome.document_hash,
        tx_hash=outcome.tx_hash,
        block_number=outcome.block_number,
        suspect=bool(suspects),
        suspects=suspects,
        replaced=pointer(outcome.replaced),
        existing=pointer(outcome.existing),
        problems=[Problem(**p) for p in outcome.problems],
        error=error_detail(outcome.error) if outcome.error else None,
    )


def _readable(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The event's arguments, plus the codes in words a billing clerk reads (CARC codes, reasons, outcome)."""
    if name == "ClaimAdjudicated":
        outcome = args.get("outcome")
        return {
            **args,
            "carc": [code_text(c) for c in args.get("carcCodes", [])],
            "outcome_label": OUTCOMES[outcome] if isinstance(outcome, int) and 0 <= outcome < len(OUTCOMES) else None,
        }
    if name == "ClaimAcknowledged":
        return {**args, "reason": code_text(args.get("reasonCode"))}
    return args


def history_event(row: dict[str, Any], consortium: Consortium) -> HistoryEvent:
    org = row.get("org")
    args = orjson.loads(row["args"]) if isinstance(row.get("args"), str) else dict(row.get("args") or {})
    return HistoryEvent(
        event=row["name"],
        who=EventActor(
            organisation=consortium.name_of(org) if org else None, org_index=org, account=row.get("tx_from")
        ),
        what=_readable(row["name"], args),
        when=when(int(row["block_time"])),
        block_number=row["block_number"],
        block_hash=row["block_hash"],
        tx_hash=row["tx_hash"],
        log_index=row["log_index"],
    )
