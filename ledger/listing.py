"""Claim listings from the SQL index, scoped by who asks: filters and keyset (cursor) pagination, newest first.

Visibility is the service's rule (``ClaimLedgerService.claim_for``: a provider sees what it
submitted, a payer what is addressed to it, an auditor everything); a listing applies the
same scope as a filter on the organisation columns.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine, Select, select, tuple_

from ledger.errors import InvalidCursorError
from ledger.store import indexed_claims

if TYPE_CHECKING:  # the service lists through this module
    from ledger.service import Member

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
    """A page of ``limit`` claims ``member`` may see, newest first, from ``cursor``; and the next page's cursor."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(listing_query(member, where, cursor=cursor, limit=limit)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def listing_query(member: Member, where: ClaimFilter, *, cursor: str | None, limit: int) -> Select[Any]:
    """The query of a page (one row more than ``limit``: whether there is a next page). Its order is that of
    the index of the member's scope (ix_claims_provider_page, ix_claims_payer_page, ix_claims_page), so a
    page reads its rows off the index's end rather than sorting all of the organisation's."""
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
    return query.order_by(c.submitted_block.desc(), c.exact_key.desc(), c.version.desc()).limit(limit + 1)
