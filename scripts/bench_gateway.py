"""Throughput of the gateway over HTTP on loopback (prints a table). Bounded: it sends a fixed
number of requests and stops.

Run: .venv/bin/python scripts/bench_gateway.py [--single N] [--clients 64] [--batches 5] [--warmup 200]

Starts `claimledger serve` (embedded node, SQLite) in a fresh data folder, reads the demo keys it
prints, then measures single-claim POSTs from --clients concurrent clients (claims/s, p50, p99
latency) and batch POSTs of 1,000 claims end to end (recorded and indexed).

The load comes from one asyncio process (aiohttp on uvloop): --clients connections, each sending
its next claim as soon as its last one is answered, every claim distinct, every answer checked to
be 201 (single) or every claim of a batch to be recorded. Request bodies are encoded before the
clock starts. --warmup claims are sent first, not counted (the first one starts the provider's
pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def start_gateway(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
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
    keys: dict[str, str] = {}
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.match(r"\s+(\S+)\s+(clk_\S+)", line)
        if m:
            keys[m.group(1)] = m.group(2)
        if line.startswith("Use one as"):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not print its demo keys in time")
    threading.Thread(target=lambda: [print(line, end="") for line in proc.stdout], daemon=True).start()  # drain
    return proc, keys


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 120
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


async def run(args: argparse.Namespace, url: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=300)
    warm = [orjson.dumps(claim(i, "W")) for i in range(args.warmup)]
    bodies = [orjson.dumps(claim(i, "S")) for i in range(args.single)]
    batches = [orjson.dumps({"claims": [claim(i, f"B{b}") for i in range(1000)]}) for b in range(args.batches)]
    connector = aiohttp.TCPConnector(limit=args.clients, limit_per_host=args.clients)
    async with aiohttp.ClientSession(headers=auth, connector=connector, timeout=timeout) as http:
        await wait_ready(http, url)
        if warm:
            await single_posts(http, url, warm, args.clients)
        seconds, latencies, statuses = await single_posts(http, url, bodies, args.clients)
    single_rate = args.single / seconds
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000

    # --batch-clients clients, each one batch after the other on a connection of its own.
    batch_claims = 0
    lasts: list[str] = []
    todo = iter(batches)
    async with aiohttp.ClientSession(headers=auth, timeout=timeout) as http:

        async def batch_client() -> None:
            nonlocal batch_claims
            for body in todo:
                async with http.post(url + "/v1/claims/batch", data=body, headers=JSON) as r:
                    answer = await r.read()
                    if r.status not in (200, 207):
                        raise SystemExit(f"batch POST answered {r.status}: {answer[:300]!r}")
                results = orjson.loads(answer)["results"]
                batch_claims += sum(1 for c in results if c["status"] == "recorded")
                lasts.append(results[-1]["ref"])

        t0 = time.perf_counter()
        await asyncio.gather(*(batch_client() for _ in range(args.batch_clients)))
        # end to end: until every batch is in the index (a read of each batch's last claim)
        for last in lasts:
            while True:
                async with http.get(f"{url}/v1/claims/{last}") as r:
                    await r.read()
                    if r.status == 200:
                        break
                await asyncio.sleep(0.01)
        batch_rate = batch_claims / (time.perf_counter() - t0)

    print(f"{'what':58} {'figure':>10}")
    print(f"{f'single-claim POSTs, {args.clients} clients (claims/s)':58} {single_rate:10,.0f}")
    print(f"{'  latency p50 / p99 (ms)':58} {p50:5.0f} / {p99:.0f}")
    print(f"{'  answers':58} {statuses}")
    label = f"batch POSTs of 1,000 from {args.batch_clients} client(s), recorded and indexed (claims/s)"
    print(f"{label:58} {batch_rate:10,.0f}")
    if statuses.get(201, 0) != args.single or batch_claims != 1000 * args.batches:
        raise SystemExit("not every claim was recorded")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch-clients", type=int, default=1, help="batch POSTs sent concurrently")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, keys = start_gateway(Path(tmp) / "data", port)
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
