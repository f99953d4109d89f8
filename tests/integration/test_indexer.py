"""The event indexer against a real anvil: statuses, refused attempts, crash mid-range, idempotence, rollback."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ledger.chain import ClaimSubmission
from ledger.claim import Frequency
from ledger.index_follower import IndexFollower
from ledger.indexer import Indexer
from ledger.rpc import RpcClient
from ledger.store import indexed_claims, indexed_events, indexer_cursor, sqlite_url
from tests.integration.pipeline_fixtures import (
    OTHER_BILLING_NPI,
    Ledger,
    ledger_on_new_node,
    new_engine,
    synthetic_claim,
    wait_until,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path)


@dataclass
class Story:
    """What ``populate`` put on the ledger."""

    keys: set[bytes] = field(default_factory=set)
    refused_by: dict[str, int] = field(default_factory=dict)  # account -> refused attempts it made


def populate(
    ledger: Ledger, tmp_path: Path, *, seed: int = 30, empty_blocks: int = 0, payer_steps: bool = True
) -> Story:
    """Submits, duplicates, suspects, payer steps, voids and replacements (and empty blocks between)."""
    story = Story()
    engine = new_engine(tmp_path / f"pipeline-{seed}.sqlite")
    pipeline = ledger.pipeline(engine, max_batch=4).start()
    rpc = ledger.rpc()
    c = ledger.contract
    payer_x, payer_y = ledger.payer_x_account, ledger.payer_y_account

    def submit(subs: list[ClaimSubmission]) -> list[Any]:
        results = [f.result(30) for f in pipeline.submit_many(subs)]
        story.keys.update(s.exact_key for s in subs if s.frequency != 8)
        if empty_blocks:
            rpc.call("anvil_mine", hex(empty_blocks))
        return results

    claims = [synthetic_claim(i, seed=seed, lines=2) for i in range(10)]
    subs = [ledger.submission(cl, payer_org=ledger.payer_y if i == 7 else None) for i, cl in enumerate(claims)]
    assert {r.status for r in submit(subs)} == {"recorded"}

    # Exact duplicates: sent again through the pipeline (account 1), twice in one batch, and by a second
    # PROV-A account straight through the contract.
    dup1 = ledger.submission(synthetic_claim(1, seed=seed, lines=2, claim_id="AGAIN-1"))
    dup1b = ledger.submission(synthetic_claim(1, seed=seed, lines=2, claim_id="AGAIN-2"))
    assert [r.status for r in submit([dup1, dup1b])] == ["duplicate", "duplicate"]
    story.refused_by[ledger.provider.address.lower()] = 2
    outcome = c.submit_claims(
        [ledger.submission(synthetic_claim(3, seed=seed, lines=2, claim_id="X"))], sender=ledger.second_provider_account
    )
    assert [e.name for e in outcome.events] == ["DuplicateRefused"]
    story.refused_by[ledger.second_provider_account.lower()] = 1

    # A suspect: claim 2's member, dates and procedures billed by another provider NPI.
    suspect = ledger.submission(synthetic_claim(2, seed=seed, lines=2, billing_npi=OTHER_BILLING_NPI))
    [rs] = submit([suspect])
    assert rs.status == "recorded" and len(rs.suspects) == 2

    # Payer steps.
    k = [s.exact_key for s in subs]
    total = [cl.total_charge_cents for cl in claims]
    if payer_steps:
        c.acknowledge(k[2], 1, True, sender=payer_x)
        c.adjudicate(k[2], 1, "approved", total[2], sender=payer_x)
        c.record_payment(k[2], 1, total[2], b"\x11" * 32, sender=payer_x)
        c.acknowledge(k[3], 1, True, sender=payer_x)
        c.adjudicate(k[3], 1, "denied", 0, ["50"], sender=payer_x)
        c.acknowledge(k[4], 1, False, b"A3", sender=payer_x)
        c.acknowledge(k[7], 1, True, sender=payer_y)
        c.adjudicate(k[7], 1, "partly_approved", total[7] // 2, ["45"], sender=payer_y)
        c.acknowledge(k[8], 1, True, sender=payer_x)
        if empty_blocks:
            rpc.call("anvil_mine", hex(empty_blocks))

    # Void claim 5, then send it again (version 2); replace claim 6 by a corrected claim; replace claim 9
    # in its own slot (same content: same exact key, version 2).
    void5 = ledger.submission(
        claims[5].model_copy(update={"frequency": Frequency.VOID}), frequency=8, related_key=k[5], related_version=1
    )
    corrected6 = ledger.submission(
        synthetic_claim(6, seed=seed, lines=2, charge_cents=77_777), frequency=7, related_key=k[6], related_version=1
    )
    same_slot9 = ledger.submission(
        synthetic_claim(9, seed=seed, lines=2, claim_id="C-9-R"), frequency=7, related_key=k[9], related_version=1
    )
    assert same_slot9.exact_key == k[9]
    results = submit([void5, corrected6, same_slot9])
    assert [r.status for r in results] == ["voided", "recorded", "recorded"]
    again5 = ledger.submission(synthetic_claim(5, seed=seed, lines=2, claim_id="C-5-again"))
    [r5] = submit([again5])
    assert (r5.status, r5.version) == ("recorded", 2)
    pipeline.stop()
    return story


def dump_index(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        claims = sorted(tuple(r) for r in conn.execute(select(indexed_claims)))
        events = sorted(tuple(r) for r in conn.execute(select(indexed_events)))
    return {"claims": claims, "events": events}


def rebuilt_index(ledger: Ledger, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine = new_engine(path)
    Indexer(ledger.rpc(), ledger.address, engine, start_block=0).rebuild()
    return dump_index(engine)


def cursor_block(engine: Engine) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(select(indexer_cursor.c.block_number)).first()
    return None if row is None else int(row[0])


# ------------------------------------------------------------------------------------------ tests


def test_index_matches_contract(ledger: Ledger, tmp_path: Path) -> None:
    story = populate(ledger, tmp_path)
    engine = new_engine(tmp_path / "index.sqlite")
    progress = Indexer(ledger.rpc(), ledger.address, engine, start_block=0).run_once()
    assert not progress.rebuilt and progress.events > 0
    assert progress.to_block == ledger.rpc().block_number()

    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(indexed_claims)).mappings()]
        events = [dict(r) for r in conn.execute(select(indexed_events)).mappings()]
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(bytes(r["exact_key"]), []).append(r)
    assert set(by_key) == story.keys

    c = ledger.contract
    statuses_seen = set()
    for key, versions in by_key.items():
        versions.sort(key=lambda r: r["version"])
        record = c.claim_record(key)
        current = versions[-1]
        assert current["version"] == record["version"], key.hex()
        assert current["status"] == record["status"] == c.claim_status(key, record["version"]), key.hex()
        assert current["suspect"] == record["suspect"]
        assert (current["payer_org"], current["provider_org"]) == (record["payer_org"], record["provider_org"])
        assert (current["total_charge"], current["line_count"], current["key_id"]) == (
            record["total_charge"],
            record["line_count"],
            record["key_id"],
        )
        for older in versions[:-1]:  # earlier versions ended (the contract keeps only the latest)
            assert older["status"] in ("voided", "replaced")
        statuses_seen.update(r["status"] for r in versions)
    assert statuses_seen == {"submitted", "accepted", "rejected", "adjudicated", "paid", "voided", "replaced"}
    assert sum(r["suspect"] for r in rows) == 1

    # A replacement points at the claim it replaced.
    replacements = [r for r in rows if r["replaces_key"] is not None]
    assert len(replacements) == 2
    for r in replacements:
        replaced = next(o for o in rows if (o["exact_key"], o["version"]) == (r["replaces_key"], r["replaces_version"]))
        assert replaced["status"] == "replaced"

    # Every refused attempt is evidence: who tried (the sending account), in which transaction.
    refused = [e for e in events if e["name"] == "DuplicateRefused"]
    assert len(refused) == sum(story.refused_by.values())
    by_sender: dict[str, int] = {}
    for e in refused:
        assert e["tx_from"] is not None
        by_sender[e["tx_from"].lower()] = by_sender.get(e["tx_from"].lower(), 0) + 1
        tx = ledger.rpc().call("eth_getTransactionByHash", e["tx_hash"])
        assert tx["from"].lower() == e["tx_from"].lower()
        assert e["version"] == 1 and e["org"] == ledger.prov_org
    assert by_sender == story.refused_by
    # And the index holds every event of the contract.
    assert len(events) == len(ledger.all_logs())


def test_index_keeps_payer_figures(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, tmp_path)
    engine = new_engine(tmp_path / "index.sqlite")
    Indexer(ledger.rpc(), ledger.address, engine, start_block=0).run_once()
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(indexed_claims)).mappings()]
    checked = 0
    for r in rows:
        record = ledger.contract.claim_record(bytes(r["exact_key"]))
        if record["version"] != r["version"] or r["status"] not in ("adjudicated", "paid"):
            continue
        settlement = ledger.contract.settlement(bytes(r["exact_key"]))
        assert (r["outcome"], r["allowed_amount"]) == (settlement["outcome"], settlement["allowed_amount"])
        if r["status"] == "paid":
            assert r["paid_amount"] == settlement["paid_amount"]
            assert r["paid_at"] == settlement["paid_at"]
        checked += 1
    assert checked == 3


def test_index_range_whose_first_claim_was_adjudicated(ledger: Ledger, tmp_path: Path) -> None:
    pipeline = ledger.pipeline(new_engine(tmp_path / "pipeline.sqlite")).start()
    first, second = (ledger.submission(synthetic_claim(i, seed=32)) for i in range(2))
    assert [f.result(30).status for f in pipeline.submit_many([first, second])] == ["recorded", "recorded"]
    pipeline.stop()
    ledger.contract.acknowledge(first.exact_key, 1, True, sender=ledger.payer_x_account)
    ledger.contract.adjudicate(first.exact_key, 1, "approved", 100, sender=ledger.payer_x_account)
    engine = new_engine(tmp_path / "index.sqlite")
    Indexer(ledger.rpc(), ledger.address, engine, start_block=0).run_once()  # one range holds it all
    with engine.connect() as conn:
        rows = {bytes(r["exact_key"]): dict(r) for r in conn.execute(select(indexed_claims)).mappings()}
    assert rows[first.exact_key]["status"] == "adjudicated"
    assert rows[first.exact_key]["allowed_amount"] == 100
    assert rows[second.exact_key]["status"] == "submitted"


def test_run_once_is_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, tmp_path)
    engine = new_engine(tmp_path / "index.sqlite")
    indexer = Indexer(ledger.rpc(), ledger.address, engine, start_block=0)
    first = indexer.run_once()
    before = dump_index(engine)
    second = indexer.run_once()
    assert second.events == 0 and not second.rebuilt
    assert dump_index(engine) == before
    # A fresh indexer over the same database (a restarted process) adds nothing either.
    third = Indexer(ledger.rpc(), ledger.address, engine, start_block=0).run_once()
    assert third.events == 0
    assert dump_index(engine) == before
    assert first.events == len(before["events"])


INDEXER_SCRIPT = """
import sys
import threading
from ledger.index_follower import IndexFollower
from ledger.indexer import Indexer
from ledger.rpc import RpcClient
from tests.integration.pipeline_fixtures import new_engine
from pathlib import Path
db, url, address = sys.argv[1:4]
Indexer(RpcClient(url), address, new_engine(Path(db)), start_block=0, chunk_blocks=1).run_once()
print("finished")
"""


def test_killed_mid_range_then_resumed_equals_rebuild(ledger: Ledger, tmp_path: Path) -> None:
    # With payer steps: in the resumed index they are applied as UPDATEs in later ranges than their
    # claims, in the rebuild within one range; both must give the same rows.
    populate(ledger, tmp_path, empty_blocks=80, payer_steps=True)
    head = ledger.rpc().block_number()
    assert head > 300
    db = tmp_path / "index.sqlite"
    new_engine(db)  # the schema, before two processes race to create it
    proc = subprocess.Popen(
        [sys.executable, "-c", INDEXER_SCRIPT, str(db), ledger.rpc_url, ledger.address],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    engine = new_engine(db)
    try:
        reached = wait_until(
            lambda: (cursor_block(engine) or 0) > 60 and cursor_block(engine),
            60,
            "the indexer process to pass block 60",
            interval=0.002,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    stopped_at = cursor_block(engine)
    assert stopped_at is not None and reached <= stopped_at < head, (reached, stopped_at, head)

    progress = Indexer(ledger.rpc(), ledger.address, engine, start_block=0).run_once()
    assert not progress.rebuilt
    assert progress.from_block == stopped_at + 1
    assert cursor_block(engine) == head
    assert dump_index(engine) == rebuilt_index(ledger, tmp_path / "fresh.sqlite")


@pytest.mark.parametrize("rollback", ["shorter", "different"])
def test_restored_older_node_state_rebuilds_index(
    ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture, rollback: str
) -> None:
    node = ledger.node
    populate(ledger, tmp_path)
    engine = new_engine(tmp_path / "index.sqlite")
    indexer = Indexer(ledger.rpc(), ledger.address, engine, start_block=0)
    indexer.run_once()

    node.stop()  # clean: the state file is written
    aside = tmp_path / "older-state.json"
    shutil.copyfile(node.state_file, aside)
    node.start()
    ledger.reconnect()
    # A clean restart is no rollback: the chain still holds the indexed blocks.
    with caplog.at_level(logging.ERROR, logger="ledger.indexer"):
        assert not indexer.run_once().rebuilt
    assert not [r for r in caplog.records if "INDEX INTEGRITY" in r.getMessage()]

    more = [ledger.submission(synthetic_claim(500 + i, seed=31)) for i in range(6)]
    for s in more:
        ledger.contract.submit_claims([s], sender=ledger.second_provider_account)
    indexer.run_once()
    indexed_head = cursor_block(engine)
    assert indexed_head == ledger.rpc().block_number()
    with engine.connect() as conn:
        keys = {bytes(r[0]) for r in conn.execute(select(indexed_claims.c.exact_key))}
    assert {s.exact_key for s in more} <= keys

    node.stop()
    shutil.copyfile(aside, node.state_file)
    node.start()
    ledger.reconnect()
    rpc = ledger.rpc()
    assert rpc.block_number() < indexed_head
    if rollback == "different":
        # Another history of the same length and more: other claims, then empty blocks past the index.
        other = [ledger.submission(synthetic_claim(700 + i, seed=31)) for i in range(2)]
        for s in other:
            ledger.contract.submit_claims([s], sender=ledger.second_provider_account)
        missing = indexed_head + 3 - rpc.block_number()
        if missing > 0:
            rpc.call("anvil_mine", hex(missing))
        assert rpc.block_number() > indexed_head

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ledger.indexer"):
        progress = indexer.run_once()
    assert progress.rebuilt
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "INDEX INTEGRITY" in r.getMessage()]
    assert len(errors) == 1
    index = dump_index(engine)
    assert index == rebuilt_index(ledger, tmp_path / "fresh.sqlite")
    # The claims of the lost history are gone from the index.
    assert not {s.exact_key for s in more} & {bytes(r[0]) for r in index["claims"]}


# ------------------------------------------------------------------ two indexers over one store


def test_a_range_another_indexer_applied_first_is_not_applied_again(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, tmp_path, payer_steps=False)
    head = ledger.rpc().block_number()
    engine = new_engine(tmp_path / "index.sqlite")
    late = Indexer(ledger.rpc(), ledger.address, engine, start_block=0)
    first = Indexer(ledger.rpc(), ledger.address, engine, start_block=0)
    # `late` read an empty cursor; `first` then indexes everything; `late`'s range must write nothing.
    assert late.cursor() is None
    assert first.run_once().events > 0
    before = dump_index(engine)
    assert late._index_range(0, head, None) == 0
    assert dump_index(engine) == before
    # The same from a cursor that has moved on since it was read, over blocks with events.
    stale = first.cursor()
    assert stale is not None
    populate(ledger, tmp_path, seed=31, payer_steps=False)
    assert first.run_once().events > 0
    after = dump_index(engine)
    assert len(after["events"]) > len(before["events"])
    assert late._index_range(stale[0] + 1, ledger.rpc().block_number(), stale) == 0
    assert dump_index(engine) == after
    assert cursor_block(engine) == ledger.rpc().block_number()


def test_two_indexer_processes_racing_equal_one_rebuild(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, tmp_path, empty_blocks=40)
    db = tmp_path / "index.sqlite"
    new_engine(db)  # the schema, before the processes race to create it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INDEXER_SCRIPT, str(db), ledger.rpc_url, ledger.address],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and b"finished" in out, err.decode()[-2000:]
    engine = new_engine(db)
    assert cursor_block(engine) == ledger.rpc().block_number()
    assert dump_index(engine) == rebuilt_index(ledger, tmp_path / "fresh.sqlite")


def test_follower_process_keeps_the_index_and_ends_with_its_gateway(ledger: Ledger, tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    engine = new_engine(db)
    follower = IndexFollower(ledger.rpc_url, ledger.address, sqlite_url(db), 0, 0.05).start()
    try:
        populate(ledger, tmp_path, payer_steps=True)
        head = ledger.rpc().block_number()
        wait_until(lambda: cursor_block(engine) == head, 60, "the follower to reach the head")
        assert dump_index(engine) == rebuilt_index(ledger, tmp_path / "fresh.sqlite")
        assert follower.running
    finally:
        follower.stop(timeout=10)
    assert not follower.running and follower.exit_code is None  # stopped and forgotten


class CountingRpc(RpcClient):
    """A real client that counts the node's head look-ups (one a run of the indexer)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.heads = 0

    def block_number(self) -> int:
        self.heads += 1
        return super().block_number()


