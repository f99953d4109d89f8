"""The pipeline survives a crash of its process and a node that loses its last blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import ClaimSubmission
from ledger.node import LocalNode
from ledger.pipeline import SubmissionResult
from tests.integration.pipeline_fixtures import (
    Ledger,
    ledger_on_new_node,
    new_engine,
    outbox_rows,
    submission_rows,
    synthetic_claim,
    wait_until,
)
from tests.integration.pipeline_worker import CRASH_CODE, submission_to_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path, state_interval=1)


def run_worker(ledger: Ledger, db: Path, claims: list[ClaimSubmission], mode: str, tmp_path: Path) -> int:
    claims_file = tmp_path / f"claims-{mode}.json"
    claims_file.write_text(json.dumps([submission_to_json(c) for c in claims]))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.pipeline_worker",
            str(db),
            ledger.rpc_url,
            ledger.address,
            str(claims_file),
            mode,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == CRASH_CODE, (done.returncode, done.stdout.decode(), done.stderr.decode()[-3000:])
    return done.returncode


def assert_once_on_chain(ledger: Ledger, claims: list[ClaimSubmission], version: int = 1) -> None:
    for c in claims:
        record = ledger.contract.claim_record(c.exact_key)
        assert record["version"] == version, c.exact_key.hex()
        assert record["status"] == "submitted"
        assert ledger.contract.live_version(c.exact_key) == version
        assert len(ledger.submitted_events(c.exact_key)) == 1, c.exact_key.hex()


def assert_outbox_consistent(ledger: Ledger, engine: Any) -> list[dict[str, Any]]:
    rows = outbox_rows(engine)
    assert [r["nonce"] for r in rows] == list(range(len(rows)))
    assert {r["status"] for r in rows} == {"mined"}
    assert ledger.rpc().nonce(ledger.provider.address, "latest") == len(rows)
    for r in rows:  # the chain has every outbox transaction, under the hash stored before it was sent
        receipt = ledger.rpc().receipt(r["tx_hash"])
        assert receipt is not None and int(receipt["status"], 16) == 1
        assert int(receipt["blockNumber"], 16) == r["block_number"]
    return rows


# ------------------------------------------------------------------------------------ process crash


def test_crash_between_send_and_receipt(ledger: Ledger, tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    claims = [ledger.submission(synthetic_claim(i, seed=20)) for i in range(5)]
    run_worker(ledger, db, claims, "after_send", tmp_path)

    engine = new_engine(db)
    [row] = outbox_rows(engine)
    assert row["status"] == "sent" and row["claim_count"] == 5
    assert {s["status"] for s in submission_rows(engine)} == {"pending"}
    assert ledger.rpc().receipt(row["tx_hash"]) is not None  # it reached the chain before the process died

    pipeline = ledger.pipeline(engine).start()  # start() reconciles
    assert pipeline.reconciled_resends == 0
    assert_once_on_chain(ledger, claims)
    subs = submission_rows(engine)
    assert [(s["status"], s["version"]) for s in subs] == [("recorded", 1)] * 5
    assert [bytes(s["exact_key"]) for s in subs] == [c.exact_key for c in claims]
    assert {s["outbox_id"] for s in subs} == {row["id"]}  # recorded as of the transaction that reached the chain
    [settled] = [r for r in outbox_rows(engine) if r["id"] == row["id"]]
    assert settled["status"] == "mined"
    assert settled["block_number"] == int(ledger.rpc().receipt(row["tx_hash"])["blockNumber"], 16)

    # The restarted pipeline goes on with the next nonce.
    more = ledger.submission(synthetic_claim(99, seed=20))
    assert pipeline.submit(more).result(30).status == "recorded"
    pipeline.stop()
    rows = assert_outbox_consistent(ledger, engine)
    assert len(rows) == 2


def test_crash_after_storing_before_sending(ledger: Ledger, tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    claims = [ledger.submission(synthetic_claim(i, seed=21)) for i in range(5)]
    run_worker(ledger, db, claims, "before_send", tmp_path)

    engine = new_engine(db)
    [row] = outbox_rows(engine)
    assert row["status"] == "signed"
    rpc = ledger.rpc()
    assert rpc.call("eth_getTransactionByHash", row["tx_hash"]) is None
    assert rpc.nonce(ledger.provider.address, "latest") == 0
    for c in claims:
        assert ledger.contract.live_version(c.exact_key) == 0

    pipeline = ledger.pipeline(engine).start()
    assert pipeline.reconciled_resends == 1
    # The same bytes went out: the chain has the outbox row's transaction, under its hash.
    tx = rpc.call("eth_getTransactionByHash", row["tx_hash"])
    assert tx is not None and tx["hash"] == row["tx_hash"]
    raw = rpc.call("eth_getRawTransactionByHash", row["tx_hash"])
    assert bytes.fromhex(raw[2:]) == bytes(row["raw"])
    assert_once_on_chain(ledger, claims)
    for c in claims:
        [event] = ledger.submitted_events(c.exact_key)
        assert event["transactionHash"] == row["tx_hash"]
    subs = submission_rows(engine)
    assert [(s["status"], s["version"]) for s in subs] == [("recorded", 1)] * 5
    pipeline.stop()
    assert_outbox_consistent(ledger, engine)


# ------------------------------------------------------------------------------------ node loses blocks


def saved_state(node: LocalNode) -> dict[str, Any] | None:
    """The node's state file as last saved (None while it is being written)."""
    try:
        state: dict[str, Any] = json.loads(node.state_file.read_bytes())
        return state
    except (OSError, ValueError):
        return None


