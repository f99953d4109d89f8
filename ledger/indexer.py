"""The event indexer: follows the contract's events into SQL.

Each range of blocks is applied in one SQL transaction together with the cursor, so a
crash mid-range leaves the index as it was before the range, and a restart goes on from the
cursor. Before each range the indexer checks that the chain still holds the block under its
cursor (parent hash of the next block, hash of the cursor block); if not (a reorg, or a node
restored from an older state) it says so loudly and rebuilds from the deployment block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger.chain import OUTCOMES, ChainEvent, ContractAbi
from ledger.compiler import load_artifact
from ledger.errors import IndexIntegrityError
from ledger.rpc import RpcClient
from ledger.store import INDEX_PART, bulk, indexed_blocks, indexed_claims, indexed_events, indexer_cursor, writing

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BLOCKS = 2_000
RANGE_EVENTS = 20_000
"""About how many events a range should hold at most (judged before reading it, below): a chain of full
blocks would otherwise be asked for a million logs in one eth_getLogs on a rebuild."""
GAS_PER_EVENT = 25_000
"""Gas a block uses for each event it emits, low (a one-line claim: 54,582 gas, two or three events), so
that the estimate of a range's events errs high."""
CURSOR_NAME = "claim-ledger"
CATCH_UP_FRESH_S = 0.1
"""A read is served from the index as it stands when a run that started within this reached the chain's head
and the newest block this process has a receipt of is in it (:meth:`Indexer.catch_up`): what this gateway
recorded is there at once, another member's within this much more."""
_CLAIM_COLUMNS = tuple(c.name for c in indexed_claims.columns)
_EVENT_COLUMNS = tuple(c.name for c in indexed_events.columns)


