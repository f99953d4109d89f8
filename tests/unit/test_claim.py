"""The claim model: normal form on construction, strict money, structural problems as FieldProblems."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from ledger.claim import (
    PARSE_RULES,
    Claim,
    Frequency,
    Responsibility,
    ServiceLine,
    field_path,
    normalise_code,
    parse_claim,
    parse_claim_json,
)
from ledger.errors import ClaimValidationError, FieldProblem
from tests.factories import make_claim, make_claim_data, make_line_data


def problems_of(data: Any) -> list[FieldProblem]:
    with pytest.raises(ClaimValidationError) as caught:
        parse_claim(data)
    return caught.value.problems


def only_problem(data: Any) -> FieldProblem:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


# --- normal form ------------------------------------------------------------------------------


def test_codes_and_ids_are_upper_case_without_separators() -> None:
    claim = make_claim(
        billing_npi=" 123-456-7893 ",
        rendering_npi="124 531 9599",
        member_id=" mbr-100.200 300\t",
        diagnoses=["e11.9", " i10 "],
        place_of_service=" 11 ",
        service_lines=[make_line_data(procedure_code=" g-0008 ", modifiers=["r.t", " 59"])],
    )
    assert claim.billing_npi == "1234567893"
    assert claim.rendering_npi == "1245319599"
    assert claim.member_id == "MBR100200300"
    assert claim.diagnoses == ("E119", "I10")
    assert claim.place_of_service == "11"
    line = claim.service_lines[0]
    assert line.procedure_code == "G0008"
    assert line.modifiers == ("59", "RT")


def test_payer_id_keeps_its_dashes_and_claim_ids_keep_their_case() -> None:
    claim = make_claim(payer_id=" payer-acme ", claim_id=" clm-0001/a ", frequency="7", original_claim_id=" 0xAbC ")
    assert claim.payer_id == "PAYER-ACME"
    assert claim.claim_id == "clm-0001/a"
    assert claim.original_claim_id == "0xAbC"


def test_empty_optional_ids_become_none() -> None:
    claim = make_claim(rendering_npi=" ", original_claim_id="")
    assert claim.rendering_npi is None
    assert claim.original_claim_id is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [("P", Responsibility.PRIMARY), ("s", Responsibility.SECONDARY), (" Tertiary ", Responsibility.TERTIARY)],
)
def test_responsibility_accepts_codes_and_words(given: str, expected: Responsibility) -> None:
    assert make_claim(responsibility=given).responsibility is expected


@pytest.mark.parametrize(
    ("given", "expected"), [("1", Frequency.ORIGINAL), (7, Frequency.REPLACEMENT), ("void", Frequency.VOID)]
)
def test_frequency_accepts_codes_numbers_and_words(given: object, expected: Frequency) -> None:
    assert make_claim(frequency=given, original_claim_id="CLM-0000").frequency is expected


def test_diagnoses_keep_their_order_the_first_is_principal() -> None:
    assert make_claim(diagnoses=["I10", "E119", "A000"]).diagnoses == ("I10", "E119", "A000")


def test_dates_accept_iso_strings_both_forms_and_date_objects() -> None:
    claim = make_claim(
        patient_birth_date="19800412",
        service_lines=[make_line_data(service_date_from=date(2025, 6, 2), service_date_to=" 2025-06-03 ")],
    )
    assert claim.patient_birth_date == date(1980, 4, 12)
    assert claim.service_lines[0].service_date_from == date(2025, 6, 2)
    assert claim.service_lines[0].service_date_to == date(2025, 6, 3)


@pytest.mark.parametrize("missing", ["absent", None])
def test_service_date_to_defaults_to_from(missing: object) -> None:
    line = make_line_data(service_date_from="2025-06-02")
    if missing == "absent":
        del line["service_date_to"]
    else:
        line["service_date_to"] = None
    assert make_claim(service_lines=[line]).service_lines[0].service_date_to == date(2025, 6, 2)


def test_lines_are_put_in_canonical_order_and_remember_where_they_came_from() -> None:
    lines = [
        make_line_data(procedure_code="99213", service_date_from="2025-06-03"),
        make_line_data(procedure_code="85025", service_date_from="2025-06-02"),
        make_line_data(procedure_code="80053", service_date_from="2025-06-02"),
    ]
    claim = make_claim(service_lines=lines)
    assert [line.procedure_code for line in claim.service_lines] == ["80053", "85025", "99213"]
    assert claim.submitted_order == (2, 1, 0)


def test_canonical_order_is_total_for_lines_that_differ_only_in_pointers_or_place() -> None:
    a = make_line_data(diagnosis_pointers=[2])
    b = make_line_data(diagnosis_pointers=[1], place_of_service="22")
    assert make_claim(service_lines=[a, b]) == make_claim(service_lines=[b, a])


def test_submitted_order_is_identity_when_lines_came_in_order_and_not_part_of_equality() -> None:
    shuffled = make_claim(lines=3)
    rebuilt = Claim.model_validate(shuffled.model_dump())
    assert rebuilt == shuffled
    assert hash(rebuilt) == hash(shuffled)
    assert rebuilt.submitted_order == (0, 1, 2)
    assert shuffled.submitted_order != (0, 1, 2)
    assert "submitted_order" not in shuffled.model_dump()


def test_a_line_place_of_service_equal_to_the_claims_is_dropped() -> None:
    claim = make_claim(place_of_service="11", service_lines=[make_line_data(place_of_service="11")])
    assert claim.service_lines[0].place_of_service is None
    assert claim.line_place_of_service(claim.service_lines[0]) == "11"
    other = make_claim(place_of_service="11", service_lines=[make_line_data(place_of_service="22")])
    assert other.line_place_of_service(other.service_lines[0]) == "22"


def test_claims_are_frozen_and_hashable() -> None:
    claim = make_claim()
    with pytest.raises(ValidationError):
        claim.member_id = "OTHER"
    assert {claim, make_claim()} == {claim}


def test_service_line_normalises_when_built_alone() -> None:
    line = ServiceLine.model_validate(make_line_data(procedure_code="j-1100", modifiers=["rt", "lt"]))
    assert (line.procedure_code, line.modifiers) == ("J1100", ("LT", "RT"))


@pytest.mark.parametrize(("raw", "normal"), [("e11.9", "E119"), ("123-456-7893", "1234567893"), ("a b\tc", "ABC")])
def test_normalise_code(raw: str, normal: str) -> None:
    assert normalise_code(raw) == normal
    assert normalise_code(5) == 5


# --- structural problems ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [12.5, 12500.0, True, "12500"])
def test_money_is_strict_integer_cents(value: object) -> None:
    problem = only_problem(make_claim_data(total_charge_cents=value))
    assert (problem.field, problem.value, problem.rule) == ("total_charge_cents", value, "not_whole_number")
    assert "whole number of cents" in problem.message


@pytest.mark.parametrize(("name", "value"), [("units", 1.5), ("units", False), ("charge_cents", 99.99)])
def test_line_integers_are_strict(name: str, value: object) -> None:
    problem = only_problem(make_claim_data(service_lines=[make_line_data(**{name: value})], total_charge_cents=1))
    assert (problem.field, problem.rule) == (f"service_lines[0].{name}", "not_whole_number")
    assert problem.message.startswith("line 1: ")


def test_pointer_entries_are_strict_integers_with_their_index() -> None:
    problem = only_problem(make_claim_data(service_lines=[make_line_data(diagnosis_pointers=[1, "2"])]))
    assert (problem.field, problem.value, problem.rule) == (
        "service_lines[0].diagnosis_pointers[1]",
        "2",
        "not_whole_number",
    )


def test_numbers_beyond_what_canonical_json_holds_are_refused() -> None:
    problem = only_problem(make_claim_data(total_charge_cents=2**53))
    assert (problem.field, problem.rule) == ("total_charge_cents", "number_too_large")


@pytest.mark.parametrize("value", ["2025-02-30", "06/02/2025", 1748822400, "1748822400", "2025-W23-1", ""])
def test_dates_that_are_not_real_iso_dates_are_refused(value: object) -> None:
    problem = only_problem(make_claim_data(patient_birth_date=value))
    assert (problem.field, problem.value, problem.rule) == ("patient_birth_date", value, "date_invalid")
    assert "YYYY-MM-DD" in problem.message


def test_a_datetime_is_not_a_date() -> None:
    from datetime import datetime

    problem = only_problem(make_claim_data(patient_birth_date=datetime(1980, 4, 12)))
    assert problem.rule == "date_invalid"


def test_missing_fields_are_named_with_their_path() -> None:
    data = make_claim_data()
    del data["member_id"]
    del data["service_lines"][0]["charge_cents"]
    problems = problems_of(data)
    assert [(p.field, p.value, p.rule) for p in problems] == [
        ("member_id", None, "required"),
        ("service_lines[0].charge_cents", None, "required"),
    ]
    assert problems[0].message == "member id is required"
    assert problems[1].message == "line 1: line charge is required"


def test_a_line_without_any_date_names_only_the_from_date() -> None:
    line = make_line_data()
    del line["service_date_from"], line["service_date_to"]
    problem = only_problem(make_claim_data(service_lines=[line]))
    assert (problem.field, problem.rule) == ("service_lines[0].service_date_from", "required")


def test_unknown_fields_are_refused_as_likely_misspellings() -> None:
    problem = only_problem(make_claim_data(member="X"))
    assert (problem.field, problem.rule) == ("member", "unknown_field")
    assert "check its spelling" in problem.message


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"frequency": "2"}, "frequency", "frequency_invalid"),
        ({"responsibility": "A"}, "responsibility", "responsibility_invalid"),
        ({"member_id": 123}, "member_id", "not_text"),
        ({"diagnoses": "E119"}, "diagnoses", "not_a_list"),
        ({"service_lines": ["99213"], "total_charge_cents": 0}, "service_lines[0]", "not_an_object"),
    ],
)
def test_structural_rules(overrides: dict[str, Any], field: str, rule: str) -> None:
    problem = only_problem(make_claim_data(**overrides))
    assert (problem.field, problem.rule) == (field, rule)
    assert rule in PARSE_RULES


def test_every_structural_problem_is_listed_and_the_error_names_the_claim() -> None:
    data = make_claim_data(claim_id="CLM-9", total_charge_cents=1.5, frequency="9", extra=1)
    with pytest.raises(ClaimValidationError) as caught:
        parse_claim(data)
    error = caught.value
    assert {p.rule for p in error.problems} == {"not_whole_number", "frequency_invalid", "unknown_field"}
    assert "CLM-9" in error.message
    assert error.to_dict()["details"]["problems"][0]["field"]


def test_not_a_mapping_is_one_problem_on_the_claim() -> None:
    problem = only_problem(["not", "a", "claim"])
    assert (problem.field, problem.rule) == ("claim", "not_an_object")


def test_parse_claim_json() -> None:
    data = make_claim_data()
    assert parse_claim_json(json.dumps(data)) == parse_claim(data)
    with pytest.raises(ClaimValidationError) as caught:
        parse_claim_json(b"{not json")
    assert caught.value.problems[0].rule == "json_invalid"
    with pytest.raises(ClaimValidationError) as caught:
        parse_claim_json(json.dumps(make_claim_data(total_charge_cents=1.0, patient_birth_date="1748822400")))
    assert {p.rule for p in caught.value.problems} == {"not_whole_number", "date_invalid"}


def test_field_path() -> None:
    assert field_path(("service_lines", 1, "modifiers", 0)) == "service_lines[1].modifiers[0]"
    assert field_path(()) == "claim"
