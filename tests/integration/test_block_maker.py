"""The embedded node's block maker (``ledger.block_maker``) against a real anvil: transactions that wait
together go in one block, every transaction is mined without anyone asking, what waits at a clean stop is
mined, a block maker that dies is started again, and one whose owner dies stops the node. Each test runs its
own anvil."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from ledger.block_maker import MAX_GATHER_S, BlockMaker, stop_orphaned_node
from ledger.chain import connect
from ledger.node import STATE_FILE, LocalNode, NodeConfig

MINED_WITHIN_S = 5.0
"""Generous: an idle block maker looks at the pool every 20 ms at most."""


def transfers(w3: Web3, n: int) -> list[bytes]:
    """Send ``n`` small transfers from a dev account (unlocked on anvil); their hashes."""
    sender, receiver = w3.eth.accounts[1], w3.eth.accounts[2]
    return [w3.eth.send_transaction({"from": sender, "to": receiver, "value": i + 1}) for i in range(n)]


def waiting(w3: Web3) -> int:
    return int(w3.provider.make_request("txpool_status", [])["result"]["pending"], 16)  # type: ignore[arg-type]


def test_transactions_waiting_together_are_mined_into_one_block(nodes: list[LocalNode], tmp_path: Path) -> None:
    # A node that does not mine, and no block maker yet: the transactions wait in its pool.
    node = LocalNode(NodeConfig(data_dir=tmp_path, extra_args=["--no-mining"])).start()
    nodes.append(node)
    w3 = connect(node.rpc_url)
    hashes = transfers(w3, 3)
    assert waiting(w3) == 3
    assert all(w3.eth.get_transaction(h)["blockNumber"] is None for h in hashes)
    start_block = w3.eth.block_number

    maker = BlockMaker(node.rpc_url)
    runner = threading.Thread(target=maker.run, daemon=True)
    runner.start()
    try:
        receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=MINED_WITHIN_S, poll_latency=0.01) for h in hashes]
    finally:
        maker.stop()
        runner.join(5)
    assert not runner.is_alive()
    assert {r["blockNumber"] for r in receipts} == {start_block + 1}  # one block, all three
    assert maker.blocks == 1 and waiting(w3) == 0
    assert w3.eth.block_number == start_block + 1  # no block while nothing waited


def test_the_wait_for_more_is_a_share_of_the_last_block_and_bounded(tmp_path: Path) -> None:
    maker = BlockMaker("http://127.0.0.1:1")
    assert maker.gather_s() == 0  # before any block: at once, as automine
    maker.last_mine_s = 0.2
    assert maker.gather_s() == pytest.approx(0.02)
    maker.last_mine_s = 3.5  # a block on a ledger of a million claims
    assert maker.gather_s() == pytest.approx(0.35)
    maker.last_mine_s = 60.0
    assert maker.gather_s() == MAX_GATHER_S
    with pytest.raises(ValueError, match="http://"):
        BlockMaker("ws://127.0.0.1:8545")


def test_what_waits_at_a_stop_is_mined_first(nodes: list[LocalNode], tmp_path: Path) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path, extra_args=["--no-mining"])).start()
    nodes.append(node)
    w3 = connect(node.rpc_url)
    [tx] = transfers(w3, 1)
    maker = BlockMaker(node.rpc_url)
    maker.stop()
    maker.run()  # stopped before it began: it only finishes
    assert w3.eth.get_transaction_receipt(tx)["status"] == 1
    assert maker.blocks == 1


def test_the_embedded_node_mines_every_transaction_and_keeps_its_block_maker(
    nodes: list[LocalNode], tmp_path: Path
) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path, gather_blocks=True)).start()
    nodes.append(node)
    assert "--no-mining" in node.command() and node.gathers_blocks
    w3 = connect(node.rpc_url)
    assert w3.provider.make_request("anvil_getAutomine", [])["result"] is False  # type: ignore[arg-type]
    [first] = transfers(w3, 1)
    assert w3.eth.wait_for_transaction_receipt(first, timeout=MINED_WITHIN_S, poll_latency=0.01)["status"] == 1

    maker = node.block_maker
    assert maker is not None and maker.poll() is None
    maker.send_signal(signal.SIGKILL)
    maker.wait(5)
    assert node.keep_block_maker() is False  # it had died: started again
    assert node.keep_block_maker() is True
    [second] = transfers(w3, 1)
    assert w3.eth.wait_for_transaction_receipt(second, timeout=MINED_WITHIN_S, poll_latency=0.01)["status"] == 1

    # A clean stop ends the block maker (by closing its stdin) before the node.
    maker = node.block_maker
    assert maker is not None
    node.stop()
    assert maker.poll() is not None and not node.running


def test_a_block_time_or_automine_needs_no_block_maker(nodes: list[LocalNode], tmp_path: Path) -> None:
    timed = LocalNode(NodeConfig(data_dir=tmp_path / "timed", block_time=1, gather_blocks=True))
    assert not timed.gathers_blocks and "--no-mining" not in timed.command()
    automine = LocalNode(NodeConfig(data_dir=tmp_path / "auto")).start()
    nodes.append(automine)
    assert automine.keep_block_maker() is True and automine.block_maker is None
    w3 = connect(automine.rpc_url)
    [tx] = transfers(w3, 1)
    # anvil mines it as it comes, with no one asking (the hash may come back a moment before the block)
    assert w3.eth.wait_for_transaction_receipt(tx, timeout=MINED_WITHIN_S, poll_latency=0.01)["status"] == 1


OWNER = """
import sys, time
from pathlib import Path
from ledger.node import LocalNode, NodeConfig
node = LocalNode(NodeConfig(data_dir=Path(sys.argv[1]), gather_blocks=True)).start()
print(node._process.pid, flush=True)
time.sleep(600)
"""


def test_a_node_whose_owner_dies_is_stopped_by_its_block_maker(tmp_path: Path) -> None:
    # The owner (a gateway) is killed: nothing stops its anvil, which would run on over the data folder and
    # keep the next start from starting a node there. Its block maker sees its stdin close without STOP.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    try:
        assert owner.stdout is not None
        anvil_pid = int(owner.stdout.readline())
        os.kill(anvil_pid, 0)  # running
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{anvil_pid}").exists() and b"anvil" in _cmdline(anvil_pid):
            assert time.monotonic() < deadline, "the orphaned node is still running"
            time.sleep(0.1)
    finally:
        owner.kill()
        if Path(f"/proc/{anvil_pid}").exists() and b"anvil" in _cmdline(anvil_pid):
            os.kill(anvil_pid, signal.SIGKILL)
    assert (tmp_path / STATE_FILE).exists()  # stopped by SIGTERM: it saved its state
    again = LocalNode(NodeConfig(data_dir=tmp_path, gather_blocks=True)).start()  # the folder is free again
    again.stop()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_only_an_anvil_is_stopped_for_a_dead_owner() -> None:
    assert stop_orphaned_node(os.getpid()) is False  # this test's own process is not an anvil
    assert stop_orphaned_node(2**22 + 12345) is False  # no such process
