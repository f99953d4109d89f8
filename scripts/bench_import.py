"""Import rate of a 10,000-claim X12 837P, parse alone and end to end through the gateway (prints a table).

Run: .venv/bin/python scripts/bench_import.py [--claims 10000] [--remittances 1000]

Bounded, loopback only. Writes the 837P in memory (the claims of scripts/bench_x12.py), times
``read_837`` on it, then starts ``claimledger serve`` in a fresh data folder (embedded node,
SQLite) and times ``POST /v1/imports/837`` of the whole file: every claim validated,
fingerprinted, recorded on chain and answered. Then an 835 paying the first --remittances
claims is posted through ``POST /v1/imports/835`` (three payer steps per claim: acknowledge,
adjudicate, pay) and timed, and a FHIR Bundle of 1,000 claims is read.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_gateway import start_gateway  # noqa: E402
from bench_x12 import claim  # noqa: E402

from ledger.formats.fhir import read_fhir_claim, write_fhir_bundle  # noqa: E402
from ledger.formats.x837 import read_837  # noqa: E402
from ledger.formats.x837_write import write_835, write_837p  # noqa: E402
from ledger.node import free_port  # noqa: E402


def wait_ready(http: httpx.Client, timeout_s: float = 120.0) -> None:
    """The demo keys are printed before the server listens: wait (bounded) until it answers /readyz."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--remittances", type=int, default=1000)
    args = parser.parse_args()
    claims = [claim(n) for n in range(args.claims)]
    data = write_837p(claims, sender="BENCHPROV", receiver="PAYERACME")
    rows: list[tuple[str, str]] = []

    t = time.perf_counter()
    parsed = read_837(data, file="bench.837")
    parse_s = time.perf_counter() - t
    assert len(parsed.claims) == args.claims and all(c.data for c in parsed.claims)
    rows.append(
        (f"837P parse alone ({args.claims:,} claims, {len(data) / 1e6:.1f} MB)", f"{args.claims / parse_s:,.0f}")
    )

    bundle = write_fhir_bundle(claims[:1000])
    t = time.perf_counter()
    read = read_fhir_claim(bundle)
    fhir_s = time.perf_counter() - t
    assert len(read) == 1000 and all(c.data for c in read)
    rows.append(("FHIR Bundle parse alone (1,000 Claims, R4B models)", f"{1000 / fhir_s:,.0f}"))

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, keys = start_gateway(Path(tmp) / "data", port)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=900) as http:
                wait_ready(http)
                headers = {"Authorization": f"Bearer {keys['PROV-A']}", "Content-Type": "application/edi-x12"}
                t = time.perf_counter()
                r = http.post("/v1/imports/837", content=data, headers=headers)
                e2e_s = time.perf_counter() - t
                assert r.status_code == 200, r.text[:500]
                summary = r.json()["summary"]
                assert summary.get("recorded") == args.claims, summary
                rows.append(
                    (f"837P end to end: POST /v1/imports/837, {args.claims:,} recorded", f"{args.claims / e2e_s:,.0f}")
                )

                n = min(args.remittances, args.claims)
                payments = [
                    (c["claim_id"], "1", c["total_charge_cents"], c["total_charge_cents"], 0, []) for c in claims[:n]
                ]
                era = write_835(
                    payments,
                    payer_id="PAYER-ACME",
                    payee_npi="1234567893",
                    trace_number="BENCH-EFT-1",
                    payment_date=date(2025, 7, 1),
                )
                headers = {"Authorization": f"Bearer {keys['PAYER-ACME']}", "Content-Type": "application/edi-x12"}
                t = time.perf_counter()
                r = http.post("/v1/imports/835", content=era, headers=headers)
                era_s = time.perf_counter() - t
                assert r.status_code == 200, r.text[:500]
                assert r.json()["summary"]["posted"] == n, r.json()["summary"]
                rows.append(
                    (
                        f"835 end to end: POST /v1/imports/835, {n:,} claims paid (3 payer steps each)",
                        f"{n / era_s:,.0f}",
                    )
                )
        finally:
            proc.terminate()
            proc.wait(60)

    width = max(len(label) for label, _ in rows)
    print(f"{'import':<{width}}  claims/s")
    for label, value in rows:
        print(f"{label:<{width}}  {value:>8}")


if __name__ == "__main__":
    main()
