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


def test_concurrent_requests_share_one_chain(tmp_path) -> None:
    """Many threads recording at once (group commit): every entry written once, the chain whole."""
    import threading

    access = AccessLog(make_engine(sqlite_url(tmp_path / "group.db")))

    def request(n: int) -> None:
        access.record(
            [f"0x{n:064x}:1", f"0x{n:064x}:2"],
            actor=f"key-{n}",
            org="PROV-A",
            role="provider",
            action="claim.submit",
            request_id=f"req-{n}",
            outcome="201",
        )

    threads = [threading.Thread(target=request, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = access.verify()
    assert result.ok and result.entries == 80
    entries = access.entries(limit=1000)
    assert sorted(e.request_id for e in entries) == sorted(f"req-{n}" for n in range(40) for _ in (1, 2))
    by_request = {}
    for e in entries:
        by_request.setdefault(e.request_id, []).append(e.seq)
    assert all(b - a == 1 for a, b in by_request.values())  # a request's entries stay together
