"""What a block costs anvil as its contract storage grows, with and without a state root (prints a table).
Bounded, loopback only.

Run: .venv/bin/python scripts/bench_state_root.py [--slots 1800000] [--step 600000]

anvil 1.7.1 (the newest that npm serves) computes the state root of every block from scratch over every
storage slot on chain. A one-line claim holds two slots (its record and its line key), so at a million
claims an empty block costs seconds, and anvil answers no call while it mines: that is why no single
claim can be answered within 250 ms there (README, "Where the goals stand").

The same node run as a fork of another, empty one (`--fork-url`) computes no state root, and its empty
block stays cheap. That is no way out: after a restart from its saved state, every storage slot the state
does not hold (each new claim's keys) is asked of the fork's source, one round trip a slot, and its blocks
carry no state root. The third part measures that.

No claims here: a bare contract (hand-assembled below) sets `n` slots from `start` in one transaction,
150,000 a transaction, so the storage grows as the ledger's would, without the pipeline's cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.node import LocalNode, NodeConfig
from ledger.rpc import RpcClient

GAS_LIMIT = 4_000_000_000
CHUNK = 150_000
"""Slots set a transaction (about 3.4B gas)."""
EMPTY_BLOCKS = 3
"""Empty blocks mined at each size; the fastest counts."""

# Runtime: for (i = calldata[0:32]; i < calldata[0:32] + calldata[32:64]; i++) sstore(i, 1)
FILL_RUNTIME = "6000358060203501905b81811015601c5780600190556001016009565b00"
# Init: copy the runtime (0x1e bytes, at offset 0x0b) to memory and return it.
FILL_INIT = "601e80600b6000396000f3"


def start_node(folder: Path, extra: list[str]) -> LocalNode:
    config = NodeConfig(data_dir=folder, gas_limit=GAS_LIMIT, state_interval=3600, extra_args=["--no-mining", *extra])
    return LocalNode(config).start()


def mine(rpc: RpcClient) -> float:
    t = time.perf_counter()
    rpc.call("evm_mine")
    return time.perf_counter() - t


def deploy(rpc: RpcClient, sender: str) -> str:
    tx_hash = rpc.call("eth_sendTransaction", {"from": sender, "data": "0x" + FILL_INIT + FILL_RUNTIME})
    mine(rpc)
    receipt = rpc.receipt(tx_hash)
    if receipt is None or int(receipt["status"], 16) != 1:
        raise SystemExit(f"the fill contract was not deployed: {receipt}")
    address: str = receipt["contractAddress"]
    code = rpc.call("eth_getCode", address, "latest")
    if code != "0x" + FILL_RUNTIME:
        raise SystemExit(f"the fill contract's code is {code}, not the runtime given")
    return address


def fill(rpc: RpcClient, sender: str, contract: str, start: int, n: int) -> float:
    """Set slots start..start+n-1 in one transaction and one block; the block's mining time."""
    data = "0x" + start.to_bytes(32, "big").hex() + n.to_bytes(32, "big").hex()
    tx_hash = rpc.call("eth_sendTransaction", {"from": sender, "to": contract, "data": data, "gas": hex(GAS_LIMIT - 1)})
    took = mine(rpc)
    receipt = rpc.receipt(tx_hash)
    if receipt is None or int(receipt["status"], 16) != 1:
        raise SystemExit(f"filling slots {start}..{start + n - 1} failed: {receipt}")
    last = rpc.call("eth_getStorageAt", contract, hex(start + n - 1), "latest")
    if int(last, 16) != 1:
        raise SystemExit(f"slot {start + n - 1} holds {last} after the fill")
    return took


def grow(rpc: RpcClient, slots: int, step: int, label: str) -> tuple[str, str, list[tuple[int, float, float]]]:
    """Fill to ``slots`` in chunks; at every ``step``, the fastest of EMPTY_BLOCKS empty blocks."""
    sender = rpc.call("eth_accounts")[0]
    contract = deploy(rpc, sender)
    rows: list[tuple[int, float, float]] = []
    done = 0
    while done < slots:
        n = min(CHUNK, slots - done)
        took = fill(rpc, sender, contract, done, n)
        done += n
        if done % step == 0 or done == slots:
            empty = min(mine(rpc) for _ in range(EMPTY_BLOCKS))
            rows.append((done, took, empty))
            print(f"  {label}: {done:,} slots, a block of {n:,} new slots {took:.2f} s, empty {empty * 1000:.0f} ms")
    return sender, contract, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1_800_000, help="storage slots to reach (a claim holds two)")
    parser.add_argument("--step", type=int, default=600_000, help="measure an empty block every this many slots")
    args = parser.parse_args()
    if args.slots < CHUNK or args.step <= 0 or args.step % CHUNK:
        raise SystemExit(f"--slots at least {CHUNK:,}; --step a positive multiple of {CHUNK:,}")

    with tempfile.TemporaryDirectory(prefix="state-root-") as tmp:
        root = Path(tmp)
        print("anvil as the embedded node runs it (a state root a block):", flush=True)
        with start_node(root / "plain", []) as node:
            _, _, plain = grow(RpcClient(node.rpc_url, timeout=600), args.slots, args.step, "state root")

        print("anvil forked from an empty anvil (no state root):", flush=True)
        source = start_node(root / "source", [])
        try:
            forked = start_node(root / "forked", ["--fork-url", source.rpc_url])
            try:
                rpc = RpcClient(forked.rpc_url, timeout=600)
                sender, contract, fork = grow(rpc, args.slots, args.step, "no state root")
            finally:
                forked.stop()  # saves its state
            print("the forked node again, from its saved state:", flush=True)
            with start_node(root / "forked", ["--fork-url", source.rpc_url]) as again:
                rpc = RpcClient(again.rpc_url, timeout=600)
                restarted = fill(rpc, sender, contract, args.slots, CHUNK)
                empty = min(mine(rpc) for _ in range(EMPTY_BLOCKS))
                print(f"  restarted: a block of {CHUNK:,} new slots {restarted:.2f} s, empty {empty * 1000:.0f} ms")
        finally:
            source.stop()

    print()
    print(f"{'slots on chain':>16} | {'empty block, state root':>24} | {'empty block, none (fork)':>25}")
    for (slots, _, with_root), (_, _, without) in zip(plain, fork, strict=True):
        print(f"{slots:>16,} | {with_root * 1000:>21.0f} ms | {without * 1000:>22.0f} ms")
    print(
        f"a block of {CHUNK:,} new slots: {plain[-1][1]:.2f} s with a state root, {fork[-1][1]:.2f} s forked, "
        f"{restarted:.2f} s forked after a restart from its saved state (a round trip to the source a new slot: "
        f"{restarted / CHUNK * 1e6:.0f} us)"
    )


if __name__ == "__main__":
    main()