def wait_saved_through(node: LocalNode, block: int) -> None:
    """Wait (bounded) until the node's periodic save holds block ``block``."""

    def saved() -> bool:
        state = saved_state(node)
        return state is not None and int(state["best_block_number"]) >= block

    wait_until(saved, 10, f"the node's state file to hold block {block}", interval=0.005)


def saved_nonce(node: LocalNode, address: str) -> int:
    state = wait_until(lambda: saved_state(node), 5, "a readable state file")
    account = state["accounts"].get(address.lower(), {"nonce": 0})
    return int(account["nonce"])


def submit_all(pipeline: Any, claims: list[ClaimSubmission]) -> list[SubmissionResult]:
    return [f.result(60) for f in pipeline.submit_many(claims)]


def test_node_loses_last_blocks_then_reconcile(ledger: Ledger, tmp_path: Path) -> None:
    node = ledger.node
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine, max_batch=5).start()
    saved_claims = [ledger.submission(synthetic_claim(i, seed=22)) for i in range(15)]
    first = submit_all(pipeline, saved_claims)
    assert {r.status for r in first} == {"recorded"}
    wait_saved_through(node, max(r.block_number or 0 for r in first))

    lost_claims = [ledger.submission(synthetic_claim(100 + i, seed=22)) for i in range(15)]
    second = submit_all(pipeline, lost_claims)
    node.kill()  # right away, before the next periodic save
    assert {r.status for r in second} == {"recorded"}

    rows_before = outbox_rows(engine)
    kept = saved_nonce(node, ledger.provider.address)
    lost_rows = [r for r in rows_before if r["nonce"] >= kept]
    assert lost_rows, "the node saved its state after the second batch: nothing was lost, the test proves nothing"

    node.start()  # the same config: same port and data folder; it reloads the state file
    ledger.reconnect()
    assert ledger.rpc().nonce(ledger.provider.address, "latest") == kept
    for r in lost_rows:
        assert ledger.rpc().receipt(r["tx_hash"]) is None

    resent = pipeline.reconcile()
    assert resent == len(lost_rows)
    assert pipeline.reconciled_resends > 0

    # Every claim the pipeline reported recorded is on chain exactly once.
    assert_once_on_chain(ledger, saved_claims + lost_claims)
    # The pipeline goes on after the reconcile with the right nonce.
    after = submit_all(pipeline, [ledger.submission(synthetic_claim(200, seed=22))])
    assert after[0].status == "recorded"
    pipeline.stop()
    assert_outbox_consistent(ledger, engine)
    subs = submission_rows(engine)
    assert {s["status"] for s in subs} == {"recorded"} and len(subs) == 31


