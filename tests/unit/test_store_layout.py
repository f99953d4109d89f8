"""Where the SQL store keeps its tables: on SQLite, the index of chain events and the document vault each in
a file of its own."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from ledger.store import (
    INDEX_PART,
    VAULT_PART,
    claim_references,
    documents,
    indexed_blocks,
    make_engine,
    metadata,
    part_file,
    sqlite_url,
    writing,
)


def tables_in(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_the_index_and_the_vault_live_in_files_of_their_own(tmp_path: Path) -> None:
    db = tmp_path / "claimledger.db"
    engine = make_engine(sqlite_url(db))
    with writing(engine, part=INDEX_PART) as conn:
        conn.execute(insert(indexed_blocks).values(number=7, hash="0xaa", parent_hash="0xbb"))
    with writing(engine, part=VAULT_PART) as conn:
        conn.execute(
            insert(documents).values(document_hash=b"\x01" * 32, key_id="k", nonce=b"n", ciphertext=b"c", created_at=1)
        )
    with engine.connect() as conn:  # unqualified names find each table wherever it lives
        assert conn.execute(select(indexed_blocks.c.number)).scalar_one() == 7
        assert conn.execute(select(documents.c.key_id)).scalar_one() == "k"
    engine.dispose()
    assert part_file(db, INDEX_PART) == tmp_path / "claimledger-index.db"
    assert part_file(db, VAULT_PART) == tmp_path / "claimledger-vault.db"
    for part in (INDEX_PART, VAULT_PART):
        names = {t.name for t in part.tables}
        assert tables_in(part_file(db, part)) == names
        assert not tables_in(db) & names
    assert "outbox" in tables_in(db)


def test_an_index_kept_in_the_main_file_before_is_dropped_there_and_rebuilt_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "claimledger.db"
    old = sqlite3.connect(db)  # the layout of earlier versions: every table in the one file
    old.execute("CREATE TABLE indexed_blocks (number BIGINT PRIMARY KEY, hash TEXT, parent_hash TEXT)")
    old.execute("INSERT INTO indexed_blocks VALUES (3, '0x01', '0x02')")
    old.execute(
        "CREATE TABLE documents (document_hash BLOB PRIMARY KEY, key_id TEXT, nonce BLOB, ciphertext BLOB, "
        "created_at BIGINT)"
    )
    old.execute("INSERT INTO documents VALUES (x'02', 'k', x'00', x'00', 1)")
    old.commit()
    old.close()
    with caplog.at_level(logging.WARNING, logger="claimledger.store"):
        engine = make_engine(sqlite_url(db))
    assert "rebuilt from the chain" in caplog.text
    with engine.connect() as conn:
        assert conn.execute(select(indexed_blocks)).all() == []  # to be rebuilt by the indexer
        assert conn.execute(select(documents.c.document_hash)).scalars().all() == [b"\x02"]  # moved, not lost
    engine.dispose()
    assert not tables_in(db) & {"indexed_blocks", "documents"}
    assert "indexed_blocks" in tables_in(part_file(db, INDEX_PART))
    assert "documents" in tables_in(part_file(db, VAULT_PART))


def test_a_move_cut_short_after_the_copy_is_finished_on_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "claimledger.db"
    make_engine(sqlite_url(db)).dispose()
    # As if a start had copied the vault's rows over and died before dropping them from the main file.
    vault = sqlite3.connect(part_file(db, VAULT_PART))
    vault.execute("INSERT INTO claim_references VALUES (x'01', x'02')")
    vault.commit()
    vault.close()
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE claim_references (tag BLOB, document_hash BLOB, PRIMARY KEY (tag, document_hash))")
    old.executemany("INSERT INTO claim_references VALUES (?, ?)", [(b"\x01", b"\x02"), (b"\x03", b"\x04")])
    old.commit()
    old.close()
    engine = make_engine(sqlite_url(db))
    with engine.connect() as conn:
        rows = conn.execute(select(claim_references.c.tag, claim_references.c.document_hash)).all()
    engine.dispose()
    assert sorted(rows) == [(b"\x01", b"\x02"), (b"\x03", b"\x04")]  # each once
    assert "claim_references" not in tables_in(db)


def test_an_in_memory_database_keeps_every_table_in_one(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
    assert {t.name for t in metadata.sorted_tables if t.name.startswith("index")} <= names
    assert not list(tmp_path.iterdir())
