"""Clean-claim rules: each rule on a claim that breaks only it, all problems at once, and the code set."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest

from ledger.claim import parse_claim
from ledger.codesets import display_icd10cm, icd10cm, icd10cm_data_file, load_icd10cm, parse_icd10cm_code_list
from ledger.errors import ClaimValidationError, FieldProblem
from ledger.validation import RULES, clean_claim, ensure_clean, find_problems, npi_check_digit, npi_problem
from tests.factories import (
    DIAGNOSES,
    PROCEDURE_CODES,
    TODAY,
    make_claim,
    make_claim_data,
    make_line_data,
    make_lines_data,
    many_claims,
    valid_npi,
)

THIRTEEN_DIAGNOSES = ["E119", "I10", "J069", "M5450", "Z0000", "R079", "F419", "K219", "E1165", "E785", "N390"]
THIRTEEN_DIAGNOSES += ["J45909", "Z23"]


def problems(**overrides: Any) -> list[FieldProblem]:
    return find_problems(make_claim(**overrides), today=TODAY)


def line(**overrides: Any) -> list[dict[str, Any]]:
    return [make_line_data(**overrides)]


# --- clean claims -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"lines": 3},
        {"lines": 10},
        {"rendering_npi": None},
        {"responsibility": "T", "payer_id": "PAYER-BETA"},
        {"frequency": "7", "original_claim_id": "CLM-0000"},
        {"frequency": "8", "original_claim_id": "0x" + "ab" * 32},
        {"diagnoses": list(DIAGNOSES), "service_lines": line(diagnosis_pointers=[1, 2, 3, 4, 5, 6])},
        {"diagnoses": ["QA00101"]},  # the 2026 set: a letter second
        {"diagnoses": ["S0101XA"]},  # seventh character
        {"service_lines": line(modifiers=["25", "59", "RT", "XU"], units=4, charge_cents=1)},
        {"service_lines": line(service_date_from="2025-06-01", service_date_to="2025-06-30")},
        {"service_lines": line(service_date_from="1980-04-12")},  # the day of birth
        {"service_lines": line(place_of_service="22")},
        {"service_lines": [make_line_data(), make_line_data(modifiers=["76"])]},  # a repeat made legitimate
        {"service_lines": [make_line_data(), make_line_data(service_date_from="2025-06-03")]},
    ],
)
def test_clean_claims_have_no_problem(overrides: dict[str, Any]) -> None:
    assert problems(**overrides) == []


@pytest.mark.parametrize("code", PROCEDURE_CODES)
def test_procedure_code_forms(code: str) -> None:
    assert problems(service_lines=line(procedure_code=code)) == []


def test_factory_claims_are_clean() -> None:
    assert all(find_problems(claim, today=TODAY) == [] for claim in many_claims(20, lines=2))


# --- one rule at a time -----------------------------------------------------------------------

# (rule, overrides, field, value, words the message must contain[, other rules the claim cannot help breaking])
CASES: list[tuple[Any, ...]] = [
    ("claim_id_length", {"claim_id": "C" * 39}, "claim_id", "C" * 39, "1 to 38 characters, not 39"),
    ("claim_id_length", {"claim_id": "  "}, "claim_id", "", "1 to 38 characters, not 0"),
    (
        "original_claim_id_required",
        {"frequency": "7"},
        "original_claim_id",
        None,
        "a replacement (frequency 7) must name the claim it replaces",
    ),
    ("original_claim_id_required", {"frequency": "8"}, "original_claim_id", None, "a void (frequency 8)"),
    (
        "original_claim_id_not_allowed",
        {"original_claim_id": "CLM-0000"},
        "original_claim_id",
        "CLM-0000",
        "use frequency 7 to replace a claim or 8 to void it",
    ),
    (
        "npi_check_digit",
        {"billing_npi": "1234567890"},
        "billing_npi",
        "1234567890",
        "billing provider NPI 1234567890 fails its check digit: check for a typo",
    ),
    (
        "npi_check_digit",
        {"rendering_npi": "1245319598"},
        "rendering_npi",
        "1245319598",
        "rendering provider NPI 1245319598 fails its check digit",
    ),
    ("npi_format", {"billing_npi": "3234567893"}, "billing_npi", "3234567893", "10 digits starting with 1 or 2"),
    ("npi_format", {"rendering_npi": "12345"}, "rendering_npi", "12345", "is not an NPI"),
    ("npi_format", {"billing_npi": "12345678X3"}, "billing_npi", "12345678X3", "is not an NPI"),
    ("payer_id_missing", {"payer_id": " "}, "payer_id", "", "name the payer"),
    ("member_id_format", {"member_id": "-"}, "member_id", "", "1 to 80 letters and digits"),
    ("member_id_format", {"member_id": "M" * 81}, "member_id", "M" * 81, "as on the member's card"),
    ("member_id_format", {"member_id": "MBR/1"}, "member_id", "MBR/1", "letters and digits"),
    (
        "birth_date_in_future",
        {"patient_birth_date": "2025-07-01", "service_lines": line(service_date_from="2025-07-01")},
        "patient_birth_date",
        "2025-07-01",
        "birth date 2025-07-01 is in the future (today is 2025-06-30)",
        {"service_date_in_future"},
    ),
    ("place_of_service_format", {"place_of_service": "1"}, "place_of_service", "1", "two-digit code"),
    (
        "place_of_service_format",
        {"service_lines": line(place_of_service="OFFICE")},
        "service_lines[0].place_of_service",
        "OFFICE",
        "line 1: place of service 'OFFICE'",
    ),
    ("diagnoses_missing", {"diagnoses": []}, "diagnoses", [], "no diagnosis"),
    (
        "too_many_diagnoses",
        {"diagnoses": THIRTEEN_DIAGNOSES},
        "diagnoses",
        THIRTEEN_DIAGNOSES,
        "13 diagnoses: at most 12",
    ),
    ("icd10_format", {"diagnoses": ["E119", "9E11"]}, "diagnoses[1]", "9E11", "is not an ICD-10-CM code"),
    ("icd10_format", {"diagnoses": ["E1"]}, "diagnoses[0]", "E1", "a letter and 2 to 6 letters or digits"),
    ("icd10_format", {"diagnoses": ["E11.91234"]}, "diagnoses[0]", "E1191234", "is not an ICD-10-CM code"),
    ("icd10_unknown", {"diagnoses": ["E11.99"]}, "diagnoses[0]", "E1199", "E11.99 is not in the ICD-10-CM code set"),
    (
        "icd10_not_billable",
        {"diagnoses": ["E11"]},
        "diagnoses[0]",
        "E11",
        "diagnosis E11 is a category, not a billable code: use a more specific code under it, e.g. E11.00",
    ),
    ("icd10_not_billable", {"diagnoses": ["M54.5"]}, "diagnoses[0]", "M545", "e.g. M54.50, M54.51, M54.59"),
    (
        "duplicate_diagnosis",
        {"diagnoses": ["E119", "I10", "E11.9"]},
        "diagnoses[2]",
        "E119",
        "E11.9 is listed twice (also as number 1)",
    ),
    ("service_lines_missing", {"service_lines": [], "total_charge_cents": 0}, "service_lines", [], "no service line"),
    (
        "too_many_service_lines",
        {
            "service_lines": [
                make_line_data(service_date_from=f"2025-{m:02d}-{d:02d}") for m in (1, 2) for d in range(1, 27)
            ]
        },
        "service_lines",
        52,
        "52 service lines: at most 50",
    ),
    (
        "total_mismatch",
        {"total_charge_cents": 12499},
        "total_charge_cents",
        12499,
        "the total charge $124.99 does not equal the sum of the lines $125.00",
    ),
    (
        "procedure_code_format",
        {"service_lines": line(procedure_code="9921")},
        "service_lines[0].procedure_code",
        "9921",
        "line 1: procedure code '9921' is neither CPT",
    ),
    (
        "procedure_code_format",
        {"service_lines": line(procedure_code="W1234")},
        "service_lines[0].procedure_code",
        "W1234",
        "HCPCS",
    ),
    (
        "procedure_code_format",
        {"service_lines": line(procedure_code="0001X")},
        "service_lines[0].procedure_code",
        "0001X",
        "CPT",
    ),
    (
        "modifier_format",
        {"service_lines": line(modifiers=["2"])},
        "service_lines[0].modifiers[0]",
        "2",
        "two letters or digits",
    ),
    (
        "modifier_format",
        {"service_lines": line(modifiers=["25", "RTX"])},
        "service_lines[0].modifiers[1]",
        "RTX",
        "'RTX'",
    ),
    (
        "too_many_modifiers",
        {"service_lines": line(modifiers=["25", "59", "RT", "XU", "76"])},
        "service_lines[0].modifiers",
        ["25", "59", "76", "RT", "XU"],
        "line 1 has 5 modifiers: at most 4",
    ),
    (
        "duplicate_modifier",
        {"service_lines": line(modifiers=["RT", "rt"])},
        "service_lines[0].modifiers[1]",
        "RT",
        "modifier RT is given twice",
    ),
    (
        "units_not_positive",
        {"service_lines": line(units=0)},
        "service_lines[0].units",
        0,
        "units must be 1 or more, not 0",
    ),
    (
        "charge_not_positive",
        {"service_lines": line(charge_cents=-500)},
        "service_lines[0].charge_cents",
        -500,
        "the charge must be more than $0.00, not -$5.00",
    ),
    (
        "service_dates_reversed",
        {"service_lines": line(service_date_from="2025-06-03", service_date_to="2025-06-02")},
        "service_lines[0].service_date_to",
        "2025-06-02",
        "the service ends (2025-06-02) before it starts (2025-06-03)",
    ),
    (
        "service_date_in_future",
        {"service_lines": line(service_date_from="2025-06-30", service_date_to="2025-07-02")},
        "service_lines[0].service_date_to",
        "2025-07-02",
        "date of service 2025-07-02 is in the future (today is 2025-06-30)",
    ),
    (
        "service_date_before_birth",
        {"service_lines": line(service_date_from="1980-04-11", service_date_to="1980-04-12")},
        "service_lines[0].service_date_from",
        "1980-04-11",
        "before the patient's birth date 1980-04-12",
    ),
    (
        "diagnosis_pointers_missing",
        {"service_lines": line(diagnosis_pointers=[])},
        "service_lines[0].diagnosis_pointers",
        [],
        "line 1 points at no diagnosis",
    ),
    (
        "too_many_diagnosis_pointers",
        {"diagnoses": ["E119"], "service_lines": line(diagnosis_pointers=[1] * 13)},
        "service_lines[0].diagnosis_pointers",
        [1] * 13,
        "points at 13 diagnoses: at most 12",
        {"duplicate_diagnosis_pointer"},
    ),
    (
        "diagnosis_pointer_invalid",
        {"service_lines": line(diagnosis_pointers=[1, 3])},
        "service_lines[0].diagnosis_pointers[1]",
        3,
        "diagnosis pointer 3 points at no diagnosis: the claim lists 2 (use 1 to 2)",
    ),
    (
        "diagnosis_pointer_invalid",
        {"service_lines": line(diagnosis_pointers=[0])},
        "service_lines[0].diagnosis_pointers[0]",
        0,
        "pointer 0",
    ),
    (
        "duplicate_diagnosis_pointer",
        {"service_lines": line(diagnosis_pointers=[2, 2])},
        "service_lines[0].diagnosis_pointers[1]",
        2,
        "diagnosis pointer 2 is given twice",
    ),
    (
        "split_line",
        {"service_lines": [make_line_data(modifiers=["25"]), make_line_data(modifiers=["25"], charge_cents=100)]},
        "service_lines[1].procedure_code",
        "99213",
        "line 2 repeats procedure 99213 on 2025-06-02 with modifiers 25, as line 1 does: bill it once with units",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{case[0]}:{case[2]}" for case in CASES])
def test_each_rule_names_field_value_and_what_to_do(case: tuple[Any, ...]) -> None:
    rule, overrides, field, value, words = case[:5]
    also: set[str] = case[5] if len(case) > 5 else set()
    found = problems(**overrides)
    assert [p.rule for p in found if p.rule == rule] == [rule], found
    assert {p.rule for p in found} - {rule} == also, found
    problem = next(p for p in found if p.rule == rule)
    assert (problem.field, problem.value) == (field, value)
    assert words in problem.message
    assert RULES[rule]


def test_every_rule_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(RULES)


def test_rule_ids_are_stable_snake_case() -> None:
    assert all(rule.replace("_", "").isalnum() and rule == rule.lower() for rule in RULES)


def test_not_billable_lists_real_billable_codes() -> None:
    problem = problems(diagnoses=["E11"])[0]
    suggested = problem.message.split("e.g. ")[1].split(", ")
    assert suggested and all(code.replace(".", "") in icd10cm().billable for code in suggested)


def test_a_split_line_is_reported_once_per_repeat_with_positions_as_submitted() -> None:
    lines = [
        make_line_data(procedure_code="85025"),  # 0
        make_line_data(),  # 1: the first 99213
        make_line_data(procedure_code="80053"),  # 2
        make_line_data(charge_cents=1),  # 3: repeat
        make_line_data(units=2),  # 4: repeat
    ]
    found = problems(service_lines=lines)
    assert [(p.rule, p.field, p.extra) for p in found] == [
        ("split_line", "service_lines[3].procedure_code", {"same_as": "service_lines[1]"}),
        ("split_line", "service_lines[4].procedure_code", {"same_as": "service_lines[1]"}),
    ]


def test_line_paths_refer_to_the_order_lines_were_submitted_in() -> None:
    lines = make_lines_data(3)  # 99213, 85025, 80053: canonical order reverses them
    lines[0] = make_line_data(units=0)
    claim = make_claim(service_lines=lines)
    assert claim.service_lines[-1].procedure_code == "99213"
    found = find_problems(claim, today=TODAY)
    assert [(p.field, p.message[:6]) for p in found] == [("service_lines[0].units", "line 1")]


def test_a_claim_with_several_problems_lists_them_all_in_claim_order() -> None:
    claim = make_claim(
        billing_npi="1234567890",
        diagnoses=["E11", "I10", "I10"],
        total_charge_cents=1,
        service_lines=[
            make_line_data(procedure_code="99213", modifiers=["2"], diagnosis_pointers=[4]),
            make_line_data(procedure_code="85025", service_date_from="2025-07-01", units=0),
        ],
    )
    found = find_problems(claim, today=TODAY)
    assert [(p.rule, p.field) for p in found] == [
        ("npi_check_digit", "billing_npi"),
        ("icd10_not_billable", "diagnoses[0]"),
        ("duplicate_diagnosis", "diagnoses[2]"),
        ("modifier_format", "service_lines[0].modifiers[0]"),
        ("diagnosis_pointer_invalid", "service_lines[0].diagnosis_pointers[0]"),
        ("units_not_positive", "service_lines[1].units"),
        ("service_date_in_future", "service_lines[1].service_date_from"),
        ("total_mismatch", "total_charge_cents"),
    ]
    with pytest.raises(ClaimValidationError) as caught:
        ensure_clean(claim, today=TODAY)
    assert caught.value.problems == found
    assert "CLM-0001" in caught.value.message and "8 problem(s)" in caught.value.message


def test_ensure_clean_returns_the_claim() -> None:
    claim = make_claim()
    assert ensure_clean(claim, today=TODAY) is claim


def test_today_defaults_to_the_current_date() -> None:
    tomorrow = date.fromordinal(date.today().toordinal() + 1).isoformat()
    found = find_problems(make_claim(service_lines=line(service_date_from=tomorrow)))
    assert [p.rule for p in found] == ["service_date_in_future"]


def test_clean_claim_parses_then_checks() -> None:
    assert clean_claim(make_claim_data(), today=TODAY) == make_claim()
    with pytest.raises(ClaimValidationError) as caught:
        clean_claim(make_claim_data(billing_npi="1234567890"), today=TODAY)
    assert [p.rule for p in caught.value.problems] == ["npi_check_digit"]
    with pytest.raises(ClaimValidationError) as caught:
        clean_claim(make_claim_data(total_charge_cents=1.5), today=TODAY)
    assert [p.rule for p in caught.value.problems] == ["not_whole_number"]


def test_problems_are_json_friendly() -> None:
    import json

    found = problems(patient_birth_date="2025-07-01", service_lines=line(service_date_from="2025-07-01"))
    json.dumps([p.to_dict() for p in found])


# --- NPI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("npi", ["1234567893", "1245319599", "1000000004", "2222222228"])
def test_known_valid_npis(npi: str) -> None:
    assert npi_problem(npi) is None


def test_npi_check_digit_matches_the_luhn_rule_spelled_out() -> None:
    def luhn_valid(number: str) -> bool:
        total = 0
        for index, char in enumerate(reversed(number)):
            digit = int(char) * (2 if index % 2 else 1)
            total += digit - 9 if digit > 9 else digit
        return total % 10 == 0

    rng = random.Random(5)
    for _ in range(2000):
        npi = rng.choice("12") + "".join(rng.choice("0123456789") for _ in range(9))
        assert (npi_problem(npi) is None) == luhn_valid("80840" + npi), npi
    assert all(npi_problem(valid_npi(n)) is None for n in range(100))
    with pytest.raises(ValueError):
        npi_check_digit("323456789")


# --- the ICD-10-CM code set -------------------------------------------------------------------


def test_code_set_is_read_without_importing_the_package() -> None:
    import subprocess
    import sys

    script = "import sys; from ledger.codesets import icd10cm; icd10cm(); print('simple_icd_10_cm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_code_set_shape() -> None:
    codes = icd10cm()
    assert codes.release == "April 2026"
    assert len(codes.billable) > 70_000
    assert codes.billable <= codes.codes
    assert {"E119", "I10", "J069", "M5450", "Z0000", "S0101XA", "QA00101"} <= codes.billable
    assert {"E11", "M545", "S0101", "QA0"} <= codes.codes - codes.billable
    assert not any("." in c or "-" in c or c.isdigit() for c in codes.codes)
    assert display_icd10cm("E119") == "E11.9"
    assert display_icd10cm("I10") == "I10"


def test_billable_codes_equal_the_packages_leaves() -> None:
    """The whole set against simple_icd_10_cm's own API, in a child process: the import alone takes
    over a second and 224 MB, which the test process need not carry."""
    import json
    import subprocess
    import sys

    script = """
