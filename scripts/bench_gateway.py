"""Throughput of the gateway over HTTP on loopback (prints a table). Bounded: it sends a fixed
number of requests and stops.

Run: .venv/bin/python scripts/bench_gateway.py [--single N] [--clients 64] [--batches 5]

Starts `claimledger serve` (embedded node, SQLite) in a fresh data folder, reads the demo keys it
prints, then measures single-claim POSTs from --clients concurrent clients (claims/s, p50, p99
latency) and batch POSTs of 1,000 claims end to end (recorded and indexed).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.node import free_port  # noqa: E402


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
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep draining
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, keys
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, keys = start_gateway(Path(tmp) / "data", port)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {keys['PROV-A']}"}
        try:
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            counter = iter(range(args.single))

            def client() -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                    for i in counter:
                        t = time.perf_counter()
                        r = http.post("/v1/claims", json=claim(i, "S"))
                        dt = time.perf_counter() - t
                        with lock:
                            latencies.append(dt)
                            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            single_rate = args.single / (time.perf_counter() - t0)
            latencies.sort()
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000

            batch_claims = 0
            t0 = time.perf_counter()
            with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
                for b in range(args.batches):
                    docs = [claim(i, f"B{b}") for i in range(1000)]
                    r = http.post("/v1/claims/batch", json={"claims": docs})
                    if r.status_code not in (200, 207):
                        raise SystemExit(f"batch POST answered {r.status_code}: {r.text[:300]}")
                    batch_claims += sum(1 for c in r.json()["results"] if c["status"] == "recorded")
                # end to end: until the last batch is in the index (a read of its last claim)
                last = r.json()["results"][-1]["ref"]
                while http.get(f"/v1/claims/{last}").status_code != 200:
                    time.sleep(0.01)
            batch_rate = batch_claims / (time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"{'what':58} {'figure':>10}")
    print(f"{f'single-claim POSTs, {args.clients} clients (claims/s)':58} {single_rate:10,.0f}")
    print(f"{'  latency p50 / p99 (ms)':58} {p50:5.0f} / {p99:.0f}")
    print(f"{'  answers':58} {statuses}")
    print(f"{'batch POSTs of 1,000, recorded and indexed (claims/s)':58} {batch_rate:10,.0f}")


if __name__ == "__main__":
    main()
