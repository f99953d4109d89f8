"""The submission pipeline: one signer per account, micro-batches, an outbox in SQL.

A claim waits at most ``max_wait_ms`` for others, then goes out in a batch of up to
``max_batch`` claims (fewer when the batch would pass ``max_tx_gas``). Each transaction is
signed and stored in the outbox, with a submission record per claim, before it is sent; a
retry resends the same bytes, so the chain sees it once. After a crash of the process or a
node that comes back from an older state, :meth:`SubmissionPipeline.reconcile` reads the
outbox against the chain and sends again what the chain does not have.

Every caller gets its own :class:`SubmissionResult` through a Future.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from ledger.calldata import SubmissionEvent, decode_submission_logs, encode_submit_claims
from ledger.chain import ClaimSubmission, ContractAbi, sign_call
from ledger.compiler import load_artifact
from ledger.errors import ChainUnavailableError, ContractRevertError, LedgerError
from ledger.rpc import RpcClient, RpcError
from ledger.store import GroupCommit, bulk, outbox, submissions, writing

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_IN_FLIGHT = 4
_SETTLE_SUBMISSION = "UPDATE submissions SET status = ?, version = ?, updated_at = ? WHERE id = ?"
"""A claim's record once its transaction is mined: what the chain said (recorded, duplicate, voided, failed)
and the version. The rest of its answer (keys, block, transaction, suspects) is the chain's, in the index."""
DEFAULT_MAX_TX_GAS = 25_000_000
# Receipt polling starts at RECEIPT_POLL_S after a receipt came and backs off to RECEIPT_POLL_MAX_S
# while none does (interval mining: a poll every 2 ms through a 1 s block costs both sides CPU).
RECEIPT_POLL_S = 0.002
RECEIPT_POLL_MAX_S = 0.02
RECEIPT_BATCH = 8
"""The receipts of the first this many transactions in flight are asked for in one request: after a block,
those it holds come in one round trip instead of one each. At a million claims a 1,000-claim receipt took
40-100 ms a request on a busy machine (8 ms alone), and the gateway read them one by one in the second
between two blocks, in which anvil also takes the next block's transactions (it answers no call while it
mines)."""
MAX_SEND_BATCH = 64
MAX_SEND_BYTES = 1_800_000
"""Stored transactions sent in one request at most, and the most raw bytes they take together (anvil refuses a
request body past 2 MiB: about five 1,000-claim transactions, hex-encoded)."""
# A receipt missing this long makes the pipeline ask whether the node still has the
# transaction at all (a node restored from an older state, or a dropped transaction).
MISSING_CHECK_S = 1.0
RECONNECT_BACKOFF_S = 0.1
# Upper bounds of the gas a batch may use (measured: about 54,500 per one-line claim and
# 23,200 per further line; refunds return what is not used).
GAS_PER_TX = 80_000
GAS_PER_CLAIM = 70_000
GAS_PER_EXTRA_LINE = 26_000


@dataclass(frozen=True, slots=True)
class SuspectMatch:
    line_index: int
    earlier_exact_key: str
    earlier_version: int


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """What the ledger did with one claim."""

    status: str  # recorded | duplicate | voided | failed
    exact_key: str
    version: int
    tx_hash: str
    block_number: int | None
    submission_id: int
    suspects: tuple[SuspectMatch, ...] = ()
    existing_version: int | None = None
    replaced: tuple[str, int] | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    claim: ClaimSubmission
    future: Future[SubmissionResult] = field(default_factory=Future)
    submission_id: int | None = None  # set once stored; a claim sent again keeps its record


@dataclass
class _InFlight:
    outbox_id: int
    nonce: int
    tx_hash: str
    raw: bytes
    data: bytes
    items: list[_Pending]
    submission_ids: list[int]


@dataclass(frozen=True, slots=True)
class _TxRecord:
    """What the store keeps of a transaction the chain has settled: its outbox row's status (mined or
    reverted) and block, and each of its claims' result."""

    outbox_id: int
    tx_hash: str
    block: int
    results: list[SubmissionResult]
    status: str = "mined"


