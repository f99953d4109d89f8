"""The ledger without a chain: the same intake and batches, each batch recorded by SQL unique inserts.

This is what a single organisation without a consortium would run, and the baseline the chain
is measured against (``scripts/bench_pipeline.py``: chain / no chain). It keeps the contract's
two duplicate rules, in one SQL transaction per batch: an exact key already held (or held by an
earlier claim of the same batch) is refused naming the holder; a line key already held flags
the claim suspect naming the earlier claim. Each claim's result is recorded beside it. It does
not do voids, replacements or payer steps: those are the chain ledger's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import orjson
from sqlalchemy import BigInteger, Column, Connection, Engine, Integer, LargeBinary, MetaData, Table, Text, select

from ledger.documents import IN_CHUNK
from ledger.pipeline import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_TX_GAS,
    DEFAULT_MAX_WAIT_MS,
    ClaimBatcher,
    SubmissionResult,
    SuspectMatch,
    _Pending,
)
from ledger.store import bulk, writing

offchain_metadata = MetaData()

offchain_claims = Table(
    "offchain_claims",
    offchain_metadata,
    Column("exact_key", LargeBinary(32), primary_key=True),
    Column("id", Integer, nullable=False, unique=True),
    Column("document_hash", LargeBinary(32), nullable=False),
    Column("payer_org", Integer, nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

offchain_lines = Table(
    "offchain_lines",
    offchain_metadata,
    Column("line_key", LargeBinary(32), primary_key=True),
    Column("exact_key", LargeBinary(32), nullable=False),
)


class OffChainLedger(ClaimBatcher):
    """Claims recorded in SQL only: exact duplicates refused, suspect lines flagged, results kept."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_tx_gas: int = DEFAULT_MAX_TX_GAS,
    ) -> None:
        super().__init__(max_batch=max_batch, max_wait_ms=max_wait_ms, max_tx_gas=max_tx_gas)
        self.engine = engine
        offchain_metadata.create_all(engine)
        with engine.connect() as conn:
            top = conn.execute(select(offchain_claims.c.id).order_by(offchain_claims.c.id.desc())).first()
        self._next_id = (top[0] + 1) if top else 1

    def start(self) -> OffChainLedger:
        with self._intake:
            self._closing = False
        t = threading.Thread(target=self._batch_loop, name="offchain-batcher", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._close_intake()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _dispatch(self, batch: list[_Pending]) -> None:
        claims = [p.claim for p in batch]
        now = int(time.time())
        with writing(self.engine) as conn:
            held = _held(conn, offchain_claims.c.exact_key, [c.exact_key for c in claims])
            lines = _held(conn, offchain_lines.c.line_key, [k for c in claims for k in c.line_keys])
            results: list[SubmissionResult] = []
            new_claims: list[tuple[object, ...]] = []
            new_lines: list[tuple[bytes, bytes]] = []
            for c in claims:
                sid = self._next_id
                if c.exact_key in held:
                    results.append(
                        SubmissionResult("duplicate", "0x" + c.exact_key.hex(), 0, "", None, 0, existing_version=1)
                    )
                    continue
                suspects = tuple(
                    SuspectMatch(i, "0x" + lines[k].hex(), 1) for i, k in enumerate(c.line_keys) if k in lines
                )
                result = SubmissionResult("recorded", "0x" + c.exact_key.hex(), 1, "", None, sid, suspects=suspects)
                results.append(result)
                held[c.exact_key] = c.exact_key
                for k in c.line_keys:
                    if k not in lines:
                        lines[k] = c.exact_key
                        new_lines.append((k, c.exact_key))
                new_claims.append((c.exact_key, sid, c.document_hash, c.payer_org, orjson.dumps(result).decode(), now))
                self._next_id += 1
            bulk(
                conn,
                "INSERT INTO offchain_claims (exact_key, id, document_hash, payer_org, result, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                new_claims,
            )
            bulk(conn, "INSERT INTO offchain_lines (line_key, exact_key) VALUES (?, ?)", new_lines)
        for p, r in zip(batch, results, strict=True):
            p.future.set_result(r)


def _held(conn: Connection, column: Column[bytes], keys: Sequence[bytes]) -> dict[bytes, bytes]:
    """Which of ``keys`` the table already holds: key -> the exact key holding it."""
    table = column.table
    holder = table.c.exact_key
    found: dict[bytes, bytes] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
        for key, exact in conn.execute(select(column, holder).where(column.in_(chunk))):
            found[key] = exact
    return found
