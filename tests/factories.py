"""Synthetic clean claims for tests: ``make_claim()`` is valid as it stands; override what a test is about.

No PHI: every member id, NPI and claim id here is made up (the NPIs only carry a valid check digit).
Dates are fixed so that tests do not depend on the day they run: pass ``today=TODAY`` to validation.

    make_claim()                                  one line, primary, original
    make_claim(lines=3)                           three different procedures on the same day
    make_claim(responsibility="S", member_id="M2")
    make_claim_data(service_lines=[make_line_data(units=2)])   raw input, total computed
    many_claims(1000)                             distinct claims (members and claim ids differ)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

from ledger.claim import Claim, parse_claim
from ledger.validation import npi_check_digit

TODAY = date(2025, 6, 30)
SERVICE_DATE = "2025-06-02"
BIRTH_DATE = "1980-04-12"
BILLING_NPI = "1234567893"
RENDERING_NPI = "1245319599"
PAYER_ID = "PAYER-ACME"
OTHER_PAYER_ID = "PAYER-BETA"
MEMBER_ID = "MBR100200300"

# Billable ICD-10-CM codes (2026 set): type 2 diabetes, hypertension, URI, low back pain, checkup, chest pain.
DIAGNOSES = ("E119", "I10", "J069", "M5450", "Z0000", "R079")
# CPT by form only (five digits; Category II/III), HCPCS Level II (a letter and four digits).
PROCEDURE_CODES = ("99213", "85025", "80053", "36415", "G0008", "J1100", "0001F", "0002T", "93000", "81002")
LINE_CHARGE_CENTS = 12500


def valid_npi(number: int) -> str:
    """A made-up NPI with a correct check digit, distinct for each ``number`` below 10**8."""
    base = f"1{number:08d}"
    return base + npi_check_digit(base)


def make_line_data(**overrides: Any) -> dict[str, Any]:
    """A raw service line: one unit of 99213 on SERVICE_DATE for $125.00, pointing at diagnosis 1.

    ``service_date_to`` is ``service_date_from`` unless given.
    """
    line: dict[str, Any] = {
        "service_date_from": SERVICE_DATE,
        "procedure_code": "99213",
        "modifiers": [],
        "units": 1,
        "charge_cents": LINE_CHARGE_CENTS,
        "diagnosis_pointers": [1],
    }
    line.update(overrides)
    line.setdefault("service_date_to", line.get("service_date_from"))
    return line


def make_lines_data(count: int) -> list[dict[str, Any]]:
    """``count`` raw lines, each a different procedure on SERVICE_DATE (no split lines), up to 10."""
    if not 1 <= count <= len(PROCEDURE_CODES):
        raise ValueError(f"make_lines_data makes 1 to {len(PROCEDURE_CODES)} lines, not {count}")
    return [
        make_line_data(procedure_code=code, charge_cents=LINE_CHARGE_CENTS + 100 * index)
        for index, code in enumerate(PROCEDURE_CODES[:count])
    ]


def make_claim_data(*, lines: int | Sequence[Mapping[str, Any]] = 1, **overrides: Any) -> dict[str, Any]:
    """A raw clean claim; ``total_charge_cents`` is the sum of the lines unless given."""
    if "service_lines" in overrides:
        lines = overrides.pop("service_lines")
    # Anything that is not a mapping is passed through as given: tests of malformed input use it.
    service_lines: list[Any] = (
        make_lines_data(lines)
        if isinstance(lines, int)
        else [dict(line) if isinstance(line, Mapping) else line for line in lines]
    )
    claim: dict[str, Any] = {
        "claim_id": "CLM-0001",
        "frequency": "1",
        "original_claim_id": None,
        "billing_npi": BILLING_NPI,
        "rendering_npi": RENDERING_NPI,
        "payer_id": PAYER_ID,
        "responsibility": "P",
        "member_id": MEMBER_ID,
        "patient_birth_date": BIRTH_DATE,
        "place_of_service": "11",
        "diagnoses": list(DIAGNOSES[:2]),
        "service_lines": service_lines,
    }
    claim.update(overrides)
    if "total_charge_cents" not in claim:
        charges = [line.get("charge_cents") if isinstance(line, Mapping) else None for line in service_lines]
        if all(isinstance(c, int) for c in charges):
            claim["total_charge_cents"] = sum(c for c in charges if isinstance(c, int))
    return claim


def make_claim(*, lines: int | Sequence[Mapping[str, Any]] = 1, **overrides: Any) -> Claim:
    """A :class:`Claim` built from :func:`make_claim_data` (raises ClaimValidationError if it cannot parse)."""
    return parse_claim(make_claim_data(lines=lines, **overrides))


def many_claims(count: int, *, lines: int = 1, start: int = 0) -> Iterator[Claim]:
    """``count`` distinct clean claims: each its own member and claim id, so none duplicates another."""
    for number in range(start, start + count):
        yield make_claim(lines=lines, claim_id=f"CLM-{number:08d}", member_id=f"MBR{number:09d}")