def _log_record_failure(record: _TxRecord, written: Future[None]) -> None:
    error = written.exception()
    if error is not None:  # the claims are on chain and answered; only the store's bookkeeping is behind
        log.error(
            "the records of mined transaction %s (outbox %d, block %d) could not be written: %s; "
            "they are settled again from the chain on the next reconcile",
            record.tx_hash,
            record.outbox_id,
            record.block,
            error,
        )


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def estimate_gas(claims: Sequence[ClaimSubmission]) -> int:
    return GAS_PER_TX + sum(GAS_PER_CLAIM + GAS_PER_EXTRA_LINE * max(0, len(c.line_keys) - 1) for c in claims)


def assign_results(
    claims: Sequence[ClaimSubmission],
    events: Sequence[SubmissionEvent],
    *,
    tx_hash: str,
    block_number: int,
    submission_ids: Sequence[int],
) -> list[SubmissionResult]:
    """Split a batch's events into one result per claim (each claim ends with one terminal event)."""
    results: list[SubmissionResult] = []
    suspects: list[SuspectMatch] = []
    replaced: tuple[str, int] | None = None
    for e in events:
        if e.kind == "suspect":
            suspects.append(SuspectMatch(e.line_index, _hex(e.other_key), e.other_version))
            continue
        if e.kind == "replaced":
            replaced = (_hex(e.exact_key), e.version)
            continue
        i = len(results)
        if i >= len(claims):
            raise LedgerError(f"transaction {tx_hash} has more results than its {len(claims)} claims")
        status = {"submitted": "recorded", "refused": "duplicate", "voided": "voided"}[e.kind]
        results.append(
            SubmissionResult(
                status=status,
                exact_key=_hex(e.exact_key),
                version=e.version if status != "duplicate" else 0,
                tx_hash=tx_hash,
                block_number=block_number,
                submission_id=submission_ids[i],
                suspects=tuple(suspects),
                existing_version=e.version if status == "duplicate" else None,
                replaced=replaced,
            )
        )
        suspects, replaced = [], None
    if len(results) != len(claims):
        raise LedgerError(f"transaction {tx_hash} gave {len(results)} results for {len(claims)} claims")
    return results


class ClaimBatcher:
    """The intake of a pipeline: claims wait in order and leave in batches.

    A claim waits at most ``max_wait_ms`` for others; a batch takes up to ``max_batch`` claims, fewer
    when the next would take it past ``max_tx_gas``. ``submit_many`` queues a whole list under one
    lock, and the batcher takes a whole batch under one lock (a queue.Queue costs about 6 us a claim
    in and out). Subclasses say what a batch becomes (:meth:`_dispatch`).
    """

    def __init__(self, *, max_batch: int, max_wait_ms: float, max_tx_gas: int) -> None:
        if max_batch < 1:
            raise LedgerError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_tx_gas = max_tx_gas
        self._waiting: deque[_Pending] = deque()
        self._intake = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []

    # -------------------------------------------------------------- intake

    def submit(self, claim: ClaimSubmission) -> Future[SubmissionResult]:
        return self.submit_many([claim])[0]

    def submit_many(self, claims: Sequence[ClaimSubmission]) -> list[Future[SubmissionResult]]:
        """Queue claims, in order; each future gets that claim's result."""
        pending = [_Pending(c) for c in claims]
        with self._intake:
            if self._closing or not self._threads:
                raise LedgerError("the submission pipeline is not running")
            self._waiting.extend(pending)
            self._intake.notify()
        return [p.future for p in pending]

    def _requeue(self, items: Sequence[_Pending]) -> None:
        with self._intake:
            self._waiting.extend(items)
            self._intake.notify()

    def _close_intake(self) -> None:
        """No more claims come in; the batcher sends what is queued, then ends."""
        with self._intake:
            self._closing = True
            self._intake.notify_all()

    def _collect(self) -> list[_Pending] | None:
        """The next batch, or None once the intake is closed and empty."""
        with self._intake:
            while not self._waiting:
                if self._closing:
                    return None
                self._intake.wait()
            deadline = time.monotonic() + self.max_wait_s
            while len(self._waiting) < self.max_batch and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._intake.wait(remaining)
            batch: list[_Pending] = []
            gas = GAS_PER_TX
            while self._waiting and len(batch) < self.max_batch:
                extra = estimate_gas([self._waiting[0].claim]) - GAS_PER_TX
                if batch and gas + extra > self.max_tx_gas:
                    break  # the rest waits for the next batch, in order
                batch.append(self._waiting.popleft())
                gas += extra
            return batch

    def _batch_loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            self._before_dispatch()
            try:
                self._dispatch(batch)
            except Exception as exc:
                log.exception("batch of %d claims failed before it was stored", len(batch))
                _fail(batch, exc, "batch failed")

    def _before_dispatch(self) -> None:
        """Wait here for room (the chain pipeline bounds its transactions in flight)."""

    def _dispatch(self, batch: list[_Pending]) -> None:
        raise NotImplementedError


