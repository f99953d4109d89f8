"""The submission pipeline against a real anvil: concurrency, duplicates, nonces, replace/void, reverts."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import ClaimSubmission
from ledger.errors import ChainUnavailableError, ContractRevertError
from ledger.pipeline import SubmissionPipeline, SubmissionResult
from ledger.rpc import RpcClient, RpcError
from ledger.store import GroupCommit
from tests.integration.pipeline_fixtures import (
    Ledger,
    ledger_on_new_node,
    new_engine,
    outbox_rows,
    submission_rows,
    synthetic_claim,
    wait_until,
)

THREADS = 50
UNIQUE_PER_THREAD = 18
DUPLICATES_PER_THREAD = 2


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path)


@pytest.fixture
def interval_ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path, block_time=1)


def test_concurrent_submitters_duplicates_and_nonces(ledger: Ledger, tmp_path: Path) -> None:
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine).start()

    # The plan: 50 threads, 18 distinct claims each (900 in all), plus 2 exact duplicates each (100 in all):
    # threads 0..24 resend two of their own claims, threads 25..49 resend two claims of another thread.
    plans: list[list[ClaimSubmission]] = []
    for t in range(THREADS):
        plans.append([ledger.submission(synthetic_claim(t * 100 + k, seed=1)) for k in range(UNIQUE_PER_THREAD)])
    for t in range(THREADS):
        if t < THREADS // 2:
            source, picks = t, (0, 1)
        else:
            source, picks = t - THREADS // 2, (2, 3)
        for k in picks:
            claim = synthetic_claim(source * 100 + k, seed=1, claim_id=f"RESUB-{t}-{k}")
            dup = ledger.submission(claim)
            assert dup.exact_key == plans[source][k].exact_key and dup.document_hash != plans[source][k].document_hash
            plans[t].append(dup)
    for t, plan in enumerate(plans):
        random.Random(t).shuffle(plan)
    sent_keys = Counter(c.exact_key for plan in plans for c in plan)
    planned_duplicates = sum(n - 1 for n in sent_keys.values())
    assert planned_duplicates == THREADS * DUPLICATES_PER_THREAD == 100
    assert len(sent_keys) == THREADS * UNIQUE_PER_THREAD

    outcomes: list[list[tuple[ClaimSubmission, SubmissionResult]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def submitter(t: int) -> None:
        try:
            barrier.wait(10)
            if t % 2 == 0:  # one at a time, waiting for each answer
                for c in plans[t]:
                    outcomes[t].append((c, pipeline.submit(c).result(60)))
            else:  # all at once
                futures: list[Future[SubmissionResult]] = pipeline.submit_many(plans[t])
                outcomes[t].extend((c, f.result(60)) for c, f in zip(plans[t], futures, strict=True))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert not any(th.is_alive() for th in threads)
    pipeline.stop()

    # Every caller got exactly one result, for its own claim.
    flat = [pair for per_thread in outcomes for pair in per_thread]
    assert len(flat) == sum(len(p) for p in plans) == 1000
    assert len({r.submission_id for _, r in flat}) == 1000
    for claim, result in flat:
        assert result.exact_key == "0x" + claim.exact_key.hex()

    # Per exact key: one recorded (version 1), every other attempt a duplicate naming it.
    by_key: dict[bytes, list[SubmissionResult]] = {}
    for claim, result in flat:
        by_key.setdefault(claim.exact_key, []).append(result)
    for key, results in by_key.items():
        statuses = Counter(r.status for r in results)
        assert statuses == Counter({"recorded": 1, "duplicate": len(results) - 1}), (key.hex(), statuses)
        recorded = next(r for r in results if r.status == "recorded")
        assert recorded.version == 1
        for r in results:
            if r.status == "duplicate":
                assert r.existing_version == recorded.version
                assert r.version == 0
    assert sum(r.status == "duplicate" for _, r in flat) == planned_duplicates

    # No nonce gap: the chain's nonce equals the number of outbox rows, nonces 0..n-1, all mined.
    rows = outbox_rows(engine)
    rpc = ledger.rpc()
    assert rpc.nonce(ledger.provider.address, "latest") == len(rows)
    assert [r["nonce"] for r in rows] == list(range(len(rows)))
    assert {r["status"] for r in rows} == {"mined"}
    assert sum(r["claim_count"] for r in rows) == 1000

    # Every submission record is settled, and agrees with what its caller was told.
    subs = submission_rows(engine)
    assert len(subs) == 1000
    assert Counter(s["status"] for s in subs) == Counter({"recorded": 900, "duplicate": 100})
    by_id = {s["id"]: s for s in subs}
    for _, result in flat:
        row = by_id[result.submission_id]
        assert row["exact_key"] == bytes.fromhex(result.exact_key[2:])  # the id a caller holds is its own record
        assert row["status"] == result.status
        assert row["version"] == result.version

    # The chain holds each distinct claim exactly once.
    from ledger.calldata import TOPIC_REFUSED, TOPIC_SUBMITTED

    logs = ledger.all_logs()
    submitted = Counter(log["topics"][1] for log in logs if log["topics"][0] == TOPIC_SUBMITTED)
    refused = Counter(log["topics"][1] for log in logs if log["topics"][0] == TOPIC_REFUSED)
    assert submitted == Counter({"0x" + k.hex(): 1 for k in sent_keys})
    assert sum(refused.values()) == planned_duplicates


def test_replacement_and_void(ledger: Ledger, tmp_path: Path) -> None:
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine).start()
    original_a = synthetic_claim(1, seed=2)
    original_b = synthetic_claim(2, seed=2)
    a, b = ledger.submission(original_a), ledger.submission(original_b)
    ra, rb = (f.result(30) for f in pipeline.submit_many([a, b]))
    assert (ra.status, ra.version, rb.status, rb.version) == ("recorded", 1, "recorded", 1)

    # A corrected claim (another charge: another exact key) replaces A.
    corrected = synthetic_claim(
        1,
        seed=2,
        charge_cents=original_a.service_lines[0].charge_cents + 100,
        frequency="7",
        original_claim_id=original_a.claim_id,
    )
    replacement = ledger.submission(corrected, frequency=7, related_key=a.exact_key, related_version=1)
    assert replacement.exact_key != a.exact_key
    # B is voided (the void names B's key and version; its own fingerprints are B's content under frequency 8).
    void_claim = synthetic_claim(2, seed=2, frequency="8", original_claim_id=original_b.claim_id)
    void = ledger.submission(void_claim, frequency=8, related_key=b.exact_key, related_version=1)

    rr, rv = (f.result(30) for f in pipeline.submit_many([replacement, void]))
    assert rr.status == "recorded"
    assert rr.version == 1
    assert rr.exact_key == "0x" + replacement.exact_key.hex()
    assert rr.replaced == ("0x" + a.exact_key.hex(), 1)
    assert rv.status == "voided"
    assert rv.exact_key == "0x" + b.exact_key.hex()
    assert rv.version == 1

    assert ledger.contract.claim_record(a.exact_key)["status"] == "replaced"
    assert ledger.contract.claim_record(replacement.exact_key)["status"] == "submitted"
    assert ledger.contract.claim_record(b.exact_key)["status"] == "voided"

    # The void released B's keys: the same claim sent again is recorded as version 2, not a duplicate.
    again = pipeline.submit(
        replace(b, document_hash=ledger.submission(synthetic_claim(2, seed=2, claim_id="B2")).document_hash)
    ).result(30)
    assert (again.status, again.version) == ("recorded", 2)
    pipeline.stop()
    subs = submission_rows(engine)
    assert [s["status"] for s in subs] == ["recorded", "recorded", "recorded", "voided", "recorded"]


def test_reverting_batch_fails_only_its_culprit(ledger: Ledger, tmp_path: Path) -> None:
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine, max_wait_ms=400).start()
    target = ledger.submission(synthetic_claim(1, seed=3))
    assert pipeline.submit(target).result(30).status == "recorded"

    others = [ledger.submission(synthetic_claim(10 + i, seed=3)) for i in range(4)]
    bad_void = ledger.submission(
        synthetic_claim(1, seed=3, frequency="8"), frequency=8, related_key=target.exact_key, related_version=5
    )
    batch = [others[0], others[1], bad_void, others[2], others[3]]
    futures = pipeline.submit_many(batch)

    with pytest.raises(ContractRevertError) as caught:
        futures[2].result(30)
    assert caught.value.error == "ClaimLedgerUnknownClaim"
    assert caught.value.error_args["exactKey"] == target.exact_key
    assert caught.value.error_args["version"] == 5
    assert caught.value.error_args["current"] == 1
    assert "ClaimLedgerUnknownClaim" in str(caught.value)

    results = [futures[i].result(30) for i in (0, 1, 3, 4)]
    assert [r.status for r in results] == ["recorded"] * 4
    assert [r.exact_key for r in results] == ["0x" + c.exact_key.hex() for c in others]
    pipeline.stop()

    rows = outbox_rows(engine)
    assert [(r["status"], r["claim_count"]) for r in rows] == [("mined", 1), ("reverted", 5), ("mined", 4)]
    reverted = rows[1]
    # The four good claims went out again, in a later transaction than the one that reverted.
    assert {r.tx_hash for r in results} == {rows[2]["tx_hash"]}
    assert ledger.rpc().nonce(ledger.provider.address, "latest") == len(rows)
    for c in others:
        assert ledger.contract.live_version(c.exact_key) == 1
        assert len(ledger.submitted_events(c.exact_key)) == 1
    assert ledger.contract.claim_record(target.exact_key)["status"] == "submitted"

    subs = submission_rows(engine)
    in_reverted = [s for s in subs if s["outbox_id"] == reverted["id"]]
    assert [s["status"] for s in in_reverted if s["position"] == 2] == ["failed"]


def test_reverted_batch_leaves_no_pending_submission_rows(ledger: Ledger, tmp_path: Path) -> None:
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine, max_wait_ms=400).start()
    target = ledger.submission(synthetic_claim(1, seed=4))
    assert pipeline.submit(target).result(30).status == "recorded"
    good = ledger.submission(synthetic_claim(2, seed=4))
    bad_void = ledger.submission(
        synthetic_claim(1, seed=4, frequency="8"), frequency=8, related_key=target.exact_key, related_version=9
    )
    futures = pipeline.submit_many([good, bad_void])
    with pytest.raises(ContractRevertError):
        futures[1].result(30)
    assert futures[0].result(30).status == "recorded"
    pipeline.stop()
    pending = [s for s in submission_rows(engine) if s["status"] == "pending"]
    assert pending == []


def test_interval_mining(interval_ledger: Ledger, tmp_path: Path) -> None:
    ledger = interval_ledger
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine, max_batch=25).start()
    claims = [ledger.submission(synthetic_claim(i, seed=5)) for i in range(200)]
    futures: list[Future[SubmissionResult]] = []
    lock = threading.Lock()

    def send(part: list[ClaimSubmission]) -> None:
        fs = pipeline.submit_many(part)
        with lock:
            futures.extend(fs)

    threads = [threading.Thread(target=send, args=(claims[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    results = [f.result(60) for f in futures]
    pipeline.stop()
    assert len(results) == 200
    assert Counter(r.status for r in results) == Counter({"recorded": 200})
    assert {r.exact_key for r in results} == {"0x" + c.exact_key.hex() for c in claims}
    rows = outbox_rows(engine)
    assert len(rows) >= 8
    assert {r["status"] for r in rows} == {"mined"}
    assert ledger.rpc().nonce(ledger.provider.address, "latest") == len(rows)
    # Interval mining: several of the pipeline's transactions shared a block.
    assert len({r["block_number"] for r in rows}) < len(rows)
    assert all(s["status"] == "recorded" for s in submission_rows(engine))


class _ReceiptBatchesRpc(RpcClient):
    """Counts the receipts each batch request brought; with ``refuse``, refuses batches as a node that takes
    none would (and counts the single reads)."""

    def __init__(self, url: str, *, refuse: bool = False) -> None:
        super().__init__(url)
        self.refuse = refuse
        self.batches: list[int] = []
        self.single = 0

    def receipts(self, tx_hashes: list[str]) -> list[dict[str, Any] | None]:
        if self.refuse:
            raise RpcError("eth_getTransactionReceipt", {"code": -32600, "message": "Invalid request"})
        answers = super().receipts(tx_hashes)
        self.batches.append(sum(a is not None for a in answers))
        return answers

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        self.single += 1
        return super().receipt(tx_hash)


@pytest.mark.parametrize("refuse", [False, True], ids=["batches", "node-refuses-batches"])
def test_a_blocks_receipts_are_read_in_one_request(
    interval_ledger: Ledger, tmp_path: Path, refuse: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Transactions that share a block are settled from one batch request of their receipts; a node that
    takes no batches gets them one by one, and every claim is settled either way."""
    ledger = interval_ledger
    engine = new_engine(tmp_path / "ledger.sqlite")
    rpc = _ReceiptBatchesRpc(ledger.rpc_url, refuse=refuse)
    pipeline = SubmissionPipeline(rpc, ledger.address, ledger.provider, engine, max_batch=25, max_in_flight=16)
    ledger.pipelines.append(pipeline)
    pipeline.start()
    claims = [ledger.submission(synthetic_claim(i, seed=11)) for i in range(200)]
    with caplog.at_level(logging.WARNING, logger="ledger.pipeline"):
        results = [f.result(60) for f in pipeline.submit_many(claims)]
    pipeline.stop()
    assert Counter(r.status for r in results) == Counter({"recorded": 200})
    rows = outbox_rows(engine)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"mined"}
    assert len({r["block_number"] for r in rows}) < len(rows)  # some shared a block
    if refuse:
        assert rpc.batches == [] and rpc.single >= len(rows)
        assert "refused a batch of receipt requests" in caplog.text
    else:
        assert max(rpc.batches) >= 2  # a block's receipts, together
        assert sum(rpc.batches) + rpc.single >= len(rows)