def test_reads_share_one_catch_up_and_still_see_the_newest_receipts_block(ledger: Ledger, tmp_path: Path) -> None:
    rpc = CountingRpc(ledger.rpc().url)
    indexer = Indexer(rpc, ledger.address, new_engine(tmp_path / "index.sqlite"), start_block=0)
    indexer.catch_up()
    assert rpc.heads == 1

    # Reads at the same moment: one run, the others wait for it and find the index fresh.
    barrier = threading.Barrier(16)

    def read() -> None:
        barrier.wait(10)
        indexer.catch_up(fresh_s=30)

    readers = [threading.Thread(target=read) for _ in range(16)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(30)
    assert rpc.heads == 1  # the first run is fresh for 30 s: none of them asked the node

    # A claim recorded after that run: a read that knows of its block indexes it at once, fresh or not.
    engine = new_engine(tmp_path / "pipeline.sqlite")
    pipeline = ledger.pipeline(engine).start()
    claim = ledger.submission(synthetic_claim(1, seed=77))
    result = pipeline.submit(claim).result(30)
    pipeline.stop()
    indexer.catch_up(fresh_s=30)
    assert not indexed(indexer.engine, claim.exact_key)  # fresh, and told of no newer block: left as it was
    indexer.catch_up(through=result.block_number, fresh_s=30)
    assert rpc.heads == 2 and indexed(indexer.engine, claim.exact_key)
    # Past fresh_s a read runs again whatever it knows.
    indexer.catch_up(through=result.block_number, fresh_s=0)
    assert rpc.heads == 3


def indexed(engine: Engine, exact_key: bytes) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(indexed_claims.c.version).where(indexed_claims.c.exact_key == exact_key)).first()
            is not None
        )


def test_a_node_gone_back_below_a_known_receipt_does_not_make_every_read_index_again(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A node restored from an older state no longer has the block of the newest receipt the gateway read: a
    run that began after that receipt and found the head below it has all there is (before, every read ran
    the indexer again until the gateway restarted)."""
    rpc = CountingRpc(ledger.rpc().url)
    indexer = Indexer(rpc, ledger.address, new_engine(tmp_path / "index.sqlite"), start_block=0)
    indexer.catch_up()
    assert rpc.heads == 1
    head = rpc.block_number()
    rpc.heads = 0
    # A receipt of a block past the node's head, read after that run: as if the node went back since.
    known_at = time.monotonic()
    indexer.catch_up(through=head + 5, known_at=known_at, fresh_s=30)
    assert rpc.heads == 1  # the run before began earlier: this read indexes again
    for _ in range(5):
        indexer.catch_up(through=head + 5, known_at=known_at, fresh_s=30)
    assert rpc.heads == 1  # that run began after the receipt and found the head below it: fresh
    # A receipt newer than that run (the node has since mined it, or will): the next read runs again.
    indexer.catch_up(through=head + 5, known_at=time.monotonic(), fresh_s=30)
    assert rpc.heads == 2
