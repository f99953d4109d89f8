"""Throughput of the submission pipeline on real anvil nodes (prints a table).

Run: .venv/bin/python scripts/bench_pipeline.py [--claims N] [--sizes 0,100000,1000000]

Each figure on an empty ledger gets a node of its own, so none is measured on a chain that an
earlier figure filled:
- automine (a block per transaction): the pipeline with already fingerprinted claims, batches of
  1 / 100 / 1,000, one-line and three-line claims; validate + fingerprint + submit (parse,
  clean-claim rules, HMAC keys, pipeline; chunks of 1,000 as a provider's batches), batch 1,000;
- interval mining (--block-time, --block-gas, --in-flight, --keeper; --interval-claims each): the
  same at batches of 100 and 1,000, as a steady stream measured from a tenth of the way to its end;
- single claims (--single-clients submitters, --single-claims in all): each submitter sends one claim
  and waits for its result before the next, on a node mined by the block maker as the gateway's is;
  the pipeline alone, a floor under the gateway's single POSTs; and an empty block's mining time;
- a naive loop: one web3 contract transaction per claim, waiting for its receipt;
- the same pipeline with the chain write replaced by SQL (``ledger.offchain.OffChainLedger``: the
  same intake and batches, exact keys refused and line keys flagged by unique keys, each claim's
  result recorded), SQLite, and PostgreSQL when CLAIMLEDGER_BENCH_POSTGRES_URL names one; and the
  bare unique insert alone, for scale;
- against the size of the ledger (--sizes): automine, and interval mining (1 s blocks, 4B gas,
  80 transactions in flight, the last 64 blocks' transactions kept in memory), the rate at
  batch 1,000 with that many claims already on chain.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account
from sqlalchemy import Column, LargeBinary, MetaData, Table, create_engine, insert

from ledger.chain import ClaimLedgerContract, ClaimSubmission, connect
from ledger.claim import parse_claim
from ledger.fingerprint import FingerprintKey, fingerprint
from ledger.node import DEV_MNEMONIC, LocalNode, NodeConfig
from ledger.offchain import OffChainLedger
from ledger.pipeline import SubmissionPipeline
from ledger.rpc import RpcClient
from ledger.store import make_engine, sqlite_url
from ledger.validation import find_problems

Account.enable_unaudited_hdwallet_features()
SIGNER = Account.from_mnemonic(DEV_MNEMONIC, account_path="m/44'/60'/0'/0/1")
KEY = FingerprintKey.generate()
NPI = "1234567893"
MAX_TX_GAS = 100_000_000


def claim_document(i: int, lines: int) -> dict[str, Any]:
    day = date(2026, 1, 1) + timedelta(days=i % 300)
    return {
        "claim_id": f"BENCH-{i}",
        "billing_npi": NPI,
        "payer_id": "PAYER-BENCH",
        "responsibility": "P",
        "member_id": f"M{i:09d}",
        "patient_birth_date": "1970-05-17",
        "place_of_service": "11",
        "diagnoses": ["E119", "I10"],
        "service_lines": [
            {
                "service_date_from": day.isoformat(),
                "procedure_code": code,
                "units": 1,
                "charge_cents": 12_500,
                "diagnosis_pointers": [1],
            }
            for code in ("99213", "80053", "G0008")[:lines]
        ],
        "total_charge_cents": 12_500 * lines,
    }


def submissions(payer: int, start: int, n: int, lines: int) -> list[ClaimSubmission]:
    """Claims ready to send (checked and fingerprinted here, off any clock)."""
    return checked(payer, [claim_document(i, lines) for i in range(start, start + n)])(0, n)


class Bench:
    """A fresh node with the ledger deployed and a provider and payer registered."""

    def __init__(self, tmp: Path, node: LocalNode) -> None:
        self.tmp, self.node = tmp, node
        self.w3 = connect(node.rpc_url)
        admin, self.provider, payer_account = self.w3.eth.accounts[:3]
        self.ledger, _ = ClaimLedgerContract.deploy(self.w3, admin)
        prov = self.ledger.register_organisation("PROV-BENCH", "provider", sender=admin)
        self.payer = self.ledger.register_organisation("PAYER-BENCH", "payer", sender=admin)
        self.ledger.add_account(prov, self.provider, sender=admin)
        self.ledger.add_account(self.payer, payer_account, sender=admin)
        self.ledger.set_fingerprint_key(KEY.key_id, True, sender=admin)
        self.engine = make_engine(sqlite_url(tmp / "ledger.db"))
        self.rpc = RpcClient(node.rpc_url)

    def pipeline(self, **kwargs: Any) -> SubmissionPipeline:
        kwargs.setdefault("max_tx_gas", MAX_TX_GAS)
        return SubmissionPipeline(self.rpc, self.ledger.address, SIGNER, self.engine, **kwargs).start()

    def through(self, claims: list[ClaimSubmission], **kwargs: Any) -> float:
        pipe = self.pipeline(**kwargs)
        t = time.perf_counter()
        results = [f.result(timeout=1800) for f in pipe.submit_many(claims)]
        dt = time.perf_counter() - t
        pipe.stop()
        bad = {r.status for r in results} - {"recorded"}
        if bad:
            raise SystemExit(f"benchmark claims not recorded: {bad}")
        return len(claims) / dt


@contextmanager
def bench(**node_config: Any) -> Iterator[Bench]:
    node_config.setdefault("gas_limit", 1_000_000_000)
    node_config.setdefault("state_interval", 3600)  # the periodic dump is measured apart, see README
    with tempfile.TemporaryDirectory() as tmp:
        node = LocalNode(NodeConfig(data_dir=Path(tmp) / "node", **node_config)).start()
        try:
            # Set-up without waiting for blocks, then back to interval mining. evm_setIntervalMining takes
            # whole seconds (0 turns mining off), so a fractional block time keeps its blocks throughout.
            block_time = node_config.get("block_time")
            whole = block_time is not None and float(block_time).is_integer() and block_time >= 1
            if whole:
                RpcClient(node.rpc_url).call("evm_setAutomine", True)
            b = Bench(Path(tmp), node)
            if whole:
                b.rpc.call("evm_setIntervalMining", int(block_time))
            yield b
        finally:
            node.kill()


def random_claims(b: Bench, n: int) -> list[ClaimSubmission]:
    return [
        ClaimSubmission(os.urandom(32), os.urandom(32), (os.urandom(32),), KEY.key_id, b.payer, 100) for _ in range(n)
    ]


def stream(
    b: Bench,
    total: int,
    *,
    chunk: int = 10_000,
    blocks: Counter[int] | None = None,
    make: Callable[[int, int], list[ClaimSubmission]] | None = None,
    **kwargs: Any,
) -> list[tuple[int, float]]:
    """Send ``total`` claims as a steady stream (more chunks waiting for results than the pipeline
    has in flight, so blocks never wait for the benchmark); returns (claims done, seconds) as each
    chunk completes, and counts in ``blocks`` the claims each block recorded. ``make(start, n)``
    makes each chunk's claims, on the clock (random one-line keys unless given)."""
    make = make or (lambda start, n: random_claims(b, n))
    pipe = b.pipeline(**kwargs)
    ahead = 2 + (pipe.max_in_flight * pipe.max_batch) // chunk
    waiting: deque[list[Future[Any]]] = deque()
    marks: list[tuple[int, float]] = [(0, 0.0)]
    sent = done = 0
    t0 = time.perf_counter()
    while done < total:
        while sent < total and len(waiting) < ahead:
            n = min(chunk, total - sent)
            waiting.append(pipe.submit_many(make(sent, n)))
            sent += n
        futures = waiting.popleft()
        for f in futures:
            result = f.result(timeout=3600)
            if result.status != "recorded":
                raise SystemExit("benchmark claim not recorded")
            if blocks is not None and result.block_number is not None:
                blocks[result.block_number] += 1
        done += len(futures)
        marks.append((done, time.perf_counter() - t0))
    pipe.stop()
    return marks


