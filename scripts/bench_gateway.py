"""Throughput of the gateway over HTTP on loopback (prints a table). Bounded: it sends a fixed
number of requests and stops.

Run: .venv/bin/python scripts/bench_gateway.py [--single N] [--clients 64] [--batches 5] [--warmup 200]
         [--data-dir DIR] [--prefill N --prefill-clients 32]

Starts `claimledger serve` (embedded node, SQLite) in a fresh data folder (or --data-dir, kept, and
used again by the next run), reads the demo keys it prints (kept in the folder as bench-keys.json),
then measures single-claim POSTs from --clients concurrent clients (claims/s, p50, p99 latency) and
batch POSTs of 1,000 claims end to end (recorded and indexed).

--prefill N first adds N claims in batches of 1,000 (not timed as the figure; its rate is printed
every 100,000 claims), so that the figures are taken on a ledger of that size. The gateway's
settings come from the environment as usual (CLAIMLEDGER_NODE_BLOCK_TIME_S and so on). Every run's
claim ids carry a salt of their own, so a run on a kept folder sends no duplicates.

The load comes from one asyncio process (aiohttp on uvloop): --clients connections, each sending
its next claim as soon as its last one is answered, every claim distinct, every answer checked to
be 201 (single) or every claim of a batch to be recorded. Request bodies are encoded before the
clock starts. --warmup claims are sent first, not counted (the first one starts the provider's
pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.metrics import SUBMISSION_STAGES as STAGES  # noqa: E402
from ledger.node import free_port  # noqa: E402

JSON = {"Content-Type": "application/json"}


def claim(i: int, salt: str) -> dict:
    return {
        "claim_id": f"GW-{salt}-{i}",
        "billing_npi": "1234567893",
        "payer_id": "PAYER-ACME",
        "responsibility": "P",
        "member_id": f"G{salt}{i:09d}",
        "patient_birth_date": "1970-05-17",
        "place_of_service": "11",
        "diagnoses": ["E119"],
        "service_lines": [
            {
                "service_date_from": "2026-03-02",
                "procedure_code": "99213",
                "units": 1,
                "charge_cents": 12_500,
                "diagnosis_pointers": [1],
            }
        ],
        "total_charge_cents": 12_500,
    }


KEYS_FILE = "bench-keys.json"


def start_gateway(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    kept = data_dir / KEYS_FILE
    env = {
        **os.environ,
        "CLAIMLEDGER_DATA_DIR": str(data_dir),
        "CLAIMLEDGER_PORT": str(port),
        "CLAIMLEDGER_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "claimledger"), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    keys: dict[str, str] = json.loads(kept.read_text()) if kept.exists() else {}
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout if not keys else ():
        m = re.match(r"\s+(\S+)\s+(clk_\S+)", line)
        if m:
            keys[m.group(1)] = m.group(2)
        if line.startswith("Use one as"):
            kept.write_text(json.dumps(keys))
            break
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not print its demo keys in time")
    if not keys:
        raise SystemExit(f"the gateway printed no demo keys and {kept} does not exist")
    threading.Thread(target=lambda: [print(line, end="") for line in proc.stdout], daemon=True).start()  # drain
    return proc, keys


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 900  # a kept folder of a million claims takes a while to open
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the gateway did not become ready")


async def single_posts(
    http: aiohttp.ClientSession, url: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float], dict[int, int]]:
    """POST every body from ``clients`` concurrent clients; (seconds, latencies, answers by status)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo = iter(bodies)

    async def client() -> None:
        for body in todo:
            t = time.perf_counter()
            async with http.post(url + "/v1/claims", data=body, headers=JSON) as r:
                answer = await r.read()
            latencies.append(time.perf_counter() - t)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != 201:
                print(f"single POST answered {r.status}: {answer[:300]!r}", file=sys.stderr)
            elif orjson.loads(answer)["status"] != "recorded":
                raise SystemExit(f"a 201 that is not recorded: {answer[:300]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, latencies, statuses


async def list_reads(http: aiohttp.ClientSession, url: str, n: int, clients: int) -> tuple[float, list[float]]:
    """GET a page of 50 of the provider's claims ``n`` times from ``clients`` concurrent clients; (seconds,
    latencies). Every answer must be a page of claims."""
    latencies: list[float] = []
    todo = iter(range(n))

    async def client() -> None:
        for _ in todo:
            t = time.perf_counter()
            async with http.get(url + "/v1/claims?limit=50") as r:
                answer = await r.read()
            latencies.append(time.perf_counter() - t)
            if r.status != 200 or not orjson.loads(answer)["items"]:
                raise SystemExit(f"a listing answered {r.status}: {answer[:300]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, latencies


async def stage_totals(http: aiohttp.ClientSession, url: str) -> dict[str, tuple[float, int]]:
    """The gateway's time in each submission stage so far (from /metrics): stage -> (seconds, submissions)."""
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    totals = {}
    for stage in STAGES:
        found = [
            re.search(rf'claimledger_submission_stage_seconds_{part}{{stage="{stage}"}} (\S+)', text)
            for part in ("sum", "count")
        ]
        if found[0] is None or found[1] is None:
            raise SystemExit(f"/metrics has no submission stage {stage!r}")
        totals[stage] = (float(found[0].group(1)), int(found[1].group(1)))
    return totals


def stage_means(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]) -> str:
    """Mean milliseconds a submission spent in each stage between two readings."""
    means = []
    for stage in STAGES:
        seconds, n = after[stage][0] - before[stage][0], after[stage][1] - before[stage][1]
        means.append(f"{stage} {seconds / n * 1000:.1f}" if n else f"{stage} -")
    return " / ".join(means)


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def post_batches(
    http: aiohttp.ClientSession,
    url: str,
    batches: Iterable[bytes],
    clients: int,
    progress: int = 0,
    retry_unavailable: bool = False,
) -> tuple[int, list[str]]:
    """POST every batch from ``clients`` concurrent clients, each one batch after the other; (claims
    recorded, each batch's last ref). With ``progress``, prints the rate of every ``progress`` claims.
    With ``retry_unavailable``, a batch answered 503 is sent again with the same Idempotency-Key after
    its Retry-After (as a provider system would); otherwise a 503 ends the run."""
    recorded = 0
    lasts: list[str] = []
    todo = iter(enumerate(batches))
    mark = [time.perf_counter(), 0]
    run = secrets.token_hex(4)

    async def batch_client() -> None:
        nonlocal recorded
        for n, body in todo:
            headers = {**JSON, "Idempotency-Key": f"bench-{run}-{n}"} if retry_unavailable else JSON
            while True:
                async with http.post(url + "/v1/claims/batch", data=body, headers=headers) as r:
                    answer = await r.read()
                if r.status == 503 and retry_unavailable:
                    print(f"  batch {n} answered 503, sent again in {r.headers.get('Retry-After')} s", flush=True)
                    await asyncio.sleep(float(r.headers.get("Retry-After", "2")))
                    continue
                if r.status not in (200, 207):
                    raise SystemExit(f"batch POST answered {r.status}: {answer[:300]!r}")
                break
            results = orjson.loads(answer)["results"]
            recorded += sum(1 for c in results if c["status"] == "recorded")
            lasts.append(results[-1]["ref"])
            if progress and recorded - mark[1] >= progress:
                now = time.perf_counter()
                print(
                    f"  {recorded:>10,} claims added, the last {recorded - mark[1]:,} at "
                    f"{(recorded - mark[1]) / (now - mark[0]):,.0f} claims/s",
                    flush=True,
                )
                mark[:] = [now, recorded]

    await asyncio.gather(*(batch_client() for _ in range(clients)))
    return recorded, lasts


async def wait_indexed(http: aiohttp.ClientSession, url: str, refs: list[str]) -> None:
    """Until every ref reads back from the index (200)."""
    for ref in refs:
        while True:
            async with http.get(f"{url}/v1/claims/{ref}") as r:
                await r.read()
                if r.status == 200:
                    break
            await asyncio.sleep(0.01)


async def run(args: argparse.Namespace, url: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=600)
    salt = secrets.token_hex(3).upper()  # this run's: a kept data folder already holds earlier runs' claims
    if args.prefill:
        async with aiohttp.ClientSession(headers=auth, timeout=timeout) as http:
            await wait_ready(http, url)
            print(f"prefill: {args.prefill:,} claims from {args.prefill_clients} clients", flush=True)
            fill = (
                orjson.dumps({"claims": [claim(i, f"{salt}P{b}") for i in range(1000)]})
                for b in range(args.prefill // 1000)
            )
            t0 = time.perf_counter()
            added, lasts = await post_batches(
                http, url, fill, args.prefill_clients, progress=100_000, retry_unavailable=True
            )
            await wait_indexed(http, url, lasts[-args.prefill_clients :])
            print(f"prefill: {added:,} claims in {time.perf_counter() - t0:,.0f} s", flush=True)
    warm = [orjson.dumps(claim(i, f"{salt}W")) for i in range(args.warmup)]
    bodies = [orjson.dumps(claim(i, f"{salt}S")) for i in range(args.single)]
    batches = [orjson.dumps({"claims": [claim(i, f"{salt}B{b}") for i in range(1000)]}) for b in range(args.batches)]
    connector = aiohttp.TCPConnector(limit=args.clients, limit_per_host=args.clients)
    async with aiohttp.ClientSession(headers=auth, connector=connector, timeout=timeout) as http:
        await wait_ready(http, url)
        if warm:
            await single_posts(http, url, warm, args.clients)
        before_single = await stage_totals(http, url)
        seconds, latencies, statuses = await single_posts(http, url, bodies, args.clients)
        after_single = await stage_totals(http, url)

    async with aiohttp.ClientSession(headers=auth, timeout=timeout) as http:
        t0 = time.perf_counter()
        batch_claims, lasts = await post_batches(http, url, batches, args.batch_clients)
        answered_rate = batch_claims / (time.perf_counter() - t0)
        await wait_indexed(http, url, lasts)  # end to end: until every batch is in the index
        batch_rate = batch_claims / (time.perf_counter() - t0)
        after_batches = await stage_totals(http, url)

    read_seconds, read_latencies = 0.0, []
    if args.reads:
        connector = aiohttp.TCPConnector(limit=args.clients, limit_per_host=args.clients)
        async with aiohttp.ClientSession(headers=auth, connector=connector, timeout=timeout) as http:
            read_seconds, read_latencies = await list_reads(http, url, args.reads, args.clients)

    print(f"{'what':58} {'figure':>10}")
    if args.single:
        p50, p99 = p50_p99(latencies)
        print(f"{f'single-claim POSTs, {args.clients} clients (claims/s)':58} {args.single / seconds:10,.0f}")
        print(f"{'  latency p50 / p99 (ms)':58} {p50:5.0f} / {p99:.0f}")
        print(f"{'  answers':58} {statuses}")
        print(f"  stages, mean ms a POST: {stage_means(before_single, after_single)}")
    label = f"batch POSTs of 1,000 from {args.batch_clients} client(s), recorded and indexed (claims/s)"
    print(f"{label:58} {batch_rate:10,.0f}")
    print(f"{'  answered (recorded, before the last were indexed)':58} {answered_rate:10,.0f}")
    if args.batches:
        print(f"  stages, mean ms a batch: {stage_means(after_single, after_batches)}")
    if args.reads:
        p50, p99 = p50_p99(read_latencies)
        label = f"claim listings, pages of 50, {args.clients} clients (requests/s)"
        print(f"{label:58} {args.reads / read_seconds:10,.0f}")
        print(f"{'  latency p50 / p99 (ms)':58} {p50:5.0f} / {p99:.0f}")
    if statuses.get(201, 0) != args.single or batch_claims != 1000 * args.batches:
        raise SystemExit("not every claim was recorded")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch-clients", type=int, default=1, help="batch POSTs sent concurrently")
    ap.add_argument("--data-dir", type=Path, help="a data folder to use and keep (default: a fresh one, removed)")
    ap.add_argument("--prefill", type=int, default=0, help="claims to add first, in batches of 1,000")
    ap.add_argument("--prefill-clients", type=int, default=32)
    ap.add_argument("--reads", type=int, default=0, help="then GET this many pages of 50 claims (/v1/claims)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, keys = start_gateway(args.data_dir or Path(tmp) / "data", port)
        try:
            try:
                import uvloop

                uvloop.run(run(args, f"http://127.0.0.1:{port}", keys["PROV-A"]))
            except ImportError:
                asyncio.run(run(args, f"http://127.0.0.1:{port}", keys["PROV-A"]))
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