class SubmissionPipeline(ClaimBatcher):
    """Batches claims into ``submitClaims`` transactions signed by ``account``."""

    def __init__(
        self,
        rpc: RpcClient,
        contract_address: str,
        account: LocalAccount,
        engine: Engine,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_tx_gas: int = DEFAULT_MAX_TX_GAS,
        after_send: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(max_batch=max_batch, max_wait_ms=max_wait_ms, max_tx_gas=max_tx_gas)
        self.rpc = rpc
        self.address = contract_address
        self.account = account
        self.engine = engine
        self.max_in_flight = max_in_flight
        self._receipt_batches = True
        self._after_send = after_send  # a test hook: called with each tx hash right after sending
        self._abi = ContractAbi(load_artifact()["abi"])
        # Signed and stored, waiting for the sender (in nonce order), then sent and waiting for receipts.
        self._to_send: deque[_InFlight] = deque()
        self._in_flight: deque[_InFlight] = deque()
        self._in_flight_lock = threading.Condition()
        self._stopping = threading.Event()
        self._chain_id = 0
        self._nonce = 0
        self._fees: tuple[int, int] = (0, 0)
        self.reconciled_resends = 0
        # A mined transaction's records are written by a writer of their own, several transactions in one
        # SQL transaction, and its callers' answers do not wait for that write: the chain holds the outcome,
        # the store the bookkeeping, and the receipt thread goes on to the next receipt rather than waiting
        # for the store's one writer. flush_records() waits for what is handed over and not yet written.
        self._records: GroupCommit[_TxRecord] = GroupCommit(self._write_records, name="pipeline-records")
        self._recording: list[Future[None]] = []
        self._recording_lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> SubmissionPipeline:
        self._chain_id = self.rpc.chain_id()
        self._fees = self._fee_caps()
        self.reconcile()
        self._stopping.clear()
        with self._intake:
            self._closing = False
        for target, name in (
            (self._batch_loop, "batcher"),
            (self._send_loop, "sender"),
            (self._receipt_loop, "receipts"),
        ):
            t = threading.Thread(target=target, name=f"pipeline-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after sending what is queued and waiting for its receipts."""
        self._close_intake()
        deadline = time.monotonic() + timeout
        for t in self._threads[:1]:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._in_flight_lock:
            while (self._to_send or self._in_flight) and time.monotonic() < deadline:
                self._in_flight_lock.wait(0.05)
        self._stopping.set()
        with self._in_flight_lock:
            self._in_flight_lock.notify_all()
        for t in self._threads[1:]:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        self.flush_records(max(0.0, deadline - time.monotonic()))

    # -------------------------------------------------------------- batching and sending

    def _before_dispatch(self) -> None:
        with self._in_flight_lock:
            while len(self._to_send) + len(self._in_flight) >= self.max_in_flight and not self._stopping.is_set():
                self._in_flight_lock.wait(0.05)

    def _dispatch(self, batch: list[_Pending]) -> None:
        self._sign_store_send(batch)

    def _fee_caps(self) -> tuple[int, int]:
        price = self.rpc.gas_price()
        return (max(price * 2, 1), 0)

    def _sign(self, claims: Sequence[ClaimSubmission], nonce: int) -> tuple[str, bytes, bytes]:
        max_fee, tip = self._fees
        data = encode_submit_claims(claims)
        gas = min(estimate_gas(claims), max(self.max_tx_gas, GAS_PER_TX + GAS_PER_CLAIM))
        tx_hash, raw = sign_call(
            self.account,
            chain_id=self._chain_id,
            nonce=nonce,
            to=self.address,
            data=data,
            gas=gas,
            max_fee=max_fee,
            tip=tip,
        )
        return tx_hash, raw, data

    def _sign_store_send(self, batch: list[_Pending]) -> None:
        claims = [p.claim for p in batch]
        nonce = self._nonce
        tx_hash, raw, data = self._sign(claims, nonce)
        now = int(time.time())
        with writing(self.engine) as conn:
            inserted = conn.execute(
                insert(outbox).values(
                    account=self.account.address,
                    nonce=nonce,
                    tx_hash=tx_hash,
                    raw=raw,
                    claim_count=len(claims),
                    status="signed",
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key
            if inserted is None:
                raise LedgerError("the outbox did not return the new row's id")
            outbox_id = inserted[0]
            fresh = [(i, p) for i, p in enumerate(batch) if p.submission_id is None]
            again = [(i, p) for i, p in enumerate(batch) if p.submission_id is not None]
            bulk(
                conn,
                "INSERT INTO submissions (outbox_id, position, exact_key, document_hash, frequency, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                [
                    (outbox_id, i, p.claim.exact_key, p.claim.document_hash, p.claim.frequency, now, now)
                    for i, p in fresh
                ],
            )
            if again:
                conn.execute(
                    update(submissions)
                    .where(submissions.c.id == bindparam("sid"))
                    .values(outbox_id=outbox_id, position=bindparam("pos"), status="pending", updated_at=now),
                    [{"sid": p.submission_id, "pos": i} for i, p in again],
                )
            ids = self._submission_ids(conn, outbox_id, batch, len(fresh))
        for p, sid in zip(batch, ids, strict=True):
            p.submission_id = sid
        self._nonce = nonce + 1
        with self._in_flight_lock:
            self._to_send.append(_InFlight(outbox_id, nonce, tx_hash, raw, data, batch, ids))
            self._in_flight_lock.notify_all()

    def _submission_ids(self, conn: Connection, outbox_id: int, batch: list[_Pending], fresh: int) -> list[int]:
        """The submission ids of a batch just stored, by position. On SQLite, under its one writer, the
        rows just inserted took the rowids up to last_insert_rowid() in order, so nothing is read back."""
        if conn.dialect.name == "sqlite":
            last = int(conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()) if fresh else 0
            next_id = last - fresh + 1
            ids = []
            for p in batch:
                if p.submission_id is None:
                    ids.append(next_id)
                    next_id += 1
                else:
                    ids.append(p.submission_id)
            return ids
        return list(
            conn.execute(
                select(submissions.c.id).where(submissions.c.outbox_id == outbox_id).order_by(submissions.c.position)
            ).scalars()
        )

    def _send_loop(self) -> None:
        """Send stored transactions in nonce order, all that wait in one request. Apart from the batcher, so
        that the next batches are signed and stored while a send waits on the node (anvil answers no call
        while it mines a block): the transactions stored meanwhile then go together, not one request each
        after the block (at a million claims a 1,000-claim send took 55 ms, and a block gathered only those
        that were sent by the time it was made)."""
        while True:
            with self._in_flight_lock:
                while not self._to_send:
                    if self._stopping.is_set():
                        return
                    self._in_flight_lock.wait(0.05)
                flights = _send_batch(self._to_send)
            try:
                refused = self._send(flights)
            except Exception as exc:
                log.exception("sending %d transactions failed; they stay in the outbox", len(flights))
                refused = {f.tx_hash: exc for f in flights}
            for flight in flights:
                error = refused.get(flight.tx_hash)
                if error is not None:
                    log.error("sending %s failed (%s); it stays in the outbox", flight.tx_hash, error)
                    _fail(flight.items, error, "sending failed")
                elif self._after_send is not None:
                    self._after_send(flight.tx_hash)  # before the receipt loop sees it: "sent, not settled"
                with self._in_flight_lock:
                    self._to_send.popleft()
                    if error is None:
                        self._in_flight.append(flight)
                    self._in_flight_lock.notify_all()

    def _send(self, flights: list[_InFlight]) -> dict[str, BaseException]:
        """Send ``flights`` in one request and mark them sent; those the node refused, by tx hash."""
        refused: dict[str, BaseException] = {}
        try:
            answers: list[str | RpcError]
            if len(flights) == 1:
                answers = [self._send_one(flights[0].raw, flights[0].tx_hash)]
            else:
                try:
                    answers = self.rpc.send_raw_many([f.raw for f in flights])
                except RpcError as exc:  # the batch refused as a whole: one by one
                    log.warning("the node refused a batch of %d sends (%s): sending them one by one", len(flights), exc)
                    answers = [self._send_one(f.raw, f.tx_hash) for f in flights]
        except ChainUnavailableError:
            log.warning("node unreachable sending %d transactions; they stay in the outbox and go again", len(flights))
            answers = [f.tx_hash for f in flights]
        for flight, answer in zip(flights, answers, strict=True):
            if isinstance(answer, RpcError) and not answer.already_known(nonce_used=True):
                refused[flight.tx_hash] = answer
        sent = [f.tx_hash for f in flights if f.tx_hash not in refused]
        if sent:
            with writing(self.engine) as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.tx_hash.in_(sent), outbox.c.status == "signed")
                    .values(status="sent", updated_at=int(time.time()))
                )
        return refused

    def _send_one(self, raw: bytes, tx_hash: str) -> str | RpcError:
        try:
            self.rpc.send_raw(raw)
        except RpcError as exc:
            return exc
        return tx_hash

    # -------------------------------------------------------------- receipts

    def _receipt_loop(self) -> None:
        waiting_since: tuple[str, float] | None = None
        poll = RECEIPT_POLL_S
        while True:
            with self._in_flight_lock:
                while not self._in_flight:
                    if self._stopping.is_set():
                        return
                    self._in_flight_lock.wait(0.05)
                flights = list(itertools.islice(self._in_flight, RECEIPT_BATCH))
            flight = flights[0]
            try:
                if len(flights) == 1 or not self._receipt_batches:
                    receipts = [self.rpc.receipt(flight.tx_hash)]
                else:
                    try:
                        receipts = self.rpc.receipts([f.tx_hash for f in flights])
                    except RpcError as exc:
                        log.warning("the node refused a batch of receipt requests (%s): reading them one by one", exc)
                        self._receipt_batches = False
                        continue
                receipt = receipts[0]
                if receipt is None:
                    if self._stopping.is_set():
                        return
                    if waiting_since is None or waiting_since[0] != flight.tx_hash:
                        waiting_since = (flight.tx_hash, time.monotonic())
                    elif time.monotonic() - waiting_since[1] > MISSING_CHECK_S:
                        waiting_since = None
                        if self.rpc.call("eth_getTransactionByHash", flight.tx_hash) is None:
                            if self.rpc.nonce(self.account.address, "latest") > flight.nonce:
                                self._receipt_lost(flight)  # mined, but the node has pruned it since
                                with self._in_flight_lock:
                                    self._in_flight.popleft()
                                    self._in_flight_lock.notify_all()
                                continue
                            log.warning(
                                "node does not know %s (restored from an older state?): sending again", flight.tx_hash
                            )
                            self._resend_missing()
                    time.sleep(poll)
                    poll = min(poll * 1.5, RECEIPT_POLL_MAX_S)
                    continue
                poll = RECEIPT_POLL_S
            except ChainUnavailableError:
                self._wait_for_node()
                continue
            except LedgerError:
                log.exception("receipt of %s: the node refused a call; trying again", flight.tx_hash)
                time.sleep(RECONNECT_BACKOFF_S)
                continue
            for flight, receipt in zip(flights, receipts, strict=False):  # the mined ones, in nonce order
                if receipt is None:
                    break
                try:
                    self._settle(flight, receipt)
                except Exception as exc:
                    log.exception("settling %s failed", flight.tx_hash)
                    _fail(flight.items, exc, "settling failed")
                with self._in_flight_lock:
                    self._in_flight.popleft()
                    self._in_flight_lock.notify_all()

    def _receipt_lost(self, flight: _InFlight) -> None:
        """The chain has used this transaction's nonce but the node no longer knows the transaction:
        it was mined and the node dropped it and its receipt before they were read (a node keeping
        only its last blocks' transactions, e.g. anvil's --transaction-block-keeper). Its claims are on
        chain as the contract decided; their callers hear so instead of waiting for ever."""
        log.error(
            "%s (nonce %d) was mined but the node no longer has it or its receipt; its %d claims are not settled here",
            flight.tx_hash,
            flight.nonce,
            len(flight.items),
        )
        with writing(self.engine) as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == flight.outbox_id)
                .values(status="mined", updated_at=int(time.time()))
            )
        error = ChainUnavailableError(
            f"transaction {flight.tx_hash} was mined but the node pruned its receipt before it was read: "
            "the claims are on chain as the contract decided; look them up by exact key (sending one again "
            "answers with its record)",
            retry_after=1,
        )
        _fail(flight.items, error, "receipt lost")

    def _wait_for_node(self) -> None:
        """The node went away: wait for it, then send again what it no longer has."""
        log.warning("node unreachable; waiting for it to come back")
        while not self._stopping.is_set():
            if self.rpc.answers():
                try:
                    self._resend_missing()
                    return
                except LedgerError:
                    log.exception("sending the outbox again failed; trying again")
            time.sleep(RECONNECT_BACKOFF_S)

    def _resend_missing(self) -> None:
        """Send again, in nonce order and with the same bytes, every outbox transaction the chain lacks;
        settle again the records of those that had been mined already (they land in new blocks)."""
        self.flush_records()
        chain_nonce = self.rpc.nonce(self.account.address, "latest")
        rows = self._outbox_rows_from(chain_nonce)
        for row in rows:
            self._resend(row["tx_hash"], row["raw"])
        with self._in_flight_lock:
            flying = {f.tx_hash for f in self._in_flight}
        for row in rows:
            if row["tx_hash"] not in flying and row["status"] in ("mined", "reverted"):
                self._settle_recovered(row, self._wait_receipt(row["tx_hash"]))

    def _resend(self, tx_hash: str, raw: bytes) -> None:
        self.reconciled_resends += 1
        try:
            self.rpc.send_raw(raw)
        except RpcError as exc:
            if not exc.already_known(nonce_used=True):
                raise

    def _settle(self, flight: _InFlight, receipt: dict[str, Any]) -> None:
        claims = [p.claim for p in flight.items]
        block = int(receipt["blockNumber"], 16)
        if int(receipt["status"], 16) == 1:
            events = decode_submission_logs(receipt["logs"], self.address)
            results = assign_results(
                claims, events, tx_hash=flight.tx_hash, block_number=block, submission_ids=flight.submission_ids
            )
            # Handed to the records writer before the callers hear (so flush_records() after an answer
            # covers it), and not waited for: the answer does not wait on the store's one writer.
            self._record_later(_TxRecord(flight.outbox_id, flight.tx_hash, block, results))
            for p, r in zip(flight.items, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
            return
        # Reverted: one claim of the batch broke a rule the contract enforces. Find it, fail it, send the rest again.
        error = self._revert_reason(flight.data, block)
        culprit = _culprit(claims, error)
        failed = SubmissionResult(
            status="failed",
            exact_key=_hex(claims[culprit].exact_key) if culprit is not None else "",
            version=0,
            tx_hash=flight.tx_hash,
            block_number=block,
            submission_id=flight.submission_ids[culprit] if culprit is not None else 0,
            error=error.to_dict(),
        )
        results_by_pos: dict[int, SubmissionResult] = {}
        retry: list[_Pending] = []
        for i, p in enumerate(flight.items):
            if culprit is None or i == culprit:
                results_by_pos[i] = SubmissionResult(**{**asdict(failed), "submission_id": flight.submission_ids[i]})
            else:
                retry.append(p)
        self._write_records(
            [_TxRecord(flight.outbox_id, flight.tx_hash, block, list(results_by_pos.values()), "reverted")]
        )
        for i in results_by_pos:
            p = flight.items[i]
            if not p.future.done():
                p.future.set_exception(
                    ContractRevertError(error.error, error.error_args, call=f"submitClaims (claim {i} of the batch)")
                )
        self._requeue(retry)

    def _revert_reason(self, data: bytes, block: int) -> ContractRevertError:
        """Replay a reverted batch on the state before its block to read the contract's custom error."""
        call = {"from": self.account.address, "to": self.address, "data": _hex(data)}
        try:
            self.rpc.eth_call(call, hex(max(block - 1, 0)))
        except RpcError as exc:
            revert = exc.data if isinstance(exc.data, str) else None
            if revert and len(revert) >= 10:
                name, args = self._abi.decode_error(revert)
                return ContractRevertError(name, args, call="submitClaims")
        return ContractRevertError(
            "Revert", {"reason": "the batch reverted and replaying it gave no reason"}, call="submitClaims"
        )

    def _record_later(self, record: _TxRecord) -> None:
        written = self._records.submit_future([record])
        with self._recording_lock:
            self._recording = [f for f in self._recording if not f.done()]
            self._recording.append(written)
        written.add_done_callback(functools.partial(_log_record_failure, record))

    def flush_records(self, timeout: float | None = None) -> None:
        """Wait until the records of every mined transaction settled so far are written."""
        with self._recording_lock:
            pending, self._recording = self._recording, []
        futures_wait(pending, timeout=timeout)

    def _write_records(self, records: list[_TxRecord]) -> None:
        now = int(time.time())
        with writing(self.engine) as conn:
            bulk(
                conn,
                "UPDATE outbox SET status = ?, block_number = ?, updated_at = ? WHERE id = ?",
                [(r.status, r.block, now, r.outbox_id) for r in records],
            )
            bulk(
                conn,
                _SETTLE_SUBMISSION,
                [(x.status, x.version, now, x.submission_id) for r in records for x in r.results],
            )

    # -------------------------------------------------------------- recovery

    def _outbox_rows_from(self, nonce: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.nonce, outbox.c.tx_hash, outbox.c.raw, outbox.c.status)
                .where(outbox.c.account == self.account.address, outbox.c.nonce >= nonce)
                .where(outbox.c.status.in_(("signed", "sent", "mined", "reverted")))
                .order_by(outbox.c.nonce)
            ).mappings()
            return [dict(r) for r in rows]

    def reconcile(self) -> int:
        """Bring the outbox and the chain into agreement; returns how many were sent again.

        Every outbox transaction the chain does not have (never sent, or lost with the node's
        last blocks) is sent again with its same bytes, in nonce order; every one the chain has
        gets its submission records settled from its receipt.
        """
        self.flush_records()
        chain_nonce = self.rpc.nonce(self.account.address, "latest")
        with self.engine.connect() as conn:
            open_rows = [
                dict(r)
                for r in conn.execute(
                    select(outbox.c.id, outbox.c.nonce, outbox.c.tx_hash, outbox.c.raw, outbox.c.status)
                    .where(outbox.c.account == self.account.address)
                    .where((outbox.c.status.in_(("signed", "sent"))) | (outbox.c.nonce >= chain_nonce))
                    .order_by(outbox.c.nonce)
                ).mappings()
            ]
            top = conn.execute(
                select(outbox.c.nonce).where(outbox.c.account == self.account.address).order_by(outbox.c.nonce.desc())
            ).first()
        resent = 0
        for row in open_rows:
            if row["status"] in ("mined", "reverted") and row["nonce"] < chain_nonce:
                continue
            receipt = self.rpc.receipt(row["tx_hash"])
            if receipt is None:
                if row["nonce"] < chain_nonce:
                    self._mark_dropped(row)
                    continue
                self._resend(row["tx_hash"], row["raw"])
                resent += 1
                receipt = self._wait_receipt(row["tx_hash"])
            self._settle_recovered(row, receipt)
        self._nonce = max(chain_nonce, (top[0] + 1) if top else 0)
        return resent

    def _wait_receipt(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = self.rpc.receipt(tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(RECEIPT_POLL_S)
        raise ChainUnavailableError(f"no receipt for {tx_hash} within {timeout:.0f} s", retry_after=timeout)

    def _settle_recovered(self, row: dict[str, Any], receipt: dict[str, Any]) -> None:
        with self.engine.connect() as conn:
            subs = conn.execute(
                select(submissions.c.id, submissions.c.exact_key, submissions.c.document_hash, submissions.c.frequency)
                .where(submissions.c.outbox_id == row["id"])
                .order_by(submissions.c.position)
            ).all()
        block = int(receipt["blockNumber"], 16)
        if int(receipt["status"], 16) != 1:
            failed = {
                i: SubmissionResult(
                    "failed", _hex(s.exact_key), 0, row["tx_hash"], None, s.id, error={"code": "revert"}
                )
                for i, s in enumerate(subs)
            }
            self._write_records([_TxRecord(row["id"], row["tx_hash"], block, list(failed.values()), "reverted")])
            return
        events = decode_submission_logs(receipt["logs"], self.address)
        claims = [ClaimSubmission(s.exact_key, s.document_hash, (), 0, 0, 0, frequency=s.frequency) for s in subs]
        results = assign_results(
            claims,
            events,
            tx_hash=row["tx_hash"],
            block_number=block,
            submission_ids=[s.id for s in subs],
        )
        self._write_records([_TxRecord(row["id"], row["tx_hash"], block, results)])

    def _mark_dropped(self, row: dict[str, Any]) -> None:
        log.error(
            "outbox transaction %s (nonce %d) is not on chain but its nonce is used: another signer used this account",
            row["tx_hash"],
            row["nonce"],
        )
        with writing(self.engine) as conn:
            conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(status="dropped"))
            conn.execute(
                update(submissions)
                .where(submissions.c.outbox_id == row["id"])
                .values(status="failed", updated_at=int(time.time()))  # why: the outbox row says "dropped"
            )


def _send_batch(to_send: deque[_InFlight]) -> list[_InFlight]:
    """The first of ``to_send`` (at least one), as many as one request takes (MAX_SEND_BATCH, MAX_SEND_BYTES)."""
    batch: list[_InFlight] = []
    size = 0
    for flight in to_send:
        size += 2 * len(flight.raw) + 100  # hex, and the request's own JSON
        if batch and (size > MAX_SEND_BYTES or len(batch) == MAX_SEND_BATCH):
            break
        batch.append(flight)
    return batch


def _fail(items: Sequence[_Pending], exc: BaseException, what: str) -> None:
    """Every waiting caller of ``items`` hears of ``exc`` (as a LedgerError)."""
    error = exc if isinstance(exc, LedgerError) else LedgerError(f"{what}: {exc}")
    for p in items:
        if not p.future.done():
            p.future.set_exception(error)


def _culprit(claims: Sequence[ClaimSubmission], error: ContractRevertError) -> int | None:
    args = error.error_args
    if "index" in args and isinstance(args["index"], int) and 0 <= args["index"] < len(claims):
        return int(args["index"])
    key = args.get("exactKey")
    if isinstance(key, bytes):
        for i, c in enumerate(claims):
            if key in (c.exact_key, c.related_key):
                return i
    return None