import json, sys, warnings
warnings.simplefilter("ignore")
import simple_icd_10_cm as package
every = set(package.get_all_codes(with_dots=False))
codes = sorted(c for c in every if package.is_category_or_subcategory(c))
billable = [c for c in codes if package.is_leaf(c)]
json.dump({"codes": codes, "billable": billable}, sys.stdout)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    expected = json.loads(result.stdout)
    assert icd10cm().billable == set(expected["billable"])
    assert icd10cm().codes == set(expected["codes"])


def test_parse_code_list_and_file_errors(tmp_path: Any) -> None:
    codes = parse_icd10cm_code_list("1\r\nA00-A09\r\nA00\r\nA000\r\nA001\r\nB99\r\nB99\r\n", release="test")
    assert codes.billable == {"A000", "A001", "B99"}
    assert codes.billable_under("A00") == ("A000", "A001")
    from ledger.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="holds no codes"):
        parse_icd10cm_code_list("1\nA00-A09\n", release="empty")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_icd10cm(tmp_path / "missing.txt")
    assert icd10cm_data_file().name == "code-list-April-2026.txt"


def test_dots_anywhere_in_a_diagnosis_are_separators() -> None:
    assert parse_claim(make_claim_data(diagnoses=["E.1.1.9"])).diagnoses == ("E119",)
