"""Writes the FHIR samples: example claims for the demo consortium, and bad inputs for the tests.

Run: .venv/bin/python scripts/make_fhir_samples.py

    examples/fhir/claim.json                  one R4 Claim to PAYER-ACME (clean, as the ledger reads it)
    examples/fhir/bundle.json                 a collection Bundle of three Claims (PAYER-ACME, PAYER-BETA)
    tests/samples/fhir/not_json.json          text that is not JSON                      -> json_invalid
    tests/samples/fhir/patient.json           a Patient, not a Claim                     -> fhir_unsupported
    tests/samples/fhir/claim_missing_patient.json   a Claim without ``patient``          -> fhir_invalid
    tests/samples/fhir/claim_charge_12_345.json     an item charge of 12.345 dollars     -> money_precision

Everything is made up (no PHI): the NPIs only carry a valid check digit, the member ids are
invented, the patient has no name. Dates are fixed, so the files only change when the mapping
does. The script reads every example back and stops if one is not a clean claim.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.claim import parse_claim  # noqa: E402
from ledger.formats.fhir import read_fhir_claim, write_fhir_bundle, write_fhir_claim  # noqa: E402
from ledger.validation import find_problems  # noqa: E402

EXAMPLES = ROOT / "examples" / "fhir"
SAMPLES = ROOT / "tests" / "samples" / "fhir"
CREATED = date(2025, 6, 30)
TODAY = date(2025, 6, 30)
BILLING_NPI = "1234567893"
RENDERING_NPI = "1245319599"


def _line(code: str, cents: int, *, pointers: list[int], **extra: Any) -> dict[str, Any]:
    line = {
        "service_date_from": "2025-06-02",
        "procedure_code": code,
        "modifiers": [],
        "units": 1,
        "charge_cents": cents,
        "diagnosis_pointers": pointers,
    }
    line.update(extra)
    return line


def _claim(claim_id: str, lines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "claim_id": claim_id,
        "frequency": "1",
        "billing_npi": BILLING_NPI,
        "rendering_npi": RENDERING_NPI,
        "payer_id": "PAYER-ACME",
        "responsibility": "P",
        "member_id": "MBR100200300",
        "patient_birth_date": "1980-04-12",
        "place_of_service": "11",
        "diagnoses": ["E119", "I10"],
        "service_lines": lines,
        "total_charge_cents": sum(line["charge_cents"] for line in lines),
    }
    claim.update(extra)
    return claim


CLAIM = _claim("PCN-2025-0001", [_line("99213", 12500, pointers=[1, 2])])
BUNDLE = [
    CLAIM,
    _claim(
        "PCN-2025-0002",
        [
            _line("99214", 18500, pointers=[1]),
            _line("85025", 2400, pointers=[1]),
            _line("36415", 1000, pointers=[1], modifiers=["90"]),
        ],
        member_id="MBR200300400",
        patient_birth_date="1975-11-03",
        diagnoses=["E119"],
    ),
    _claim(
        "PCN-2025-0003",
        [
            _line("97110", 9000, pointers=[1], units=3, service_date_to="2025-06-06", modifiers=["GP"]),
            _line("G0283", 3000, pointers=[1], place_of_service="22"),
        ],
        payer_id="PAYER-BETA",
        responsibility="S",
        member_id="BETA55501",
        patient_birth_date="1962-02-28",
        diagnoses=["M5450"],
        rendering_npi=None,
    ),
]


def _write(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


def _check_clean(path: Path) -> None:
    for item in read_fhir_claim(path.read_bytes(), file=path.name):
        if item.data is None:
            raise SystemExit(f"{path}: {item.source.describe()} does not map: {[p.to_dict() for p in item.problems]}")
        problems = find_problems(parse_claim(item.data), today=TODAY)
        if problems:
            raise SystemExit(f"{path}: claim {item.claim_id} is not clean: {[p.to_dict() for p in problems]}")


def main() -> None:
    claim = write_fhir_claim(CLAIM, created=CREATED)
    _write(EXAMPLES / "claim.json", claim)
    _write(EXAMPLES / "bundle.json", write_fhir_bundle(BUNDLE, created=CREATED))
    for example in ("claim.json", "bundle.json"):
        _check_clean(EXAMPLES / example)

    _write(SAMPLES / "not_json.json", '{"resourceType": "Claim", "status": "active",\n')
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-04-12"}
    _write(SAMPLES / "patient.json", patient)
    missing_patient = copy.deepcopy(claim)
    del missing_patient["patient"]
    _write(SAMPLES / "claim_missing_patient.json", missing_patient)
    precise = copy.deepcopy(claim)
    precise["item"][0]["net"]["value"] = 12.345  # JSON text 12.345: a tenth of a cent more than cents can say
    _write(SAMPLES / "claim_charge_12_345.json", precise)


if __name__ == "__main__":
    main()