def _insert_statement(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_CLAIMS_INSERT = _insert_statement("indexed_claims", _CLAIM_COLUMNS)
_EVENTS_INSERT = _insert_statement("indexed_events", _EVENT_COLUMNS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Overtaken(Exception):
    """Another indexer moved the cursor since this one read it: its range is already applied."""


@dataclass(frozen=True)
class IndexProgress:
    from_block: int
    to_block: int
    events: int
    rebuilt: bool = False


class Indexer:
    """Follows the ClaimLedger at ``address`` from ``start_block`` into the store's index tables."""

    def __init__(
        self,
        rpc: RpcClient,
        address: str,
        engine: Engine,
        *,
        start_block: int = 0,
        chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
    ) -> None:
        self.rpc = rpc
        self.address = address
        self.engine = engine
        self.start_block = start_block
        self.chunk_blocks = chunk_blocks
        self.abi = ContractAbi(load_artifact()["abi"])
        self._block_times: dict[str, int] = {}
        self._lock = threading.Lock()
        self._synced: tuple[float, int] | None = None  # the last run to reach the head: when it began, the head

    # -------------------------------------------------------------- cursor

    def cursor(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(indexer_cursor.c.block_number, indexer_cursor.c.block_hash).where(
                    indexer_cursor.c.name == CURSOR_NAME
                )
            ).first()
        return (int(row[0]), str(row[1])) if row else None

    def _check_cursor(self, cursor: tuple[int, str]) -> None:
        number, expected = cursor
        block = self.rpc.block(number)
        if block is None:
            raise IndexIntegrityError(
                f"the chain no longer has block {number} that the index has reached (head is behind): "
                "the node lost blocks or was reset",
                details={"block": number, "indexed_hash": expected},
            )
        if block["hash"] != expected:
            raise IndexIntegrityError(
                f"block {number} on chain is {block['hash']} but the index holds {expected}: a reorg or a "
                "restored node",
                details={"block": number, "indexed_hash": expected, "chain_hash": block["hash"]},
            )

    # -------------------------------------------------------------- running

    def catch_up(self, *, through: int = -1, known_at: float = float("inf"), fresh_s: float = CATCH_UP_FRESH_S) -> None:
        """Before a read: index what the chain has, unless a run that began within ``fresh_s`` reached the head
        and that head holds block ``through`` (the newest block the caller knows claims of its own were
        recorded in, known since ``known_at``, a time.monotonic; unknown: never). Readers at the same moment
        share one run: the others wait for it and find it fresh. Every read ran a run of its own before, two
        calls to the node each under this lock: listing claims was held to 130-190 requests a second
        whatever the load.

        A run that began after ``known_at`` and found the head below ``through`` found a node that went back
        (restored from an older state): that head is all there is, and the run counts as fresh."""
        if self._fresh(through, known_at, fresh_s):
            return
        with self._lock:
            if not self._fresh(through, known_at, fresh_s):
                self._run(None)

    def _fresh(self, through: int, known_at: float, fresh_s: float) -> bool:
        synced = self._synced
        if synced is None or time.monotonic() - synced[0] >= fresh_s:
            return False
        began, head = synced
        return head >= through or began > known_at

    def run_once(self, *, max_blocks: int | None = None) -> IndexProgress:
        """Index what the chain has beyond the cursor (up to ``max_blocks`` blocks)."""
        with self._lock:
            return self._run(max_blocks)

    def _run(self, max_blocks: int | None) -> IndexProgress:
        began = time.monotonic()
        rebuilt = False
        cursor = self.cursor()
        if cursor is not None:
            try:
                self._check_cursor(cursor)
            except IndexIntegrityError as exc:
                log.error("INDEX INTEGRITY: %s; rebuilding the index from block %d", exc, self.start_block)
                self._wipe()
                cursor, rebuilt = None, True
        head = self.rpc.block_number()
        first = cursor[0] + 1 if cursor else self.start_block
        last = head if max_blocks is None else min(head, first + max_blocks - 1)
        total = 0
        a = first
        while a <= last:
            blocks: dict[int, dict[str, Any] | None] = {}  # read once for the bound and the range
            b = self._bounded(a, min(a + self.chunk_blocks - 1, last), blocks)
            total += self._index_range(a, b, cursor, blocks)
            cursor = self.cursor()  # b, or further if another indexer took the range first
            a = cursor[0] + 1 if cursor else self.start_block
        if last == head:
            self._synced = (began, head)
        return IndexProgress(first, last, total, rebuilt)

    def _bounded(self, a: int, b: int, blocks: dict[int, dict[str, Any] | None] | None = None) -> int:
        """The end of a range from ``a`` of about RANGE_EVENTS events at most, up to ``b``, judged by the gas
        used by the fullest of its first, middle and last blocks (a chain mining on an interval ends in empty
        blocks while its full ones lie behind)."""
        while b > a:
            per_block = max(self._gas_used(n, blocks) for n in {a, (a + b) // 2, b}) // GAS_PER_EVENT
            if per_block * (b - a + 1) <= RANGE_EVENTS:
                return b
            # Halve at least, so that one full block among light ones is soon left for a range of its own.
            b = max(a + RANGE_EVENTS // max(per_block, 1) - 1, (a + b) // 2)
        return b

    def _gas_used(self, number: int, blocks: dict[int, dict[str, Any] | None] | None) -> int:
        block = self._block(number, blocks)
        return int(block["gasUsed"], 16) if block else 0

    def _block(self, number: int, blocks: dict[int, dict[str, Any] | None] | None) -> dict[str, Any] | None:
        """Block ``number`` (its header), read once for the range being bounded and indexed."""
        if blocks is None:
            return self.rpc.block(number)
        if number not in blocks:
            blocks[number] = self.rpc.block(number)
        return blocks[number]

    def rebuild(self) -> IndexProgress:
        with self._lock:
            self._wipe()
        return self.run_once()

    def _wipe(self) -> None:
        with writing(self.engine, part=INDEX_PART) as conn:
            for table in (indexed_events, indexed_claims, indexed_blocks, indexer_cursor):
                conn.execute(delete(table))

    def _block_time(self, block_hash: str) -> int:
        cached = self._block_times.get(block_hash)
        if cached is None:
            block = self.rpc.call("eth_getBlockByHash", block_hash, False)
            cached = int(block["timestamp"], 16)
            if len(self._block_times) > 10_000:
                self._block_times.clear()
            self._block_times[block_hash] = cached
        return cached

    def _index_range(
        self, a: int, b: int, cursor: tuple[int, str] | None, blocks: dict[int, dict[str, Any] | None] | None = None
    ) -> int:
        last_block = self._block(b, blocks)
        first_block = last_block if a == b else self._block(a, blocks)
        if last_block is None or first_block is None:
            raise IndexIntegrityError(f"blocks {a}..{b} vanished while indexing them")
        if cursor is not None and first_block["parentHash"] != cursor[1]:
            raise IndexIntegrityError(
                f"block {a}'s parent is {first_block['parentHash']}, not the indexed block {cursor[1]}",
                details={"block": a},
            )
        logs = self.rpc.logs(self.address, a, b)
        events = [e for e in (self.abi.decode_log(entry) for entry in logs) if e is not None]
        senders = self._senders({"0x" + e.transaction_hash.hex() for e in events if e.name == "DuplicateRefused"})
        for block_hash in {e.block_hash for e in events}:  # read before the write transaction, not inside it
            self._block_time("0x" + block_hash.hex())
        values = {"contract": self.address, "block_number": b, "block_hash": last_block["hash"]}
        try:
            with writing(self.engine, part=INDEX_PART) as conn:
                # The cursor moves first, from where this range began or not at all: another indexer over
                # the same store (the gateway's follower process, a read catching up) may have taken the
                # range already, and then this transaction writes nothing.
                if cursor is None:
                    try:
                        conn.execute(insert(indexer_cursor).values(name=CURSOR_NAME, **values))
                    except IntegrityError:
                        raise _Overtaken from None
                else:
                    moved = conn.execute(
                        update(indexer_cursor)
                        .where(
                            indexer_cursor.c.name == CURSOR_NAME,
                            indexer_cursor.c.block_number == cursor[0],
                            indexer_cursor.c.block_hash == cursor[1],
                        )
                        .values(**values)
                    )
                    if moved.rowcount != 1:
                        raise _Overtaken
                self._apply(conn, events, senders)
                conn.execute(
                    insert(indexed_blocks).values(
                        number=b, hash=last_block["hash"], parent_hash=last_block["parentHash"]
                    )
                )
        except _Overtaken:
            return 0
        return len(events)

    def _senders(self, tx_hashes: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for h in tx_hashes:
            tx = self.rpc.call("eth_getTransactionByHash", h)
            if tx:
                out[h] = tx["from"]
        return out

    # -------------------------------------------------------------- applying events

    def _apply(self, conn: Connection, events: Sequence[ChainEvent], senders: dict[str, str]) -> None:
        rows = []
        claims: dict[tuple[bytes, int], dict[str, Any]] = {}
        suspects: set[tuple[bytes, int]] = set()
        replaced: dict[tuple[bytes, int], tuple[bytes, int]] = {}
        for e in events:
            block_hash = "0x" + e.block_hash.hex()
            tx_hash = "0x" + e.transaction_hash.hex()
            when = self._block_time(block_hash)
            a = e.args
            key: Any = a.get("exactKey")
            version: Any = a.get("version", a.get("existingVersion"))
            org = a.get("providerOrg", a.get("payerOrg", a.get("submitterOrg", a.get("org"))))
            rows.append(
                {
                    "block_number": e.block_number,
                    "log_index": e.log_index,
                    "block_hash": block_hash,
                    "tx_hash": tx_hash,
                    "tx_from": senders.get(tx_hash),
                    "block_time": when,
                    "name": e.name,
                    "exact_key": key,
                    "version": version,
                    "org": org,
                    "args": orjson.dumps({k: _jsonable(v) for k, v in a.items()}).decode(),
                }
            )
            if e.name == "SuspectDuplicateFlagged":
                suspects.add((key, version))
            elif e.name == "ClaimReplaced":
                replaced[(a["replacementKey"], a["replacementVersion"])] = (key, version)
                self._set_status(conn, claims, key, version, {"status": "replaced"}, e.block_number)
            elif e.name == "ClaimSubmitted":
                replaces = replaced.get((key, version))
                claims[(key, version)] = {
                    "exact_key": key,
                    "version": version,
                    "status": "submitted",
                    "provider_org": a["providerOrg"],
                    "payer_org": a["payerOrg"],
                    "key_id": a["keyId"],
                    "line_count": a["lineCount"],
                    "total_charge": a["totalCharge"],
                    "frequency": a["frequency"],
                    "suspect": (key, version) in suspects,
                    "document_hash": a["documentHash"],
                    "replaces_key": replaces[0] if replaces else None,
                    "replaces_version": replaces[1] if replaces else None,
                    "submitted_block": e.block_number,
                    "submitted_tx": tx_hash,
                    "submitted_at": when,
                    "updated_block": e.block_number,
                }
            elif e.name == "ClaimAcknowledged":
                status = "accepted" if a["accepted"] else "rejected"
                self._set_status(conn, claims, key, version, {"status": status}, e.block_number)
            elif e.name == "ClaimAdjudicated":
                values = {
                    "status": "adjudicated",
                    "outcome": OUTCOMES[a["outcome"]],
                    "allowed_amount": a["allowedAmount"],
                }
                self._set_status(conn, claims, key, version, values, e.block_number)
            elif e.name == "ClaimPaid":
                values = {"status": "paid", "paid_amount": a["paidAmount"], "paid_at": when}
                self._set_status(conn, claims, key, version, values, e.block_number)
            elif e.name == "ClaimPaymentReversed":
                values = {
                    "status": "accepted",
                    "outcome": None,
                    "allowed_amount": None,
                    "paid_amount": None,
                    "paid_at": None,
                }
                self._set_status(conn, claims, key, version, values, e.block_number)
            elif e.name == "ClaimVoided":
                self._set_status(conn, claims, key, version, {"status": "voided"}, e.block_number)
        # Straight through the driver (ledger.store.bulk): SQLAlchemy's per-row parameter handling was the
        # larger part of the indexer's time under a stream of 1,000-claim batches.
        if claims:
            bulk(conn, _CLAIMS_INSERT, [tuple(row.get(c) for c in _CLAIM_COLUMNS) for row in claims.values()])
        if rows:
            bulk(conn, _EVENTS_INSERT, [tuple(row[c] for c in _EVENT_COLUMNS) for row in rows])

    @staticmethod
    def _set_status(
        conn: Connection,
        pending: dict[tuple[bytes, int], dict[str, Any]],
        key: bytes,
        version: int,
        values: dict[str, Any],
        block: int,
    ) -> None:
        row = pending.get((key, version))
        if row is not None:  # recorded earlier in this same range, not inserted yet
            row.update(values, updated_block=block)
            return
        conn.execute(
            update(indexed_claims)
            .where(indexed_claims.c.exact_key == key, indexed_claims.c.version == version)
            .values(**values, updated_block=block)
        )
