"""Auditor reports over a period, from the SQL index: duplicates per provider, payers' figures.

Times are block timestamps (seconds since the epoch, UTC); a period is [start, end).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, case, func, select

from ledger.store import indexed_claims, indexed_events

SECONDS_PER_DAY = 86_400


def duplicates_by_provider(engine: Engine, start: int, end: int) -> list[dict[str, Any]]:
    """Per provider organisation: refused exact duplicates and claims flagged suspect."""
    refused_q = (
        select(indexed_events.c.org, func.count())
        .where(
            indexed_events.c.name == "DuplicateRefused",
            indexed_events.c.block_time >= start,
            indexed_events.c.block_time < end,
        )
        .group_by(indexed_events.c.org)
    )
    suspect_q = (
        select(indexed_claims.c.provider_org, func.count(), func.sum(case((indexed_claims.c.suspect, 1), else_=0)))
        .where(indexed_claims.c.submitted_at >= start, indexed_claims.c.submitted_at < end)
        .group_by(indexed_claims.c.provider_org)
    )
    with engine.connect() as conn:
        refused = {int(org): int(n) for org, n in conn.execute(refused_q) if org is not None}
        submitted = {int(org): (int(n), int(s or 0)) for org, n, s in conn.execute(suspect_q)}
    rows = []
    for org in sorted(set(refused) | set(submitted)):
        n, s = submitted.get(org, (0, 0))
        rows.append(
            {"provider_org": org, "claims_recorded": n, "suspect_flagged": s, "duplicates_refused": refused.get(org, 0)}
        )
    return rows


def payer_figures(engine: Engine, start: int, end: int) -> list[dict[str, Any]]:
    """Per payer organisation, for claims submitted in the period: adjudications, denial rate,
    days from submission to payment (mean, median, max)."""
    q = select(
        indexed_claims.c.payer_org,
        indexed_claims.c.status,
        indexed_claims.c.outcome,
        indexed_claims.c.submitted_at,
        indexed_claims.c.paid_at,
    ).where(and_(indexed_claims.c.submitted_at >= start, indexed_claims.c.submitted_at < end))
    per: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for payer, status, outcome, submitted_at, paid_at in conn.execute(q):
            p = per.setdefault(int(payer), {"claims": 0, "adjudicated": 0, "denied": 0, "paid": 0, "days": []})
            p["claims"] += 1
            if outcome is not None:
                p["adjudicated"] += 1
                p["denied"] += outcome == "denied"
            if status == "paid" and paid_at is not None:
                p["paid"] += 1
                p["days"].append((int(paid_at) - int(submitted_at)) / SECONDS_PER_DAY)
    rows = []
    for payer in sorted(per):
        p = per[payer]
        days: list[float] = p["days"]
        rows.append(
            {
                "payer_org": payer,
                "claims": p["claims"],
                "adjudicated": p["adjudicated"],
                "denied": p["denied"],
                "denial_rate": round(p["denied"] / p["adjudicated"], 4) if p["adjudicated"] else None,
                "paid": p["paid"],
                "days_to_payment_mean": round(statistics.fmean(days), 2) if days else None,
                "days_to_payment_median": round(statistics.median(days), 2) if days else None,
                "days_to_payment_max": round(max(days), 2) if days else None,
            }
        )
    return rows


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV with a header line (empty string for no rows)."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
