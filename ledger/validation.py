"""Clean-claim rules: every reason a claim must be refused before anything is written.

:func:`find_problems` lists them all (an empty list is a clean claim); :func:`ensure_clean`
raises :class:`~ledger.errors.ClaimValidationError` with the whole list. Each
:class:`~ledger.errors.FieldProblem` names the field path, the offending value, a stable rule
id from :data:`RULES` and a message a billing clerk can act on.

Field paths and "line N" in messages refer to service lines in the order they were submitted
(``Claim.submitted_order``), not the canonical order the model keeps; "line N" counts from 1,
paths from 0 (``service_lines[0]`` is line 1). Diagnoses and pointers keep their order, so
their indices are as submitted too; modifier indices are in sorted order (the normal form),
and the problem's value names the modifier.

A clean claim costs comparisons, precompiled ``fullmatch`` calls and set lookups (the
ICD-10-CM set is a frozenset, NPI results are cached); messages and paths are only formatted
for a problem.

``today`` is a parameter so that tests and replays are deterministic; it defaults to the
local date, as dates of service are the provider's local dates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import Any

from ledger.claim import Claim, Frequency, ServiceLine, parse_claim
from ledger.codesets import display_icd10cm, icd10cm
from ledger.errors import ClaimValidationError, FieldProblem

MAX_CLAIM_ID_LENGTH = 38  # CLM01
MAX_MEMBER_ID_LENGTH = 80  # NM109
MAX_DIAGNOSES = 12
MAX_SERVICE_LINES = 50
MAX_MODIFIERS = 4
MAX_DIAGNOSIS_POINTERS = 12

RULES: Mapping[str, str] = {
    "claim_id_length": "the claim id (CLM01) is 1 to 38 characters",
    "original_claim_id_required": "a replacement (7) or void (8) names the claim it replaces or voids",
    "original_claim_id_not_allowed": "an original claim (1) names no original claim",
    "npi_format": "an NPI is 10 digits starting with 1 or 2",
    "npi_check_digit": "the NPI's last digit is its Luhn check digit (with the prefix 80840)",
    "payer_id_missing": "the payer is named",
    "member_id_format": "the member id is 1 to 80 letters and digits",
    "birth_date_in_future": "the patient's birth date is not in the future",
    "place_of_service_format": "a place of service is a two-digit code",
    "diagnoses_missing": "the claim lists at least one diagnosis",
    "too_many_diagnoses": "the claim lists at most 12 diagnoses",
    "icd10_format": "a diagnosis is a letter and 2 to 6 letters or digits",
    "icd10_unknown": "a diagnosis is in the current ICD-10-CM code set",
    "icd10_not_billable": "a diagnosis is a billable (most specific) code, not a category",
    "duplicate_diagnosis": "a diagnosis is listed once",
    "service_lines_missing": "the claim has at least one service line",
    "too_many_service_lines": "the claim has at most 50 service lines",
    "total_mismatch": "the total charge equals the sum of the line charges",
    "procedure_code_format": "a procedure code is CPT (5 digits, or 4 digits and F or T) or HCPCS (A-V, 4 digits)",
    "modifier_format": "a modifier is two letters or digits",
    "too_many_modifiers": "a line has at most 4 modifiers",
    "duplicate_modifier": "a modifier is given once on a line",
    "units_not_positive": "units are at least 1",
    "charge_not_positive": "a line charge is more than zero",
    "service_dates_reversed": "a service does not end before it starts",
    "service_date_in_future": "a date of service is not in the future",
    "service_date_before_birth": "a date of service is not before the patient's birth",
    "diagnosis_pointers_missing": "a line points at one diagnosis at least",
    "too_many_diagnosis_pointers": "a line points at 12 diagnoses at most",
    "diagnosis_pointer_invalid": "a diagnosis pointer points at a listed diagnosis",
    "duplicate_diagnosis_pointer": "a line points at a diagnosis once",
    "split_line": "the same procedure on the same date with the same modifiers is billed once, with units",
}
"""Every clean-claim rule id and what it asks; structural rule ids are ``ledger.claim.PARSE_RULES``."""

# Compiled once; every check on a clean value is a fullmatch or a set lookup.
_NPI = re.compile(r"[12][0-9]{9}")
_PROCEDURE_CODE = re.compile(r"[0-9]{4}[0-9FT]|[A-V][0-9]{4}")
_MODIFIER = re.compile(r"[0-9A-Z]{2}")
_PLACE_OF_SERVICE = re.compile(r"[0-9]{2}")
_ICD10CM_FORM = re.compile(r"[A-Z][0-9A-Z]{2,6}")  # not letter-digit: the 2026 set has QA0...
_MEMBER_ID = re.compile(rf"[0-9A-Z]{{1,{MAX_MEMBER_ID_LENGTH}}}")
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_NPI_PREFIX_SUM = 24  # Luhn sum of the prefix 80840 (ISO 7812 issuer for US health) ahead of an NPI


class _Problems(list[FieldProblem]):
    def add(self, field: str, value: Any, rule: str, message: str, **extra: Any) -> None:
        self.append(FieldProblem(field, value, rule, message, extra))


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


@lru_cache(maxsize=8192)
def npi_problem(npi: str) -> str | None:
    """``None`` for a valid NPI, else the rule it breaks (``npi_format`` or ``npi_check_digit``)."""
    if not (len(npi) == 10 and _NPI.fullmatch(npi)):
        return "npi_format"
    # Luhn over "80840" + NPI: from the right the check digit is kept, and every second digit doubled.
    total = _NPI_PREFIX_SUM + sum(int(d) for d in npi[-1::-2]) + sum(_DOUBLED[int(d)] for d in npi[-2::-2])
    return None if total % 10 == 0 else "npi_check_digit"


def npi_check_digit(first_nine: str) -> str:
    """The check digit that completes a 9-digit NPI base (for test data and tools)."""
    for digit in "0123456789":
        if npi_problem(first_nine + digit) is None:
            return digit
    raise ValueError(f"{first_nine!r} is not the start of an NPI: 9 digits, the first 1 or 2")


def _check_npi(field: str, label: str, npi: str, out: _Problems) -> None:
    rule = npi_problem(npi)
    if rule == "npi_format":
        out.add(field, npi, rule, f"{label} {npi!r} is not an NPI: it should be 10 digits starting with 1 or 2")
    elif rule == "npi_check_digit":
        out.add(field, npi, rule, f"{label} {npi} fails its check digit: check for a typo")


def _check_place(field: str, place: str, out: _Problems, prefix: str = "") -> None:
    if not _PLACE_OF_SERVICE.fullmatch(place):
        message = f"{prefix}place of service {place!r} should be a two-digit code, e.g. 11 for an office"
        out.add(field, place, "place_of_service_format", message)


def _check_claim_fields(claim: Claim, today: date, out: _Problems) -> None:
    if not 1 <= len(claim.claim_id) <= MAX_CLAIM_ID_LENGTH:
        message = f"the claim id (CLM01) must be 1 to {MAX_CLAIM_ID_LENGTH} characters, not {len(claim.claim_id)}"
        out.add("claim_id", claim.claim_id, "claim_id_length", message)
    if claim.frequency is Frequency.ORIGINAL:
        if claim.original_claim_id is not None:
            message = (
                "an original claim (frequency 1) names no original claim: "
                "use frequency 7 to replace a claim or 8 to void it"
            )
            out.add("original_claim_id", claim.original_claim_id, "original_claim_id_not_allowed", message)
    elif claim.original_claim_id is None:
        what, verb = ("replacement", "replaces") if claim.frequency is Frequency.REPLACEMENT else ("void", "voids")
        message = f"a {what} (frequency {claim.frequency.value}) must name the claim it {verb} in original_claim_id"
        out.add("original_claim_id", None, "original_claim_id_required", message)
    _check_npi("billing_npi", "billing provider NPI", claim.billing_npi, out)
    if claim.rendering_npi is not None:
        _check_npi("rendering_npi", "rendering provider NPI", claim.rendering_npi, out)
    if not claim.payer_id:
        out.add(
            "payer_id", claim.payer_id, "payer_id_missing", "the payer id is empty: name the payer the claim is for"
        )
    if not _MEMBER_ID.fullmatch(claim.member_id):
        message = (
            f"member id {claim.member_id!r} should be 1 to {MAX_MEMBER_ID_LENGTH} letters and digits, "
            "as on the member's card"
        )
        out.add("member_id", claim.member_id, "member_id_format", message)
    birth = claim.patient_birth_date
    if birth > today:
        message = f"the patient's birth date {birth} is in the future (today is {today}): check it"
        out.add("patient_birth_date", birth.isoformat(), "birth_date_in_future", message)
    _check_place("place_of_service", claim.place_of_service, out)


def _check_diagnoses(claim: Claim, out: _Problems) -> None:
    diagnoses = claim.diagnoses
    if not diagnoses:
        out.add("diagnoses", [], "diagnoses_missing", "the claim lists no diagnosis: add at least one ICD-10-CM code")
        return
    if len(diagnoses) > MAX_DIAGNOSES:
        message = f"the claim lists {len(diagnoses)} diagnoses: at most {MAX_DIAGNOSES} fit on one claim"
        out.add("diagnoses", list(diagnoses), "too_many_diagnoses", message)
    code_set = icd10cm()
    billable = code_set.billable
    seen: dict[str, int] = {}
    for index, code in enumerate(diagnoses):
        if code in seen:
            field, shown = f"diagnoses[{index}]", display_icd10cm(code)
            message = f"diagnosis {shown} is listed twice (also as number {seen[code] + 1}): list it once"
            out.add(field, code, "duplicate_diagnosis", message)
        else:
            seen[code] = index
        if code in billable:
            continue
        field, shown = f"diagnoses[{index}]", display_icd10cm(code)
        if not _ICD10CM_FORM.fullmatch(code):
            message = (
                f"diagnosis {code!r} is not an ICD-10-CM code: it should be a letter and 2 to 6 letters or digits, "
                "e.g. E11.9"
            )
            out.add(field, code, "icd10_format", message)
        elif code_set.exists(code):
            examples = ", ".join(display_icd10cm(c) for c in code_set.billable_under(code))
            message = (
                f"diagnosis {shown} is a category, not a billable code: "
                f"use a more specific code under it, e.g. {examples}"
            )
            out.add(field, code, "icd10_not_billable", message)
        else:
            message = f"diagnosis {shown} is not in the ICD-10-CM code set ({code_set.release}): check the code"
            out.add(field, code, "icd10_unknown", message)


def _line_field(position: int, name: str) -> str:
    return f"service_lines[{position}].{name}"


def _check_line(claim: Claim, line: ServiceLine, position: int, today: date, out: _Problems) -> None:
    # Paths and messages are only formatted for a problem: the clean path is comparisons and lookups.
    code = line.procedure_code
    if not (len(code) == 5 and _PROCEDURE_CODE.fullmatch(code)):
        message = (
            f"line {position + 1}: procedure code {code!r} is neither CPT (5 digits, or 4 digits and F or T) "
            "nor HCPCS Level II (a letter A to V and 4 digits)"
        )
        out.add(_line_field(position, "procedure_code"), code, "procedure_code_format", message)
    if line.modifiers:
        _check_modifiers(line.modifiers, position, out)
    if line.units <= 0:
        message = f"line {position + 1}: units must be 1 or more, not {line.units}"
        out.add(_line_field(position, "units"), line.units, "units_not_positive", message)
    if line.charge_cents <= 0:
        message = f"line {position + 1}: the charge must be more than $0.00, not {_money(line.charge_cents)}"
        out.add(_line_field(position, "charge_cents"), line.charge_cents, "charge_not_positive", message)
    start, end = line.service_date_from, line.service_date_to
    if start > end:
        message = f"line {position + 1}: the service ends ({end}) before it starts ({start}): check the dates"
        out.add(_line_field(position, "service_date_to"), end.isoformat(), "service_dates_reversed", message)
    if start > today or end > today:
        for name, day in (("service_date_from", start), ("service_date_to", end)):
            if day > today and not (name == "service_date_to" and day == start):
                message = (
                    f"line {position + 1}: date of service {day} is in the future (today is {today}): "
                    "bill it once it is done"
                )
                out.add(_line_field(position, name), day.isoformat(), "service_date_in_future", message)
    birth = claim.patient_birth_date
    if start < birth:
        message = (
            f"line {position + 1}: date of service {start} is before the patient's birth date {birth}: check both dates"
        )
        out.add(_line_field(position, "service_date_from"), start.isoformat(), "service_date_before_birth", message)
    if line.place_of_service is not None:
        field = _line_field(position, "place_of_service")
        _check_place(field, line.place_of_service, out, prefix=f"line {position + 1}: ")
    if claim.diagnoses:  # without diagnoses, diagnoses_missing says it all
        _check_pointers(line.diagnosis_pointers, len(claim.diagnoses), position, out)


def _check_modifiers(modifiers: tuple[str, ...], position: int, out: _Problems) -> None:
    if len(modifiers) > MAX_MODIFIERS:
        message = f"line {position + 1} has {len(modifiers)} modifiers: at most {MAX_MODIFIERS} fit on a line"
        out.add(_line_field(position, "modifiers"), list(modifiers), "too_many_modifiers", message)
    previous = None
    for index, modifier in enumerate(modifiers):
        if not (len(modifier) == 2 and _MODIFIER.fullmatch(modifier)):
            message = f"line {position + 1}: modifier {modifier!r} should be two letters or digits, e.g. 25 or RT"
            out.add(_line_field(position, f"modifiers[{index}]"), modifier, "modifier_format", message)
        elif modifier == previous:  # modifiers are sorted: a repeat is next to its first
            message = f"line {position + 1}: modifier {modifier} is given twice: give it once"
            out.add(_line_field(position, f"modifiers[{index}]"), modifier, "duplicate_modifier", message)
        previous = modifier


def _check_pointers(pointers: tuple[int, ...], listed: int, position: int, out: _Problems) -> None:
    if not pointers:
        message = (
            f"line {position + 1} points at no diagnosis: give the number of one diagnosis at least (1 for the first)"
        )
        out.add(_line_field(position, "diagnosis_pointers"), [], "diagnosis_pointers_missing", message)
        return
    if len(pointers) > MAX_DIAGNOSIS_POINTERS:
        message = f"line {position + 1} points at {len(pointers)} diagnoses: at most {MAX_DIAGNOSIS_POINTERS}"
        out.add(_line_field(position, "diagnosis_pointers"), list(pointers), "too_many_diagnosis_pointers", message)
    for index, pointer in enumerate(pointers):
        if not 1 <= pointer <= listed:
            message = (
                f"line {position + 1}: diagnosis pointer {pointer} points at no diagnosis: "
                f"the claim lists {listed} (use 1 to {listed})"
            )
            field = _line_field(position, f"diagnosis_pointers[{index}]")
            out.add(field, pointer, "diagnosis_pointer_invalid", message)
        elif pointer in pointers[:index]:
            message = f"line {position + 1}: diagnosis pointer {pointer} is given twice: give it once"
            field = _line_field(position, f"diagnosis_pointers[{index}]")
            out.add(field, pointer, "duplicate_diagnosis_pointer", message)


def _check_split_lines(lines: tuple[ServiceLine, ...], order: tuple[int, ...], out: _Problems) -> None:
    # Lines are in canonical order, so lines with the same dates, code and modifiers are next to each other.
    keys = [(line.service_date_from, line.service_date_to, line.procedure_code, line.modifiers) for line in lines]
    repeats: list[tuple[int, int, ServiceLine]] = []
    start = 0
    while start < len(keys):
        stop = start + 1
        while stop < len(keys) and keys[stop] == keys[start]:
            stop += 1
        if stop - start > 1:
            positions = sorted(order[start:stop])
            repeats.extend((later, positions[0], lines[start]) for later in positions[1:])
        start = stop
    for later, earlier, line in sorted(repeats, key=lambda repeat: repeat[0]):
        modifiers = f"modifiers {' '.join(line.modifiers)}" if line.modifiers else "no modifier"
        message = (
            f"line {later + 1} repeats procedure {line.procedure_code} on {line.service_date_from} "
            f"with {modifiers}, as line {earlier + 1} does: bill it once with units"
        )
        field = f"service_lines[{later}].procedure_code"
        out.add(field, line.procedure_code, "split_line", message, same_as=f"service_lines[{earlier}]")


def find_problems(claim: Claim, *, today: date | None = None) -> list[FieldProblem]:
    """Every clean-claim rule ``claim`` breaks: claim fields, diagnoses, then lines as submitted, then totals."""
    today = today or date.today()
    out = _Problems()
    _check_claim_fields(claim, today, out)
    _check_diagnoses(claim, out)
    lines = claim.service_lines
    if not lines:
        out.add(
            "service_lines", [], "service_lines_missing", "the claim has no service line: bill one service at least"
        )
        return out
    if len(lines) > MAX_SERVICE_LINES:
        message = f"the claim has {len(lines)} service lines: at most {MAX_SERVICE_LINES}; split it into several claims"
        out.add("service_lines", len(lines), "too_many_service_lines", message)
    if len(lines) == 1:
        _check_line(claim, lines[0], 0, today, out)
    else:
        order = claim.submitted_order
        for position, line in sorted(zip(order, lines, strict=True), key=lambda pair: pair[0]):
            _check_line(claim, line, position, today, out)
        _check_split_lines(lines, order, out)
    total = sum(line.charge_cents for line in lines)
    if claim.total_charge_cents != total:
        message = (
            f"the total charge {_money(claim.total_charge_cents)} does not equal the sum of the lines "
            f"{_money(total)}: correct the total or a line charge"
        )
        out.add("total_charge_cents", claim.total_charge_cents, "total_mismatch", message)
    return out


def ensure_clean(claim: Claim, *, today: date | None = None) -> Claim:
    """``claim`` itself if it is clean; else :class:`ClaimValidationError` listing every problem."""
    problems = find_problems(claim, today=today)
    if problems:
        raise ClaimValidationError(problems, claim_ref=claim.claim_id or None)
    return claim


def clean_claim(data: Mapping[str, Any], *, today: date | None = None) -> Claim:
    """Parse and check a raw claim in one step: the claim, or every problem (structural ones first).

    A claim that cannot be parsed lists only its structural problems: the rules need a claim.
    """
    return ensure_clean(parse_claim(data), today=today)
