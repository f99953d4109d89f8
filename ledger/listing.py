"""Claim listings from the SQL index, scoped by who asks: filters and keyset (cursor) pagination, newest first.

Visibility is the service's rule (``ClaimLedgerService.claim_for``: a provider sees what it
submitted, a payer what is addressed to it, an auditor everything); a listing applies the
same scope as a filter on the organisation columns.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select, tuple_

from ledger.errors import InvalidCursorError
from ledger.service import Member
from ledger.store import indexed_claims

MAX_PAGE = 500


@dataclass(frozen=True)
class ClaimFilter:
    statuses: Sequence[str] = ()
    submitted_from: int | None = None
    submitted_before: int | None = None
    payer_org: int | None = None
    provider_org: int | None = None


def encode_cursor(row: dict[str, Any]) -> str:
    raw = orjson.dumps([row["submitted_block"], bytes(row["exact_key"]).hex(), row["version"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, bytes, int]:
    try:
        block, key, version = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(block), bytes.fromhex(key), int(version)
    except (ValueError, TypeError) as exc:
        raise InvalidCursorError(
            "the cursor is not one this gateway gave: start again without it", details={"cursor": cursor}
        ) from exc


def list_claims(
    engine: Engine, member: Member, where: ClaimFilter, *, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    c = indexed_claims.c
    query = select(indexed_claims)
    if member.role == "provider":
        query = query.where(c.provider_org == member.org)
    elif member.role == "payer":
        query = query.where(c.payer_org == member.org)
    if where.statuses:
        query = query.where(c.status.in_(list(where.statuses)))
    if where.submitted_from is not None:
        query = query.where(c.submitted_at >= where.submitted_from)
    if where.submitted_before is not None:
        query = query.where(c.submitted_at < where.submitted_before)
    if where.payer_org is not None:
        query = query.where(c.payer_org == where.payer_org)
    if where.provider_org is not None:
        query = query.where(c.provider_org == where.provider_org)
    if cursor:
        block, key, version = decode_cursor(cursor)
        query = query.where(tuple_(c.submitted_block, c.exact_key, c.version) < tuple_(block, key, version))
    query = query.order_by(c.submitted_block.desc(), c.exact_key.desc(), c.version.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)