def rate_between(marks: list[tuple[int, float]], start: int, end: int) -> float:
    """Claims/s from the first chunk done at or after ``start`` claims (at least one chunk in, so the
    start-up and first block wait are left out) to the first at or after ``end``."""
    a = next(m for m in marks if m[0] >= max(start, 1))
    b = next(m for m in marks if m[0] >= end)
    return (b[0] - a[0]) / (b[1] - a[1])


def block_rate(b: Bench, blocks: Counter[int], start: int, end: int) -> float:
    """Claims/s by the chain's own clock: the blocks that took the ledger from ``start`` to ``end``
    claims (whole blocks), their claims over the time from the block before the first to the last.
    With blocks of many seconds this is the fair measure: a claim count falls in steps, a block at a time."""
    on_chain, first, last = 0, None, None
    for number in sorted(blocks):
        before = on_chain
        on_chain += blocks[number]
        if first is None and on_chain > max(start, 1):
            first = (number, before)
        if first is not None and on_chain >= end:
            last = (number, on_chain)
            break
    if first is None or last is None or last[0] == first[0] - 1:
        raise SystemExit(f"the stream did not reach {end:,} claims")
    opened = b.rpc.block(first[0] - 1) or {}
    closed = b.rpc.block(last[0]) or {}
    seconds = int(closed["timestamp"], 16) - int(opened["timestamp"], 16)
    return (last[1] - first[1]) / max(seconds, 1)


