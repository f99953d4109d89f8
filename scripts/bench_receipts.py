"""What anvil costs to mine a block of 1,000-claim transactions and to hand out its receipts, by
the number of transactions in the block (prints a table). Bounded, loopback only.

Run: .venv/bin/python scripts/bench_receipts.py [--sizes 20,100,250]

For each size N, on a fresh node with mining off: the pipeline signs and sends N transactions of
1,000 one-line claims (they wait in the pool), one `evm_mine` makes them one block, then the
receipts of 10 of them are read one by one, and the whole block's with `eth_getBlockReceipts` and
with `eth_getLogs`. The pipeline's own receipt thread reads the same receipts meanwhile, as it
would in a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_pipeline import SIGNER, bench, random_claims

READ = 10


def measure(n: int) -> tuple[float, float, float, float]:
    with bench(gas_limit=400_000_000_000, extra_args=["--transaction-block-keeper", "8"]) as b:
        b.rpc.call("evm_setAutomine", False)
        start = b.rpc.nonce(SIGNER.address, "latest")
        pipe = b.pipeline(max_batch=1000, max_in_flight=n + 1)
        futures = pipe.submit_many(random_claims(b, n * 1000))
        deadline = time.monotonic() + 300
        while b.rpc.nonce(SIGNER.address, "pending") < start + n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the pipeline did not send {n} transactions in time")
            time.sleep(0.05)
        t = time.perf_counter()
        b.rpc.call("evm_mine")
        mine = time.perf_counter() - t
        block = b.rpc.block_number()
        hashes = (b.rpc.block(block) or {})["transactions"]
        if len(hashes) != n:
            raise SystemExit(f"block {block} holds {len(hashes)} transactions, not {n}")
        t = time.perf_counter()
        for tx_hash in hashes[:READ]:
            b.rpc.receipt(tx_hash)
        one = (time.perf_counter() - t) / READ
        t = time.perf_counter()
        b.rpc.call("eth_getBlockReceipts", hex(block))
        whole = time.perf_counter() - t
        t = time.perf_counter()
        b.rpc.logs(b.ledger.address, block, block)
        logs = time.perf_counter() - t
        if any(f.result(timeout=600).status != "recorded" for f in futures):
            raise SystemExit("benchmark claims not recorded")
        pipe.stop()
        return mine, one, whole, logs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20,100,250", help="transactions of 1,000 claims in the block")
    args = ap.parse_args()
    columns = ("transactions", "evm_mine s", "a receipt ms", "all receipts s", "getBlockReceipts s", "getLogs s")
    print(" ".join(f"{c:>{len(c)}}" for c in columns))
    for n in (int(s) for s in args.sizes.split(",") if s):
        mine, one, whole, logs = measure(n)
        figures = (f"{n}", f"{mine:.2f}", f"{one * 1000:.1f}", f"{one * n:.2f}", f"{whole:.2f}", f"{logs:.2f}")
        print(" ".join(f"{v:>{len(c)}}" for v, c in zip(figures, columns, strict=True)), flush=True)


if __name__ == "__main__":
    main()
