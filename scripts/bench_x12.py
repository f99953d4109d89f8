"""Parse rate of the 837P reader: claims/s of ``read_837`` on a generated 10,000-claim file.

Run: .venv/bin/python scripts/bench_x12.py [--claims 10000] [--repeat 5]

The file is written once in memory by ``write_837p`` (distinct clean claims of 1 to 3 lines,
one transaction set; every fifth claim for a dependent, so both patient loops are read); only
``read_837`` is timed: bytes to mapped claims, envelope checks included, nothing submitted.
Prints each run and the best and median rates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.formats.x837 import read_837
from ledger.formats.x837_write import write_837p

CODES = ("99213", "85025", "80053", "36415", "G0008", "93000")
DIAGNOSES = (["E119", "I10"], ["J069"], ["M5450", "R079"], ["Z0000"])


def claim(number: int) -> dict[str, Any]:
    lines = [
        {
            "service_date_from": f"2025-06-{1 + number % 28:02d}",
            "procedure_code": CODES[(number + k) % len(CODES)],
            "modifiers": ["25"] if k == 0 and number % 7 == 0 else [],
            "units": 1 + k,
            "charge_cents": 9000 + 250 * k + number % 100,
            "diagnosis_pointers": [1],
        }
        for k in range(1 + number % 3)
    ]
    return {
        "claim_id": f"BENCH-{number:08d}",
        "billing_npi": "1234567893",
        "rendering_npi": "1245319599",
        "payer_id": "PAYER-ACME",
        "responsibility": "P",
        "member_id": f"M{number:09d}",
        "patient_birth_date": "1970-05-17",
        "place_of_service": "11",
        "diagnoses": DIAGNOSES[number % len(DIAGNOSES)],
        "service_lines": lines,
        "total_charge_cents": sum(line["charge_cents"] for line in lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    claims = [claim(number) for number in range(args.claims)]
    started = time.perf_counter()
    data = write_837p(
        claims,
        sender="PROV-A",
        receiver="PAYER-ACME",
        created=datetime(2025, 7, 1, 9, 30),
        dependents=set(range(0, args.claims, 5)),
    )
    written = time.perf_counter() - started
    lines = sum(len(c["service_lines"]) for c in claims)
    print(f"837P: {args.claims:,} claims, {lines:,} lines, {len(data) / 1e6:.1f} MB (written in {written:.2f} s)")

    rates = []
    for run in range(1, args.repeat + 1):
        started = time.perf_counter()
        result = read_837(data)
        elapsed = time.perf_counter() - started
        if len(result.claims) != args.claims or result.rejected or any(c.data is None for c in result.claims):
            raise SystemExit("the reader did not map every claim: the benchmark file is wrong")
        rates.append(args.claims / elapsed)
        print(f"  run {run}: {elapsed:.3f} s  {rates[-1]:,.0f} claims/s  {len(data) / elapsed / 1e6:.1f} MB/s")
    print(f"read_837: best {max(rates):,.0f} claims/s, median {statistics.median(rates):,.0f} claims/s")


if __name__ == "__main__":
    main()
