"""A page of a claim listing reads its rows off an index in the listing's order: SQLite's plan sorts nothing,
whoever asks and whatever the filters, and a data folder of an older layout gets those indexes at start."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import Engine

from ledger.listing import ClaimFilter, encode_cursor, listing_query
from ledger.service import Member
from ledger.store import INDEX_PART, make_engine, part_file, sqlite_url

ACCOUNT: Any = Account.from_key("0x" + "11" * 32)
CURSOR = encode_cursor({"submitted_block": 7, "exact_key": b"\x01" * 32, "version": 1})
SCOPES = {
    "provider": ("ix_claims_provider_page", {}),
    "payer": ("ix_claims_payer_page", {}),
    "auditor": ("ix_claims_page", {}),
}


def plan(engine: Engine, member: Member, where: ClaimFilter, cursor: str | None) -> str:
    query = listing_query(member, where, cursor=cursor, limit=50)
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params).all()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize("role", sorted(SCOPES))
@pytest.mark.parametrize(
    "where",
    [ClaimFilter(), ClaimFilter(statuses=("paid", "denied")), ClaimFilter(submitted_from=1, submitted_before=9)],
    ids=["all", "statuses", "dates"],
)
@pytest.mark.parametrize("cursor", [None, CURSOR], ids=["first page", "next page"])
def test_a_page_is_read_off_its_scopes_index_without_sorting(
    tmp_path: Path, role: str, where: ClaimFilter, cursor: str | None
) -> None:
    engine = make_engine(sqlite_url(tmp_path / "ledger.db"))
    query_plan = plan(engine, Member("ORG", role, 3, ACCOUNT), where, cursor)
    assert SCOPES[role][0] in query_plan, query_plan
    assert "TEMP B-TREE" not in query_plan, query_plan  # no sort of the scope's rows


def test_an_older_index_file_gets_the_listing_indexes_and_loses_the_retired_ones(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    make_engine(sqlite_url(database)).dispose()
    index_file = part_file(database, INDEX_PART)
    with sqlite3.connect(index_file) as conn:  # as an older layout left it
        for name in ("ix_claims_provider_page", "ix_claims_payer_page", "ix_claims_page"):
            conn.execute(f"DROP INDEX {name}")
        conn.execute("CREATE INDEX ix_claims_provider ON indexed_claims (provider_org, submitted_at)")
        conn.execute("CREATE INDEX ix_claims_payer ON indexed_claims (payer_org, submitted_at)")
    make_engine(sqlite_url(database)).dispose()
    with sqlite3.connect(index_file) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_claims_provider_page", "ix_claims_payer_page", "ix_claims_page"} <= names
    assert not names & {"ix_claims_provider", "ix_claims_payer"}