@pytest.fixture
def pruning_ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path, extra_args=["--transaction-block-keeper", "1"])


class _LaggingRpc(RpcClient):
    """Holds back the first transaction's receipt, as a receipt thread that fell behind has not read it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.held: str | None = None

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        self.held = self.held or tx_hash
        return None if tx_hash == self.held else super().receipt(tx_hash)

    def receipts(self, tx_hashes: list[str]) -> list[dict[str, Any] | None]:
        return [self.receipt(h) for h in tx_hashes]


def test_a_receipt_the_node_pruned_fails_its_callers_instead_of_hanging(pruning_ledger: Ledger, tmp_path: Path) -> None:
    """A node that keeps only its last block's transactions (anvil --transaction-block-keeper 1) drops a
    mined transaction before its receipt was read: its callers hear so, and the pipeline goes on."""
    ledger = pruning_ledger
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = SubmissionPipeline(_LaggingRpc(ledger.rpc_url), ledger.address, ledger.provider, engine)
    ledger.pipelines.append(pipeline)
    pipeline.start()
    lost = ledger.submission(synthetic_claim(1, seed=9))
    first = pipeline.submit(lost)
    rpc = ledger.rpc()
    wait_until(lambda: rpc.nonce(ledger.provider.address, "latest") == 1, 10, "the first batch mined")
    for _ in range(3):
        rpc.call("evm_mine")  # the node forgets the first transaction and its receipt
    with pytest.raises(ChainUnavailableError, match="pruned its receipt"):
        first.result(timeout=20)
    later = pipeline.submit(ledger.submission(synthetic_claim(2, seed=9))).result(timeout=20)
    assert later.status == "recorded"
    # the lost claim is on chain all the same: sending it again names its record
    again = pipeline.submit(lost).result(timeout=20)
    assert again.status == "duplicate" and again.exact_key == "0x" + lost.exact_key.hex()
    pipeline.stop()
    assert {r["status"] for r in outbox_rows(engine)} == {"mined"}


def test_records_are_written_after_the_answers_and_a_failed_write_is_settled_again(
    ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mined transaction's callers hear their results before its records are written (by the pipeline's
    records writer); when that write fails it is logged, and reconcile settles the records from the chain."""
    engine = new_engine(tmp_path / "records.db")
    pipeline = ledger.pipeline(engine)
    claims = [ledger.submission(synthetic_claim(k, seed=31)) for k in range(3)]
    real_write = pipeline._write_records
    failures: list[int] = []

    def failing_write(records: Any) -> None:
        failures.append(len(records))
        raise RuntimeError("disk full (injected)")

    pipeline._write_records = failing_write  # type: ignore[method-assign]
    pipeline._records = GroupCommit(pipeline._write_records, name="pipeline-records-test")
    pipeline.start()
    with caplog.at_level(logging.ERROR, logger="ledger.pipeline"):
        results = [f.result(30) for f in pipeline.submit_many(claims)]
        pipeline.flush_records(10)
    assert [r.status for r in results] == ["recorded"] * 3  # answered from the receipt, records or not
    assert failures, "the records writer was not called"
    assert any("could not be written" in r.getMessage() for r in caplog.records)
    assert {r["status"] for r in outbox_rows(engine)} == {"sent"}
    assert {r["status"] for r in submission_rows(engine)} == {"pending"}

    pipeline._write_records = real_write  # type: ignore[method-assign]
    pipeline._records = GroupCommit(pipeline._write_records, name="pipeline-records")
    pipeline.reconcile()
    assert {r["status"] for r in outbox_rows(engine)} == {"mined"}
    settled = {r["exact_key"]: r["status"] for r in submission_rows(engine)}
    assert settled == {c.exact_key: "recorded" for c in claims}
    pipeline.stop()