def off_chain(engine_url: str, claims: list[ClaimSubmission]) -> float:
    """The same pipeline, the chain replaced by SQL (OffChainLedger), on a fresh database."""
    engine = make_engine(engine_url)
    with engine.begin() as conn:
        for table in ("offchain_lines", "offchain_claims"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    ledger = OffChainLedger(engine, max_batch=1000).start()
    t = time.perf_counter()
    results = [f.result(timeout=600) for f in ledger.submit_many(claims)]
    rate = len(claims) / (time.perf_counter() - t)
    ledger.stop()
    engine.dispose()
    if {r.status for r in results} != {"recorded"}:
        raise SystemExit("benchmark claims not recorded off chain")
    return rate


def sql_only(engine_url: str, claims: list[ClaimSubmission]) -> float:
    sql = create_engine(engine_url)
    md = MetaData()
    table = Table(
        "bench_claims", md, Column("exact_key", LargeBinary(32), primary_key=True), Column("doc", LargeBinary)
    )
    md.drop_all(sql)
    md.create_all(sql)
    t = time.perf_counter()
    with sql.begin() as conn:
        for k in range(0, len(claims), 1000):
            rows = [{"exact_key": c.exact_key, "doc": c.document_hash} for c in claims[k : k + 1000]]
            conn.execute(insert(table), rows)
    rate = len(claims) / (time.perf_counter() - t)
    md.drop_all(sql)
    return rate


def checked(payer: int, docs: list[dict[str, Any]]) -> Callable[[int, int], list[ClaimSubmission]]:
    """Claims made from documents on the clock, as a provider's batch is: parse, clean-claim rules,
    fingerprints."""

    def make(start: int, n: int) -> list[ClaimSubmission]:
        out = []
        for d in docs[start : start + n]:
            c = parse_claim(d)
            problems = find_problems(c)
            if problems:
                raise SystemExit(f"benchmark claim is not clean: {problems}")
            fp = fingerprint(c, KEY)
            out.append(
                ClaimSubmission(fp.exact_key, fp.document_hash, fp.line_keys, fp.key_id, payer, c.total_charge_cents)
            )
        return out

    return make


def sliced(ready: list[ClaimSubmission]) -> Callable[[int, int], list[ClaimSubmission]]:
    return lambda start, n: ready[start : start + n]


def steady_rate(marks: list[tuple[int, float]], total: int) -> float:
    """The rate of a stream from a tenth of the way (its start-up and first blocks left out) to its end."""
    return rate_between(marks, total // 10, total)


def empty_automine(n: int, row: Any, rates: dict[str, float]) -> None:
    """Each figure on a node of its own, a block per transaction; from the first claim to the last result."""
    for lines in (1, 3):
        for batch, count in ((1, min(n, 300)), (100, n), (1000, n)):
            with bench() as b:
                rate = b.through(submissions(b.payer, 0, count, lines), max_batch=batch)
            rates[f"{lines}/{batch}"] = rate
            row(f"automine: pipeline, {lines}-line claims, batch {batch} (claims/s)", rate)
    with bench() as b:
        docs = [claim_document(i, 1) for i in range(n)]
        marks = stream(b, n, chunk=1000, make=checked(b.payer, docs), max_batch=1000)
        rates["checked"] = marks[-1][0] / marks[-1][1]
        row("automine: validate + fingerprint + submit, 1-line, batch 1000 (claims/s)", rates["checked"])


def empty_interval(n: int, row: Any, rates: dict[str, float], args: argparse.Namespace) -> None:
    """Each figure on a node of its own mining a block every --block-time seconds, --in-flight
    transactions in flight; the rate of a steady stream from a tenth of the way to its end."""
    label = f"interval {args.block_time:g} s, {args.in_flight} in flight"
    config = {
        "block_time": args.block_time,
        "gas_limit": args.block_gas,
        "extra_args": ["--transaction-block-keeper", str(args.keeper)],
    }
    kwargs = {"max_batch": 1000, "max_in_flight": args.in_flight}
    for lines in (1, 3):
        for batch in (100, 1000):
            with bench(**config) as b:
                total = n if batch == 1000 else n // 4
                ready = submissions(b.payer, 0, total, lines)  # fingerprinted before the clock starts
                marks = stream(b, total, chunk=1000, make=sliced(ready), **{**kwargs, "max_batch": batch})
            rates[f"interval {lines}/{batch}"] = steady_rate(marks, total)
            row(f"{label}: pipeline, {lines}-line claims, batch {batch} (claims/s)", rates[f"interval {lines}/{batch}"])
    with bench(**config) as b:
        docs = [claim_document(i, 1) for i in range(n)]
        marks = stream(b, n, chunk=1000, make=checked(b.payer, docs), **kwargs)
        rates["interval checked"] = steady_rate(marks, n)
        row(f"{label}: validate + fingerprint + submit, 1-line, batch 1000 (claims/s)", rates["interval checked"])


def empty_single(row: Any, args: argparse.Namespace) -> None:
    """The pipeline alone with single claims, as the gateway's 64 clients send them: --single-clients
    submitters, each sending one claim and waiting for its result before the next, on a node mined by the
    block maker (as the gateway's is). No HTTP, no checks, no documents: a floor under the gateway's figure.
    With one claim each in flight, a block holds at most one claim a submitter, so the rate is at most
    submitters / (the time from one block to the next); then the empty block's mining time at the size
    the ledger reached (anvil rebuilds its state trie at every block)."""
    total = args.single_claims
    with bench(gather_blocks=True) as b:
        ready = random_claims(b, total + 200)
        pipe = b.pipeline(max_in_flight=32)
        for f in pipe.submit_many(ready[:200]):  # warm-up: the pipeline's threads, the node's first blocks
            f.result(timeout=60)
        first_block = b.rpc.block_number()
        latencies: list[float] = []
        lock = threading.Lock()
        turns = iter(range(200, total + 200))

        def submitter() -> None:
            while True:
                with lock:
                    i = next(turns, None)
                if i is None:
                    return
                t = time.perf_counter()
                result = pipe.submit(ready[i]).result(timeout=60)
                if result.status != "recorded":
                    raise SystemExit("benchmark claim not recorded")
                with lock:
                    latencies.append(time.perf_counter() - t)

        threads = [threading.Thread(target=submitter) for _ in range(args.single_clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        pipe.stop()
        if len(latencies) != total:
            raise SystemExit(f"{total - len(latencies)} benchmark claims were not answered")
        blocks = b.rpc.block_number() - first_block
        mines = []
        for _ in range(10):
            t = time.perf_counter()
            b.rpc.call("evm_mine")
            mines.append(time.perf_counter() - t)
    latencies.sort()
    label = f"single claims, {args.single_clients} submitters, block maker"
    row(f"{label}: pipeline alone (claims/s)", total / seconds)
    row(f"{label}: latency p50 (ms)", latencies[total // 2] * 1000, "{:10,.1f}")
    row(f"{label}: latency p99 (ms)", latencies[int(total * 0.99)] * 1000, "{:10,.1f}")
    row(f"{label}: claims a block", total / max(blocks, 1), "{:10,.1f}")
    row(f"  an empty block's mining at {total + 200:,} claims, median of 10 (ms)", sorted(mines)[5] * 1000, "{:10,.1f}")


def baselines(n: int, row: Any, rates: dict[str, float]) -> None:
    """The naive loop, and the same pipeline with SQL in place of the chain; the ratios to them."""
    with bench() as b:
        naive_n = 200
        naive = submissions(b.payer, 0, naive_n, 1)
        t = time.perf_counter()
        for one in naive:
            b.ledger.submit_claims([one], sender=b.provider)
        naive_rate = naive_n / (time.perf_counter() - t)
        row("naive loop, one web3 transaction per claim + receipt (claims/s)", naive_rate)

        only = submissions(b.payer, 0, n, 1)
        sqlite_rate = off_chain(sqlite_url(b.tmp / "off-chain.db"), only)
        row("same pipeline, SQL instead of chain, SQLite, batch 1000 (claims/s)", sqlite_rate)
        bare_rate = sql_only(sqlite_url(b.tmp / "bare.db"), only)
        row("  bare unique insert alone, SQLite, batch 1000 (claims/s)", bare_rate)
        pg_url = os.environ.get("CLAIMLEDGER_BENCH_POSTGRES_URL")
        if pg_url:
            row("same pipeline, SQL instead of chain, PostgreSQL, batch 1000 (claims/s)", off_chain(pg_url, only))
            row("  bare unique insert alone, PostgreSQL, batch 1000 (claims/s)", sql_only(pg_url, only))

    for mode, key in (("automine", "1/1000"), ("interval", "interval 1/1000")):
        if key in rates:
            row(f"ratio pipeline ({mode}, batch 1000) / naive loop", rates[key] / naive_rate, "{:10,.1f}")
            row(f"ratio chain ({mode}) / no chain (the same pipeline on SQLite)", rates[key] / sqlite_rate, "{:10,.2f}")
            row(f"ratio chain ({mode}) / bare unique insert (SQLite)", rates[key] / bare_rate, "{:10,.2f}")


def growth(
    b: Bench, label: str, sizes: list[int], window: int, kwargs: dict[str, Any], row: Any, *, by_blocks: bool = False
) -> None:
    """The rate at batch 1,000 as the ledger grows: one steady stream of claims up to the largest size
    plus two windows (the stream's own end, its last chunks in thinner blocks, stays out of every
    window); the rate at size S is measured over the claims from S to S + window."""
    blocks: Counter[int] = Counter()
    marks = stream(b, max(sizes) + 2 * window, blocks=blocks, **kwargs)
    for size in sizes:
        rate = rate_between(marks, size, size + window)
        row(f"{label}: 1-line, batch 1000, {size:,} claims on chain (claims/s)", rate)
        if by_blocks:
            rate = block_rate(b, blocks, size, size + window)
            row(f"{label}: the same by the blocks' timestamps (claims/s)", rate)


@contextmanager
def external(rpc_url: str) -> Iterator[Bench]:
    """A node that is already running (its accounts from the development mnemonic, funded)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Bench(Path(tmp), SimpleNamespace(rpc_url=rpc_url))  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--sizes", default="0,100000")
    ap.add_argument("--growth-only", action="store_true", help="only the rate against the size of the ledger")
    ap.add_argument("--modes", default="automine,interval", help="for the size rows: automine, interval or both")
    ap.add_argument("--empty-modes", default="automine,interval,single", help="for the empty-ledger rows")
    ap.add_argument("--single-clients", type=int, default=64, help="single mode: submitters, one claim each at a time")
    ap.add_argument("--single-claims", type=int, default=6000, help="single mode: claims in all")
    ap.add_argument("--interval-claims", type=int, default=100_000, help="empty-ledger interval rows: claims each")
    ap.add_argument("--block-time", type=float, default=1, help="interval mining: seconds a block (0.5 too)")
    ap.add_argument("--block-gas", type=int, default=4_000_000_000, help="interval mining: block gas limit")
    ap.add_argument("--in-flight", type=int, default=80, help="interval mining: transactions in flight")
    ap.add_argument("--keeper", type=int, default=16, help="interval mining: blocks whose transactions anvil keeps")
    ap.add_argument("--window", type=int, default=50_000, help="size rows: claims each rate is measured over")
    ap.add_argument("--rpc-url", help="the size rows on this node instead (its own mining; e.g. tools/hardhat-node)")
    ap.add_argument("--node-name", default="external node", help="what to call the --rpc-url node in the table")
    args = ap.parse_args()
    n = args.claims
    rows: list[tuple[str, str]] = []

    def row(what: str, value: float, fmt: str = "{:10,.0f}") -> None:
        rows.append((what, fmt.format(value)))
        print(f"  {what}: {fmt.format(value).strip()}", flush=True)

    if not args.growth_only:
        rates: dict[str, float] = {}
        empty_modes = [m.strip() for m in args.empty_modes.split(",") if m.strip()]
        if "automine" in empty_modes:
            empty_automine(n, row, rates)
        if "interval" in empty_modes:
            empty_interval(args.interval_claims, row, rates, args)
        if "single" in empty_modes:
            empty_single(row, args)
        baselines(n, row, rates)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    window = args.window
    if args.rpc_url:
        with external(args.rpc_url) as b:
            growth(b, args.node_name, sizes, window, {"max_batch": 1000, "max_in_flight": args.in_flight}, row)
    if "automine" in modes and not args.rpc_url:
        with bench() as b:
            growth(b, "anvil automine", sizes, window, {"max_batch": 1000}, row)
    if "interval" in modes and not args.rpc_url:
        gas = args.block_gas
        label = f"anvil interval {args.block_time:g} s, {gas / 1e9:g}B gas, {args.in_flight} in flight"
        # anvil keeps every block's transactions and receipts in memory unless told to keep only the
        # last N blocks'; the receipt thread must read a transaction's receipt before N more blocks pass
        keeper = ["--transaction-block-keeper", str(args.keeper)]
        config = {"block_time": args.block_time, "gas_limit": gas, "extra_args": keeper}
        with bench(**config) as b:
            growth(b, label, sizes, window, {"max_batch": 1000, "max_in_flight": args.in_flight}, row, by_blocks=True)

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'what':{width}}  {'figure':>10}")
    for what, figure in rows:
        print(f"{what:{width}}  {figure}")


if __name__ == "__main__":
    main()