def test_node_loses_last_blocks_receipt_loop_notices(ledger: Ledger, tmp_path: Path) -> None:
    node = ledger.node
    engine = new_engine(tmp_path / "ledger.sqlite")
    armed = threading.Event()
    node_down = threading.Event()

    def after_send(_tx_hash: str) -> None:
        if armed.is_set():
            armed.clear()
            node.kill()  # the node dies right after taking this transaction, before its receipt is read
            node_down.set()

    pipeline = ledger.pipeline(engine, max_batch=5, after_send=after_send).start()
    saved_claims = [ledger.submission(synthetic_claim(i, seed=23)) for i in range(10)]
    first = submit_all(pipeline, saved_claims)
    assert {r.status for r in first} == {"recorded"}
    wait_saved_through(node, max(r.block_number or 0 for r in first))

    lost_claims = [ledger.submission(synthetic_claim(100 + i, seed=23)) for i in range(10)]
    second = submit_all(pipeline, lost_claims)  # recorded, then lost with the node's last blocks
    assert {r.status for r in second} == {"recorded"}

    armed.set()
    killed_claims = [ledger.submission(synthetic_claim(200 + i, seed=23)) for i in range(5)]
    killed_futures: list[Future[SubmissionResult]] = pipeline.submit_many(killed_claims)
    assert node_down.wait(30)

    # Sent while the node is down: stored, not delivered.
    down_claims = [ledger.submission(synthetic_claim(300 + i, seed=23)) for i in range(5)]
    down_futures = pipeline.submit_many(down_claims)
    down_keys = {c.exact_key for c in down_claims}

    def down_rows_stored() -> list[int]:
        subs = [s for s in submission_rows(engine) if bytes(s["exact_key"]) in down_keys]
        ids = {s["outbox_id"] for s in subs}
        rows = [r for r in outbox_rows(engine) if r["id"] in ids]
        return sorted(ids) if len(subs) == len(down_keys) and all(r["status"] == "sent" for r in rows) else []

    down_outbox_ids = wait_until(down_rows_stored, 30, "the batch sent to the dead node to be stored")
    kept = saved_nonce(node, ledger.provider.address)
    rows_before = outbox_rows(engine)
    # Those that reached the node once, then were lost with its last blocks.
    lost_sent = [r for r in rows_before if r["nonce"] >= kept and r["id"] not in down_outbox_ids]
    assert lost_sent, "the node saved its state after the second batch: nothing was lost, the test proves nothing"
    assert not any(f.done() for f in down_futures)

    node.start()  # same port, same data folder: the running pipeline notices and sends again
    ledger.reconnect()
    killed = [f.result(60) for f in killed_futures]
    down = [f.result(60) for f in down_futures]
    assert {r.status for r in killed + down} == {"recorded"}
    assert pipeline.reconciled_resends >= len(lost_sent) + len(down_outbox_ids)

    assert_once_on_chain(ledger, saved_claims + lost_claims + killed_claims + down_claims)
    pipeline.stop()
    assert_outbox_consistent(ledger, engine)
    subs = submission_rows(engine)
    assert {s["status"] for s in subs} == {"recorded"} and len(subs) == 30


def test_receipt_loop_resend_resettles_moved_transactions(ledger: Ledger, tmp_path: Path) -> None:
    node = ledger.node
    engine = new_engine(tmp_path / "ledger.sqlite")
    armed = threading.Event()
    node_down = threading.Event()

    def after_send(_tx_hash: str) -> None:
        if armed.is_set():
            armed.clear()
            node.kill()
            node_down.set()

    pipeline = ledger.pipeline(engine, max_batch=5, after_send=after_send).start()
    first = submit_all(pipeline, [ledger.submission(synthetic_claim(i, seed=24)) for i in range(5)])
    wait_saved_through(node, max(r.block_number or 0 for r in first))
    ledger.rpc().call("anvil_mine", "0x1")  # an empty block, lost with the rest: the resends land one lower
    lost = submit_all(pipeline, [ledger.submission(synthetic_claim(100 + i, seed=24)) for i in range(5)])
    armed.set()
    last = pipeline.submit_many([ledger.submission(synthetic_claim(200 + i, seed=24)) for i in range(5)])
    assert node_down.wait(30)
    assert saved_nonce(node, ledger.provider.address) == 1, "the node saved the lost blocks: nothing to prove"
    node.start()
    ledger.reconnect()
    assert {f.result(60).status for f in last} == {"recorded"}
    pipeline.stop()
    rpc = ledger.rpc()
    for r in lost:
        assert int(rpc.receipt(r.tx_hash)["blockNumber"], 16) != r.block_number  # it moved
    sent = {r["id"]: r for r in outbox_rows(engine)}
    for s in submission_rows(engine):  # each claim's record names its transaction's block as the chain has it now
        tx = sent[s["outbox_id"]]
        assert s["status"] == "recorded" and tx["status"] == "mined"
        assert tx["block_number"] == int(rpc.receipt(tx["tx_hash"])["blockNumber"], 16)
    assert_outbox_consistent(ledger, engine)
