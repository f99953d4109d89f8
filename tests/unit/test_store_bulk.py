"""ledger.store.bulk on SQLite: many rows as multi-row statements, the same rows as one at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from ledger.store import SQLITE_MAX_ROWS, _multi_row, bulk, make_engine, sqlite_url, writing

INSERT = "INSERT INTO t (k, label, n) VALUES (?, 'new', ?) ON CONFLICT (k) DO NOTHING"
UPDATE = "UPDATE t SET label = ?, n = ? WHERE k = ?"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(sqlite_url(tmp_path / "bulk.db"))
    with writing(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, label TEXT NOT NULL, n INTEGER)")
    return engine


def rows(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT k, label, n FROM t ORDER BY k")]


def test_statements_for_many_rows() -> None:
    assert _multi_row(INSERT, 2) == (
        "INSERT INTO t (k, label, n) VALUES (?, 'new', ?), (?, 'new', ?) ON CONFLICT (k) DO NOTHING"
    )
    assert _multi_row(UPDATE, 2) == (
        "UPDATE t SET label = v.column1, n = v.column2 FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v WHERE t.k = v.column3"
    )
    with pytest.raises(ValueError, match="one-row INSERT"):
        _multi_row("DELETE FROM t WHERE k = ?", 2)


def test_inserts_every_row_in_order_across_statements(engine: Engine) -> None:
    n = SQLITE_MAX_ROWS * 2 + 7  # three statements
    with writing(engine) as conn:
        bulk(conn, INSERT, [(k, k * 10) for k in range(n)])
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    assert rows(engine) == [(k, "new", k * 10) for k in range(n)]
    assert last == n - 1  # the pipeline reads a batch's ids back from the last rowid


def test_on_conflict_keeps_the_first_row(engine: Engine) -> None:
    with writing(engine) as conn:
        bulk(conn, INSERT, [(1, 10), (2, 20)])
        bulk(conn, INSERT, [(2, 99), (3, 30), (3, 31)])
    assert rows(engine) == [(1, "new", 10), (2, "new", 20), (3, "new", 30)]


def test_update_sets_each_row_by_its_key(engine: Engine) -> None:
    n = SQLITE_MAX_ROWS + 3
    with writing(engine) as conn:
        bulk(conn, INSERT, [(k, 0) for k in range(n)])
        bulk(conn, UPDATE, [(f"row {k}", k * k, k) for k in range(1, n, 2)])
    expected = [(k, f"row {k}", k * k) if k % 2 else (k, "new", 0) for k in range(n)]
    assert rows(engine) == expected


def test_a_conflict_without_on_conflict_fails_the_whole_transaction(engine: Engine) -> None:
    plain = "INSERT INTO t (k, label, n) VALUES (?, ?, ?)"
    with pytest.raises(Exception, match="UNIQUE"), writing(engine) as conn:
        bulk(conn, plain, [(1, "a", 1), (2, "b", 2)])
        bulk(conn, plain, [(3, "c", 3), (1, "again", 4)])
    assert rows(engine) == []


def test_no_rows_writes_nothing(engine: Engine) -> None:
    with writing(engine) as conn:
        bulk(conn, INSERT, [])
    assert rows(engine) == []
