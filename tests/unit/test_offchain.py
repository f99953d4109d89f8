"""The ledger without a chain (the benchmark's baseline) keeps the contract's duplicate rules, on a real SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from ledger.chain import ClaimSubmission
from ledger.errors import LedgerError
from ledger.offchain import OffChainLedger, offchain_claims
from ledger.store import make_engine, sqlite_url


def _claim(exact: bytes, *lines: bytes) -> ClaimSubmission:
    return ClaimSubmission(exact, os.urandom(32), lines or (os.urandom(32),), 1, 2, 100)


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = make_engine(sqlite_url(tmp_path / "offchain.db"))
    yield e
    e.dispose()


def test_records_refuses_and_flags_like_the_contract(engine) -> None:  # type: ignore[no-untyped-def]
    ledger = OffChainLedger(engine, max_batch=3, max_wait_ms=1).start()
    a, b, shared = os.urandom(32), os.urandom(32), os.urandom(32)
    first = [_claim(a, shared), _claim(a), _claim(b, os.urandom(32), shared)]
    results = [f.result(timeout=10) for f in ledger.submit_many(first)]
    assert [r.status for r in results] == ["recorded", "duplicate", "recorded"]
    assert results[1].exact_key == "0x" + a.hex() and results[1].existing_version == 1
    assert results[0].suspects == ()
    assert [(s.line_index, s.earlier_exact_key) for s in results[2].suspects] == [(1, "0x" + a.hex())]
    # a later batch sees what earlier batches recorded
    again = ledger.submit(_claim(b)).result(timeout=10)
    assert again.status == "duplicate" and again.exact_key == "0x" + b.hex()
    ledger.stop()
    with engine.connect() as conn:
        rows = conn.execute(select(offchain_claims.c.exact_key, offchain_claims.c.result)).all()
    assert {r.exact_key for r in rows} == {a, b}
    assert {orjson.loads(r.result)["status"] for r in rows} == {"recorded"}


def test_ids_continue_after_a_restart_and_a_stopped_ledger_refuses(engine) -> None:  # type: ignore[no-untyped-def]
    ledger = OffChainLedger(engine).start()
    first = ledger.submit(_claim(os.urandom(32))).result(timeout=10)
    ledger.stop()
    with pytest.raises(LedgerError, match="not running"):
        ledger.submit(_claim(os.urandom(32)))
    later = OffChainLedger(engine).start()
    second = later.submit(_claim(os.urandom(32))).result(timeout=10)
    later.stop()
    assert second.submission_id == first.submission_id + 1
