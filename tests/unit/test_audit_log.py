"""The access audit log: hash-chained, append-only, tampering found at its position."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from ledger.audit import GENESIS, AccessLog
from ledger.store import make_engine, sqlite_url


@pytest.fixture
def log(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "audit.db"))
    access = AccessLog(engine)
    for i in range(10):
        access.append(
            actor=f"key-{i % 3}",
            org="PROV-A",
            role="provider",
            action="claim.read",
            claim=f"0x{'ab' * 32}:{i}",
            request_id=f"req-{i}",
            outcome="200",
            at=1_700_000_000 + i,
        )
    return access


def test_a_clean_log_verifies(log: AccessLog) -> None:
    result = log.verify()
    assert result.ok and result.entries == 10 and result.first_broken is None
    assert log.head() == (10, result.head)
    assert log.entries(after=0, limit=1)[0].prev_hash == GENESIS


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET outcome = '403' WHERE seq = 4", "DELETE FROM access_log WHERE seq = 4"]
)
def test_the_table_refuses_updates_and_deletes(log: AccessLog, statement: str) -> None:
    with pytest.raises(DatabaseError, match="append-only"), log.engine.begin() as conn:
        conn.execute(text(statement))
    assert log.verify().ok


def _tamper(log: AccessLog, statement: str) -> None:
    with log.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER access_log_no_update"))
        conn.execute(text("DROP TRIGGER access_log_no_delete"))
        conn.execute(text(statement))


def test_an_altered_entry_is_reported_at_its_position(log: AccessLog) -> None:
    _tamper(log, "UPDATE access_log SET outcome = '200-ok' WHERE seq = 6")
    result = log.verify()
    assert not result.ok
    assert result.first_broken == 6
    assert result.entries == 5
    assert "altered" in (result.reason or "")


def test_a_removed_entry_is_reported(log: AccessLog) -> None:
    _tamper(log, "DELETE FROM access_log WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.first_broken) == (False, 3)
    assert "missing" in (result.reason or "")


def test_a_rewritten_link_is_reported(log: AccessLog) -> None:
    _tamper(log, "UPDATE access_log SET prev_hash = entry_hash WHERE seq = 8")
    assert log.verify().first_broken == 8
