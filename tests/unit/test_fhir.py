"""FHIR R4 Claim in and ClaimResponse out: every mapped field, bundles, refusals, round trips, responses.

Claims are read from hand-written resources (so the reader is not only checked against the
writer) and from the writer's output with one element changed. Ledger records come from the
real indexer applying contract events to an in-memory SQLite index, read back with
``ClaimLedgerService.claim()`` / ``history()``: the shape a ClaimResponse is built from in the
gateway, without a node.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim as FhirClaim
from fhir.resources.R4B.claimresponse import ClaimResponse

from ledger.chain import OUTCOMES, ChainEvent
from ledger.claim import parse_claim
from ledger.errors import ClaimValidationError, FormatError
from ledger.fingerprint import Keyring, fingerprint
from ledger.formats import ImportedClaim
from ledger.formats.fhir import (
    CARC_SYSTEM,
    CPT_SYSTEM,
    FHIR_RULES,
    FORMAT_RULES,
    HCPCS_SYSTEM,
    ICD10CM_SYSTEM,
    LEDGER_CLAIM_SYSTEM,
    NPI_SYSTEM,
    ORGANISATION_INDEX_SYSTEM,
    ORGANISATION_SYSTEM,
    POS_SYSTEM,
    claim_response,
    read_fhir_claim,
    write_fhir_bundle,
    write_fhir_claim,
)
from ledger.indexer import Indexer
from ledger.service import ClaimLedgerService
from ledger.store import indexed_claims, make_engine, writing
from ledger.validation import find_problems
from tests.factories import (
    BILLING_NPI,
    DIAGNOSES,
    RENDERING_NPI,
    TODAY,
    make_claim_data,
    make_line_data,
    many_claims,
    valid_npi,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "samples" / "fhir"
EXAMPLES = ROOT / "examples" / "fhir"
CREATED = date(2025, 6, 30)
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
C4BB_IDENTIFIER_TYPE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType"
LEDGER_REF = "0x" + "ab" * 32 + ":3"
SUPERVISOR_NPI = valid_npi(4242)


def concept(system: str | None, code: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if system is not None:
        coding["system"] = system
    return {"coding": [coding]}


def fhir_claim(**overrides: Any) -> dict[str, Any]:
    """The writer's Claim for ``make_claim_data(**overrides)``: contained[0] Patient, [1] Coverage,
    [2] Organization (billing provider), [3] Location (facility)."""
    return write_fhir_claim(make_claim_data(**overrides), created=CREATED)


def read_one(document: Any) -> ImportedClaim:
    imported = read_fhir_claim(document)
    assert len(imported) == 1
    return imported[0]


def refusal(document: Any) -> FormatError:
    with pytest.raises(FormatError) as caught:
        read_fhir_claim(document)
    return caught.value


def hand_written_claim() -> dict[str, Any]:
    """A Claim as another system might write it: every mapped element, in the less obvious forms."""
    return {
        "resourceType": "Claim",
        "id": "claim-42",
        "contained": [
            {"resourceType": "Patient", "id": "pat", "birthDate": "1975-11-03"},
            {
                "resourceType": "Coverage",
                "id": "cov",
                "status": "active",
                "identifier": [{"type": concept(V2_0203, "MB"), "value": "mbr-778899-01"}],
                "subscriberId": "SUB778899",
                "beneficiary": {"reference": "#pat"},
                "payor": [{"identifier": {"system": ORGANISATION_SYSTEM, "value": "PAYER-ACME"}}],
            },
            {
                "resourceType": "Organization",
                "id": "org",
                "identifier": [
                    {"system": "urn:oid:2.16.840.1.113883.4.4", "value": "123456789"},
                    {"system": NPI_SYSTEM, "value": BILLING_NPI},
                ],
            },
            {"resourceType": "Location", "id": "loc", "type": [concept(POS_SYSTEM, "22")]},
        ],
        "identifier": [
            {"system": "http://example.org/encounters", "value": "ENC-1"},
            {"type": concept(C4BB_IDENTIFIER_TYPE, "pat"), "value": "PCN-42"},
        ],
        "status": "active",
        "type": concept("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
        "use": "claim",
        "patient": {"reference": "#pat"},
        "created": "2025-06-30T08:00:00-05:00",
        "insurer": {"identifier": {"system": ORGANISATION_SYSTEM, "value": "payer-beta"}},
        "provider": {"reference": "#org"},
        "priority": concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "related": [
            {"relationship": concept("http://terminology.hl7.org/CodeSystem/related-claim-relationship", "associated")},
            {
                "claim": {"identifier": {"system": LEDGER_CLAIM_SYSTEM, "value": LEDGER_REF}},
                "relationship": concept("http://terminology.hl7.org/CodeSystem/related-claim-relationship", "prior"),
            },
        ],
        "facility": {"reference": "#loc"},
        "careTeam": [
            {
                "sequence": 1,
                "provider": {"identifier": {"system": NPI_SYSTEM, "value": SUPERVISOR_NPI}},
                "role": concept("http://terminology.hl7.org/CodeSystem/claimcareteamrole", "supervisor"),
            },
            {
                "sequence": 2,
                "provider": {"identifier": {"system": NPI_SYSTEM, "value": RENDERING_NPI}},
                "role": concept("http://terminology.hl7.org/CodeSystem/claimcareteamrole", "primary"),
            },
        ],
        "diagnosis": [
            {
                "sequence": 3,
                "diagnosisCodeableConcept": {
                    "coding": [
                        {"system": "http://snomed.info/sct", "code": "38341003"},
                        {"system": ICD10CM_SYSTEM, "code": "I10"},
                    ]
                },
            },
            {"sequence": 1, "diagnosisCodeableConcept": concept(ICD10CM_SYSTEM, "E11.9")},
        ],
        "insurance": [
            {"sequence": 1, "focal": False, "coverage": {"reference": "Coverage/primary-elsewhere"}},
            {"sequence": 2, "focal": True, "coverage": {"reference": "#cov"}},
        ],
        "item": [
            {
                "sequence": 1,
                "diagnosisSequence": [3, 1],
                "productOrService": concept(HCPCS_SYSTEM, "G0283"),
                "modifier": [concept(HCPCS_SYSTEM, "GP"), concept(CPT_SYSTEM, "59")],
                "servicedPeriod": {"start": "2025-06-02T09:30:00-05:00", "end": "2025-06-04"},
                "quantity": {"value": 3.0},
                "net": {"value": 90.3, "currency": "USD"},
            },
            {
                "sequence": 2,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [{"system": CPT_SYSTEM, "code": "99213", "display": "Office visit"}]},
                "servicedDate": "2025-06-02",
                "locationCodeableConcept": concept(POS_SYSTEM, "11"),
                "net": {"value": 125},
            },
        ],
        "total": {"value": 215.3, "currency": "USD"},
    }


HAND_WRITTEN_DATA = {
    "claim_id": "PCN-42",
    "frequency": "7",
    "original_claim_id": LEDGER_REF,
    "billing_npi": BILLING_NPI,
    "rendering_npi": RENDERING_NPI,
    "payer_id": "payer-beta",
    "responsibility": "S",
    "member_id": "mbr-778899-01",
    "patient_birth_date": "1975-11-03",
    "place_of_service": "22",
    "diagnoses": ["E11.9", "I10"],
    "service_lines": [
        {
            "service_date_from": "2025-06-02",
            "service_date_to": "2025-06-04",
            "procedure_code": "G0283",
            "modifiers": ["GP", "59"],
            "units": 3,
            "charge_cents": 9030,
            "diagnosis_pointers": [2, 1],
        },
        {
            "service_date_from": "2025-06-02",
            "service_date_to": "2025-06-02",
            "procedure_code": "99213",
            "modifiers": [],
            "units": 1,
            "charge_cents": 12500,
            "diagnosis_pointers": [1],
            "place_of_service": "11",
        },
    ],
    "total_charge_cents": 21530,
}


# --- reading: every mapped field ----------------------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "json text", "json bytes"])
def test_every_field_of_a_hand_written_claim_maps(form: str) -> None:
    resource = hand_written_claim()
    document: Any = {
        "mapping": resource,
        "json text": json.dumps(resource),
        "json bytes": json.dumps(resource).encode(),
    }[form]
    imported = read_one(document)
    assert imported.problems == ()
    assert imported.data == HAND_WRITTEN_DATA
    assert imported.claim_id == "PCN-42"
    assert imported.source.segment == "Claim"
    assert imported.source.position == 0
    claim = parse_claim(imported.data)
    assert claim.payer_id == "PAYER-BETA"
    assert claim.diagnoses == ("E119", "I10")
    assert find_problems(claim, today=TODAY) == []


def test_reading_leaves_the_callers_mapping_as_it_was() -> None:
    resource = hand_written_claim()
    before = copy.deepcopy(resource)
    read_one(resource)
    assert resource == before


def test_claim_id_is_the_first_identifier_when_none_is_typed_pat() -> None:
    resource = fhir_claim()
    resource["identifier"] = [{"value": "FIRST"}, {"system": "http://example.org", "value": "SECOND"}]
    assert read_one(resource).claim_id == "FIRST"


def test_a_cancelled_claim_is_a_void_naming_its_original() -> None:
    resource = fhir_claim(frequency="8", original_claim_id=LEDGER_REF)
    assert resource["status"] == "cancelled"
    assert resource["related"][0]["claim"]["identifier"] == {"system": LEDGER_CLAIM_SYSTEM, "value": LEDGER_REF}
    data = read_one(resource).data
    assert data is not None
    assert (data["frequency"], data["original_claim_id"]) == ("8", LEDGER_REF)


def test_an_active_claim_with_a_prior_claim_is_a_replacement() -> None:
    resource = fhir_claim(frequency="7", original_claim_id="CLM-0000")
    assert resource["status"] == "active"
    assert resource["related"][0]["claim"]["identifier"] == {"value": "CLM-0000"}  # not a ledger ref: no system
    data = read_one(resource).data
    assert data is not None
    assert (data["frequency"], data["original_claim_id"]) == ("7", "CLM-0000")


def test_the_original_may_be_named_by_related_reference() -> None:
    resource = fhir_claim(frequency="7", original_claim_id="CLM-0000")
    resource["related"][0] = {"relationship": resource["related"][0]["relationship"], "reference": {"value": "F8-77"}}
    data = read_one(resource).data
    assert data is not None
    assert data["original_claim_id"] == "F8-77"


def test_an_original_claim_has_no_related_prior() -> None:
    data = read_one(fhir_claim()).data
    assert data is not None
    assert (data["frequency"], data["original_claim_id"]) == ("1", None)


def test_the_rendering_provider_is_the_performing_member_before_the_primary() -> None:
    resource = fhir_claim()
    primary = {
        "sequence": 2,
        "provider": {"identifier": {"system": NPI_SYSTEM, "value": SUPERVISOR_NPI}},
        "role": concept("http://terminology.hl7.org/CodeSystem/claimcareteamrole", "primary"),
    }
    resource["careTeam"].insert(0, primary)
    data = read_one(resource).data
    assert data is not None
    assert data["rendering_npi"] == RENDERING_NPI


def test_no_care_team_is_no_rendering_provider() -> None:
    resource = fhir_claim()
    del resource["careTeam"]
    for item in resource["item"]:
        del item["careTeamSequence"]
    data = read_one(resource).data
    assert data is not None
    assert data["rendering_npi"] is None


def test_the_billing_npi_may_sit_on_the_reference_itself() -> None:
    resource = fhir_claim()
    resource["provider"] = {"identifier": {"system": NPI_SYSTEM, "value": valid_npi(77)}}
    data = read_one(resource).data
    assert data is not None
    assert data["billing_npi"] == valid_npi(77)


def test_the_billing_npi_may_be_a_contained_practitioner() -> None:
    resource = fhir_claim()
    practitioner = {
        "resourceType": "Practitioner",
        "id": "doc",
        "identifier": [{"system": NPI_SYSTEM, "value": "1245319599"}],
    }
    resource["contained"].append(practitioner)
    resource["provider"] = {"reference": "#doc"}
    data = read_one(resource).data
    assert data is not None
    assert data["billing_npi"] == "1245319599"


def test_without_an_insurer_the_payer_is_the_focal_coverages_payor() -> None:
    resource = fhir_claim(payer_id="PAYER-BETA")
    del resource["insurer"]
    data = read_one(resource).data
    assert data is not None
    assert data["payer_id"] == "PAYER-BETA"


def test_the_insurer_may_be_a_contained_organisation() -> None:
    resource = fhir_claim()
    payer = {
        "resourceType": "Organization",
        "id": "payer",
        "identifier": [{"system": "http://www.naic.org", "value": "60054"}, {"value": "PAYER-BETA"}],
    }
    resource["contained"].append(payer)
    resource["insurer"] = {"reference": "#payer"}
    data = read_one(resource).data
    assert data is not None
    assert data["payer_id"] == "PAYER-BETA"


@pytest.mark.parametrize(("sequence", "responsibility"), [(1, "P"), (2, "S"), (3, "T")])
def test_responsibility_is_the_focal_insurance_sequence(sequence: int, responsibility: str) -> None:
    resource = fhir_claim()
    resource["insurance"][0]["sequence"] = sequence
    data = read_one(resource).data
    assert data is not None
    assert data["responsibility"] == responsibility


def test_member_id_falls_back_to_subscriber_id_then_the_patient() -> None:
    resource = fhir_claim()
    del resource["contained"][1]["identifier"]
    resource["contained"][1]["subscriberId"] = "SUB-1"
    data = read_one(resource).data
    assert data is not None
    assert data["member_id"] == "SUB-1"

    resource["insurance"][0]["coverage"] = {"reference": "Coverage/elsewhere"}
    resource["contained"][0]["identifier"] = [{"type": concept(V2_0203, "MB"), "value": "PAT-MB-2"}]
    data = read_one(resource).data
    assert data is not None
    assert data["member_id"] == "PAT-MB-2"

    del resource["contained"][0]["identifier"]
    resource["patient"]["identifier"] = {"type": concept(V2_0203, "MB"), "value": "REF-MB-3"}
    data = read_one(resource).data
    assert data is not None
    assert data["member_id"] == "REF-MB-3"


def test_without_a_facility_the_claim_place_of_service_is_the_first_lines() -> None:
    resource = fhir_claim(service_lines=[make_line_data(), make_line_data(procedure_code="85025")])
    del resource["facility"]
    resource["item"][0]["locationCodeableConcept"] = concept(POS_SYSTEM, "22")
    resource["item"][1]["locationCodeableConcept"] = concept(POS_SYSTEM, "11")
    data = read_one(resource).data
    assert data is not None
    assert data["place_of_service"] == "22"
    assert parse_claim(data).service_lines[1].place_of_service == "11"


def test_without_quantity_a_line_is_one_unit_and_without_total_the_sum_of_lines() -> None:
    resource = fhir_claim(lines=2)
    del resource["item"][0]["quantity"]
    del resource["total"]
    data = read_one(resource).data
    assert data is not None
    assert data["service_lines"][0]["units"] == 1
    assert data["total_charge_cents"] == 12500 + 12600


@pytest.mark.parametrize(
    ("value", "cents"),
    [(Decimal("12.340"), 1234), (Decimal("0.01"), 1), (12, 1200), (125.1, 12510), (Decimal("1E+2"), 10000)],
)
def test_money_is_exact_cents(value: Any, cents: int) -> None:
    resource = fhir_claim()
    resource["item"][0]["net"]["value"] = value
    del resource["total"]
    data = read_one(resource).data
    assert data is not None
    assert data["service_lines"][0]["charge_cents"] == cents


def test_a_float_that_is_not_whole_cents_is_not_rounded() -> None:
    resource = fhir_claim()
    resource["item"][0]["net"]["value"] = 0.1 + 0.2  # 0.30000000000000004
    imported = read_one(resource)
    assert imported.data is None
    assert [(p.field, p.rule) for p in imported.problems] == [("Claim.item[0].net.value", "money_precision")]


# --- reading: claims that are valid FHIR but do not map -----------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        *parents, last = _steps(path)
        target: Any = resource
        for step in parents:
            target = target[step]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return mutate


def _steps(path: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in path.split(".")]


_DELETE = object()
SNOMED = "http://snomed.info/sct"
PERFORMING = concept("http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole", "performing")
PRIOR = concept("http://terminology.hl7.org/CodeSystem/related-claim-relationship", "prior")


def _two_performing(resource: dict[str, Any]) -> None:
    other = {"sequence": 2, "provider": {"identifier": {"system": NPI_SYSTEM, "value": SUPERVISOR_NPI}}}
    resource["careTeam"].append({**other, "role": PERFORMING})


def _two_focal(resource: dict[str, Any]) -> None:
    resource["insurance"].append({"sequence": 2, "focal": True, "coverage": {"reference": "#coverage"}})


def _no_place_of_service(resource: dict[str, Any]) -> None:
    del resource["facility"]
    del resource["item"][0]["locationCodeableConcept"]


def _no_member_id(resource: dict[str, Any]) -> None:
    del resource["contained"][1]["identifier"]
    del resource["contained"][1]["subscriberId"]


def _location_by_reference(resource: dict[str, Any]) -> None:
    del resource["item"][0]["locationCodeableConcept"]
    resource["item"][0]["locationReference"] = {"reference": "#facility"}


def _no_payer(resource: dict[str, Any]) -> None:
    del resource["insurer"]
    resource["contained"][1]["payor"] = [{"reference": "Organization/somewhere"}]


UNMAPPABLE: list[tuple[str, Mutation, list[tuple[str, str]]]] = [
    ("no billing NPI", _set("contained.2.identifier", _DELETE), [("Claim.provider", "npi_missing")]),
    ("no items", _set("item", _DELETE), [("Claim.item", "items_missing")]),
    ("charge 12.345", _set("item.0.net.value", Decimal("12.345")), [("Claim.item[0].net.value", "money_precision")]),
    ("total 125.001", _set("total.value", Decimal("125.001")), [("Claim.total.value", "money_precision")]),
    ("quantity 2.5", _set("item.0.quantity.value", 2.5), [("Claim.item[0].quantity.value", "quantity_not_whole")]),
    ("charge in EUR", _set("item.0.net.currency", "EUR"), [("Claim.item[0].net.currency", "currency_not_usd")]),
    ("no charge", _set("item.0.net", _DELETE), [("Claim.item[0].net", "charge_missing")]),
    (
        "procedure in SNOMED",
        _set("item.0.productOrService", concept(SNOMED, "185349003")),
        [("Claim.item[0].productOrService.coding[0].system", "code_system_unknown")],
    ),
    (
        "procedure without a system",
        _set("item.0.productOrService", concept(None, "99213")),
        [("Claim.item[0].productOrService.coding[0].system", "code_system_unknown")],
    ),
    (
        "procedure as text only",
        _set("item.0.productOrService", {"text": "office visit"}),
        [("Claim.item[0].productOrService.coding", "code_missing")],
    ),
    (
        "modifier of an unknown system",
        _set("item.0.modifier", [concept("http://example.org/modifiers", "25")]),
        [("Claim.item[0].modifier[0].coding[0].system", "code_system_unknown")],
    ),
    (
        "diagnosis in WHO ICD-10",
        _set("diagnosis.0.diagnosisCodeableConcept", concept("http://hl7.org/fhir/sid/icd-10", "E11.9")),
        [("Claim.diagnosis[0].diagnosisCodeableConcept.coding[0].system", "code_system_unknown")],
    ),
    (
        "diagnosis by reference",
        _set("diagnosis.0", {"sequence": 1, "diagnosisReference": {"reference": "Condition/c1"}}),
        [("Claim.diagnosis[0].diagnosisReference", "diagnosis_reference_unsupported")],
    ),
    (
        "diagnosis sequence twice",
        _set("diagnosis.1.sequence", 1),
        [("Claim.diagnosis[1].sequence", "diagnosis_sequence_duplicate")],
    ),
    (
        "pointer to no diagnosis",
        _set("item.0.diagnosisSequence", [7]),
        [("Claim.item[0].diagnosisSequence[0]", "diagnosis_sequence_unknown")],
    ),
    (
        "line place of service of another system",
        _set("item.0.locationCodeableConcept", concept("http://example.org/places", "office")),
        [("Claim.item[0].locationCodeableConcept.coding[0].system", "code_system_unknown")],
    ),
    (
        "facility typed in another system",
        _set("contained.3.type", [concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "HOSP")]),
        [("Claim.contained[3].type[0].coding[0].system", "code_system_unknown")],
    ),
    ("no place of service", _no_place_of_service, [("Claim.facility", "place_of_service_missing")]),
    (
        "no date of service",
        _set("item.0.servicedDate", _DELETE),
        [("Claim.item[0].servicedDate", "service_date_missing")],
    ),
    ("a month for a date", _set("item.0.servicedDate", "2025-06"), [("Claim.item[0].servicedDate", "date_partial")]),
    (
        "item with sub-lines",
        _set("item.0.detail", [{"sequence": 1, "productOrService": concept(CPT_SYSTEM, "99213")}]),
        [("Claim.item[0].detail", "item_detail_unsupported")],
    ),
    (
        "line place of service as a reference",
        _location_by_reference,
        [("Claim.item[0].locationReference", "location_unsupported")],
    ),
    ("no claim id", _set("identifier", _DELETE), [("Claim.identifier", "claim_id_missing")]),
    ("a draft", _set("status", "draft"), [("Claim.status", "claim_status_unsupported")]),
    ("a preauthorization", _set("use", "preauthorization"), [("Claim.use", "claim_use_unsupported")]),
    ("a pharmacy claim", _set("type.coding.0.code", "pharmacy"), [("Claim.type", "claim_type_unsupported")]),
    (
        "two prior claims",
        _set("related", [{"relationship": PRIOR, "reference": {"value": "A"}}, {"relationship": PRIOR}]),
        [("Claim.related", "related_claim_ambiguous")],
    ),
    (
        "a prior claim not named",
        _set("related", [{"relationship": PRIOR}]),
        [("Claim.related[0].claim.identifier", "original_claim_missing")],
    ),
    (
        "rendering provider without NPI",
        _set("careTeam.0.provider", {"reference": "Practitioner/p1"}),
        [("Claim.careTeam[0].provider", "rendering_npi_missing")],
    ),
    ("two rendering providers", _two_performing, [("Claim.careTeam[1].provider", "rendering_provider_ambiguous")]),
    (
        "payer by NAIC code",
        _set("insurer.identifier", {"system": "http://www.naic.org", "value": "60054"}),
        [("Claim.insurer.identifier.system", "identifier_system_unknown")],
    ),
    ("no payer at all", _no_payer, [("Claim.contained[1].payor[0]", "payer_missing")]),
    ("two focal insurances", _two_focal, [("Claim.insurance", "insurance_focal")]),
    ("no focal insurance", _set("insurance.0.focal", False), [("Claim.insurance", "insurance_focal")]),
    (
        "insurance sequence 4",
        _set("insurance.0.sequence", 4),
        [("Claim.insurance[0].sequence", "responsibility_sequence")],
    ),
    ("no member id", _no_member_id, [("Claim.insurance[0].coverage", "member_id_missing")]),
    (
        "patient not contained",
        _set("patient", {"reference": "Patient/123"}),
        [("Claim.patient", "patient_not_contained")],
    ),
    ("birth year only", _set("contained.0.birthDate", "1980"), [("Claim.contained[0].birthDate", "date_partial")]),
    ("no birth date", _set("contained.0.birthDate", _DELETE), [("Claim.contained[0].birthDate", "birth_date_missing")]),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in UNMAPPABLE], ids=[n for n, _, _ in UNMAPPABLE])
def test_a_valid_fhir_claim_that_does_not_map(mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    resource = fhir_claim()
    mutate(resource)
    FhirClaim.model_validate(resource)  # valid FHIR: the problem is the mapping's, not the model's
    imported = read_one(resource)
    assert imported.data is None
    assert [(p.field, p.rule) for p in imported.problems] == expected
    for problem in imported.problems:
        assert problem.rule in FHIR_RULES
        assert len(problem.message) > 20
        json.dumps(problem.to_dict())  # values a JSON answer can carry


def test_every_mapping_rule_is_exercised() -> None:
    assert {rule for _, _, expected in UNMAPPABLE for _, rule in expected} == set(FHIR_RULES)


def test_a_problem_names_the_value_and_says_what_to_do() -> None:
    resource = fhir_claim()
    resource["item"][0]["net"]["value"] = Decimal("12.345")
    (problem,) = read_one(resource).problems
    assert problem.value == "12.345"
    assert "12.345" in problem.message
    assert "cents" in problem.message


def test_all_problems_of_a_claim_are_listed_at_once() -> None:
    resource = fhir_claim(lines=2)
    resource["item"][0]["quantity"]["value"] = 1.5
    resource["item"][1]["net"]["value"] = Decimal("1.001")
    del resource["identifier"]
    imported = read_one(resource)
    assert [(p.field, p.rule) for p in imported.problems] == [
        ("Claim.identifier", "claim_id_missing"),
        ("Claim.item[0].quantity.value", "quantity_not_whole"),
        ("Claim.item[1].net.value", "money_precision"),
    ]
    assert imported.claim_id is None


def test_the_reader_checks_form_only_validation_checks_the_rest() -> None:
    imported = read_one(fhir_claim(billing_npi="1234567890"))  # a wrong check digit maps as given
    assert imported.problems == ()
    assert imported.data is not None
    rules = [p.rule for p in find_problems(parse_claim(imported.data), today=TODAY)]
    assert rules == ["npi_check_digit"]


# --- reading: documents refused as a whole ------------------------------------------------------


def test_sample_not_json() -> None:
    error = refusal((SAMPLES / "not_json.json").read_bytes())
    assert error.rule == "json_invalid"
    assert error.source.segment == "document"


def test_sample_patient_is_not_a_claim() -> None:
    with pytest.raises(FormatError) as caught:
        read_fhir_claim((SAMPLES / "patient.json").read_bytes(), file="patient.json")
    error = caught.value
    assert error.rule == "fhir_unsupported"
    assert (error.source.file, error.source.segment, error.source.position) == ("patient.json", "resourceType", 0)
    assert "'Patient'" in error.message


def test_sample_claim_missing_patient() -> None:
    with pytest.raises(FormatError) as caught:
        read_fhir_claim((SAMPLES / "claim_missing_patient.json").read_text(), file="claim_missing_patient.json")
    error = caught.value
    assert error.rule == "fhir_invalid"
    assert (error.source.segment, error.source.position) == ("Claim.patient", 0)
    assert error.details["source"]["file"] == "claim_missing_patient.json"


def test_sample_claim_charge_of_a_tenth_of_a_cent() -> None:
    imported = read_one((SAMPLES / "claim_charge_12_345.json").read_bytes())
    assert imported.data is None
    assert imported.claim_id == "PCN-2025-0001"
    assert [(p.field, p.value, p.rule) for p in imported.problems] == [
        ("Claim.item[0].net.value", "12.345", "money_precision")
    ]


@pytest.mark.parametrize(
    ("document", "rule", "segment"),
    [
        ("caf\u00e9".encode("latin-1"), "not_utf8", "document"),
        (b"[]", "json_invalid", "document"),
        (b'{"resourceType": "Claim", "total": {"value": NaN}}', "json_invalid", "document"),
        (b"", "json_invalid", "document"),
        (b'{"id": "x"}', "fhir_unsupported", "resourceType"),
        (b'{"resourceType": "ClaimResponse"}', "fhir_unsupported", "resourceType"),
        (b'{"resourceType": "Bundle", "type": "transaction", "entry": []}', "fhir_unsupported", "Bundle.type"),
        (b'{"resourceType": "Bundle", "type": "batch", "entry": []}', "fhir_unsupported", "Bundle.entry"),
        (b'{"resourceType": "Bundle", "type": "collection"}', "fhir_unsupported", "Bundle.entry"),
        (b'{"resourceType": "Bundle", "type": "batch", "entry": {}}', "fhir_invalid", "Bundle.entry"),
    ],
)
def test_documents_refused_as_a_whole(document: bytes, rule: str, segment: str) -> None:
    error = refusal(document)
    assert (error.rule, error.source.segment, error.source.position) == (rule, segment, 0)
    assert rule in FORMAT_RULES


def test_a_byte_order_mark_is_read_past() -> None:
    text = "\ufeff" + json.dumps(fhir_claim())
    assert read_one(text.encode("utf-8")).data is not None


@pytest.mark.parametrize(
    ("mutate", "segment"),
    [
        (_set("patient", _DELETE), "Claim.patient"),
        (_set("item.0.net.value", "twelve"), "Claim.item[0].net.value"),
        (_set("item.0.servicedDate", "2025-02-30"), "Claim.item[0].servicedDate"),
        (_set("contained.0.birthDate", "1980-13-01"), "Claim.contained[0].birthDate"),
        (_set("contained.0.resourceType", "Pateint"), "Claim.contained[0].resourceType"),
        (_set("item.0.servicedPeriod", {"start": "2025-06-01"}), "Claim.item[0]"),  # two serviced[x]
        (_set("insurance", _DELETE), "Claim.insurance"),
        (_set("unknownElement", 1), "Claim.unknownElement"),
    ],
)
def test_a_claim_the_r4b_model_rejects(mutate: Mutation, segment: str) -> None:
    resource = fhir_claim()
    mutate(resource)
    error = refusal(resource)
    assert (error.rule, error.source.segment, error.source.position) == ("fhir_invalid", segment, 0)
    assert segment in error.message


# --- bundles ------------------------------------------------------------------------------------


def test_a_bundle_maps_each_claim_in_order_and_one_bad_claim_falls_alone() -> None:
    bundle = write_fhir_bundle(list(many_claims(3)), created=CREATED)
    bundle["id"] = "batch-7"
    bundle["type"] = "batch"
    bundle["entry"][1]["resource"]["item"][0]["net"]["value"] = 12.345
    imported = read_fhir_claim(json.dumps(bundle), file="claims.json")
    assert [i.claim_id for i in imported] == ["CLM-00000000", "CLM-00000001", "CLM-00000002"]
    assert [i.data is not None for i in imported] == [True, False, True]
    assert [(p.field, p.rule) for p in imported[1].problems] == [("Claim.item[0].net.value", "money_precision")]
    assert [(i.source.segment, i.source.position) for i in imported] == [
        ("Bundle.entry[0].resource", 1),
        ("Bundle.entry[1].resource", 2),
        ("Bundle.entry[2].resource", 3),
    ]
    assert all(i.source.file == "claims.json" and i.source.control == {"Bundle.id": "batch-7"} for i in imported)


def test_an_invalid_claim_refuses_the_bundle_naming_its_entry() -> None:
    bundle = write_fhir_bundle(list(many_claims(3)), created=CREATED)
    del bundle["entry"][2]["resource"]["patient"]
    error = refusal(bundle)
    assert (error.rule, error.source.segment, error.source.position) == ("fhir_invalid", "Claim.patient", 3)
    assert "bundle entry 3" in error.message


def test_a_bundle_entry_that_is_not_a_claim_refuses_the_bundle() -> None:
    bundle = write_fhir_bundle(list(many_claims(2)), created=CREATED)
    bundle["entry"][1]["resource"] = {"resourceType": "Patient", "id": "p"}
    error = refusal(bundle)
    assert (error.rule, error.source.segment, error.source.position) == (
        "fhir_unsupported",
        "Bundle.entry[1].resource.resourceType",
        2,
    )


def test_a_bundle_entry_without_a_resource_refuses_the_bundle() -> None:
    bundle = write_fhir_bundle(list(many_claims(2)), created=CREATED)
    bundle["entry"][0] = {"fullUrl": "urn:uuid:0f9b7c4e-4f0e-4a43-9d3b-2b9c3f1b2a10"}
    error = refusal(bundle)
    assert (error.rule, error.source.segment, error.source.position) == ("fhir_invalid", "Bundle.entry[0].resource", 1)


def test_an_invalid_bundle_envelope_is_refused() -> None:
    bundle = write_fhir_bundle(list(many_claims(2)), created=CREATED)
    bundle["entry"][1]["fullUrl"] = 42
    error = refusal(bundle)
    assert (error.rule, error.source.segment, error.source.position) == ("fhir_invalid", "Bundle.entry[1].fullUrl", 2)


def test_written_bundle_is_a_valid_collection() -> None:
    bundle = write_fhir_bundle(list(many_claims(2)), created=CREATED)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    assert [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]] == ["CLM-00000000", "CLM-00000001"]


# --- writing and the round trip -----------------------------------------------------------------


def _line(**overrides: Any) -> list[dict[str, Any]]:
    return [make_line_data(**overrides)]


ROUND_TRIPS: list[dict[str, Any]] = [
    {},
    {"lines": 3},
    {"lines": 10},
    {"rendering_npi": None},
    {"responsibility": "S"},
    {"responsibility": "T", "payer_id": "PAYER-BETA"},
    {"frequency": "7", "original_claim_id": "CLM-0000"},
    {"frequency": "8", "original_claim_id": LEDGER_REF},
    {"diagnoses": list(DIAGNOSES), "service_lines": _line(diagnosis_pointers=[6, 1, 2, 3, 4, 5])},
    {"diagnoses": ["S0101XA", "QA00101"], "service_lines": _line(diagnosis_pointers=[2])},
    {"service_lines": _line(modifiers=["XU", "25", "RT", "59"], units=4, charge_cents=1)},
    {"service_lines": _line(service_date_from="2025-06-01", service_date_to="2025-06-30")},
    {"service_lines": _line(place_of_service="22")},
    {"service_lines": _line(procedure_code="G0008", charge_cents=99_999_999_999)},
    {"service_lines": [make_line_data(), make_line_data(modifiers=["76"]), make_line_data(procedure_code="0001F")]},
    {"member_id": "mbr-100-200", "billing_npi": "123 456 7893", "claim_id": "  CLM-9  "},  # normalised on both sides
]


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.generate(tmp_path_factory.mktemp("fhir") / "keys.json")


@pytest.mark.parametrize("overrides", ROUND_TRIPS)
def test_round_trip_keeps_the_claim_and_its_keys(overrides: dict[str, Any], keyring: Keyring) -> None:
    original = make_claim_data(**overrides)
    resource = write_fhir_claim(original, created=CREATED)
    FhirClaim.model_validate(resource)
    back = read_one(json.dumps(resource))
    assert back.problems == ()
    assert back.data is not None
    assert parse_claim(back.data) == parse_claim(original)
    assert fingerprint(parse_claim(back.data), keyring.current) == fingerprint(parse_claim(original), keyring.current)


def test_round_trip_over_many_claims(keyring: Keyring) -> None:
    claims = list(many_claims(40, lines=3)) + list(many_claims(10, lines=1, start=40))
    bundle = write_fhir_bundle(claims, created=CREATED)
    back = read_fhir_claim(json.dumps(bundle))
    assert len(back) == len(claims)
    for claim, item in zip(claims, back, strict=True):
        assert item.data is not None
        assert parse_claim(item.data) == claim
        assert fingerprint(parse_claim(item.data), keyring.current) == fingerprint(claim, keyring.current)


def test_written_claim_uses_the_us_code_systems() -> None:
    claim = make_claim_data(
        service_lines=[make_line_data(procedure_code="G0008", modifiers=["RT", "59"]), make_line_data()],
        diagnoses=["E119", "I10"],
    )
    resource = write_fhir_claim(claim, created=CREATED)
    assert json.loads(json.dumps(resource)) == resource  # plain JSON values
    items = {item["productOrService"]["coding"][0]["code"]: item for item in resource["item"]}
    assert items["G0008"]["productOrService"]["coding"][0]["system"] == HCPCS_SYSTEM
    assert items["99213"]["productOrService"]["coding"][0]["system"] == CPT_SYSTEM
    assert [m["coding"][0] for m in items["G0008"]["modifier"]] == [
        {"system": CPT_SYSTEM, "code": "59"},
        {"system": HCPCS_SYSTEM, "code": "RT"},
    ]
    assert [d["diagnosisCodeableConcept"]["coding"][0] for d in resource["diagnosis"]] == [
        {"system": ICD10CM_SYSTEM, "code": "E11.9"},
        {"system": ICD10CM_SYSTEM, "code": "I10"},
    ]
    assert items["99213"]["net"] == {"value": 125.0, "currency": "USD"}
    assert resource["total"] == {"value": 250.0, "currency": "USD"}
    assert resource["created"] == "2025-06-30"
    assert resource["insurer"] == {"identifier": {"system": ORGANISATION_SYSTEM, "value": "PAYER-ACME"}}
    assert resource["insurance"] == [{"sequence": 1, "focal": True, "coverage": {"reference": "#coverage"}}]
    patient, coverage, organisation, location = resource["contained"]
    assert patient["birthDate"] == "1980-04-12"
    assert "family" not in json.dumps(patient) and "given" not in json.dumps(patient)  # no invented name
    assert coverage["subscriberId"] == "MBR100200300"
    assert organisation["identifier"] == [{"system": NPI_SYSTEM, "value": BILLING_NPI}]
    assert location["type"][0]["coding"][0] == {"system": POS_SYSTEM, "code": "11"}


def test_writing_refuses_a_claim_that_does_not_parse() -> None:
    with pytest.raises(ClaimValidationError):
        write_fhir_claim(make_claim_data(total_charge_cents=1.5))


def test_writing_refuses_money_a_json_number_cannot_hold_exactly() -> None:
    with pytest.raises(ValueError, match="too large"):
        write_fhir_claim(make_claim_data(service_lines=_line(charge_cents=10**15)))


def test_writing_refuses_a_created_time_without_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        write_fhir_claim(make_claim_data(), created=datetime(2025, 6, 30, 12, 0))


@pytest.mark.parametrize("name", ["claim.json", "bundle.json"])
def test_the_examples_are_clean_claims(name: str) -> None:
    imported = read_fhir_claim((EXAMPLES / name).read_bytes(), file=name)
    assert len(imported) == (1 if name == "claim.json" else 3)
    for item in imported:
        assert item.data is not None
        assert find_problems(parse_claim(item.data), today=TODAY) == []
    assert imported[0].data is not None and imported[0].data["payer_id"] == "PAYER-ACME"


# --- ClaimResponse ------------------------------------------------------------------------------

KEY = bytes.fromhex("11" * 32)
KEY_REF = "0x" + "11" * 32 + ":1"
PROVIDER_ORG, PAYER_ORG = 1, 2
SUBMITTED_AT = 1_751_000_000  # 2025-06-27 04:53:20 UTC
PAID_AT = 1_751_284_800  # 2025-06-30 12:00:00 UTC


class Ledger:
    """Index rows made by the real indexer from contract events; records read by the real service."""

    def __init__(self) -> None:
        self.engine = make_engine("sqlite://")
        self.indexer = Indexer.__new__(Indexer)  # no node: block times are given, not fetched
        self.indexer._block_times = {}
        self.service = ClaimLedgerService.__new__(ClaimLedgerService)
        self.service.engine = self.engine
        self.block = 0

    def emit(self, when: int, *events: tuple[str, dict[str, Any]]) -> None:
        self.block += 1
        block_hash = self.block.to_bytes(32, "big")
        self.indexer._block_times["0x" + block_hash.hex()] = when
        decoded = [
            ChainEvent(name, args, self.block, block_hash, (self.block * 1000 + i).to_bytes(32, "big"), i)
            for i, (name, args) in enumerate(events)
        ]
        with writing(self.engine) as conn:
            self.indexer._apply(conn, decoded, {})

    def submit(self, key: bytes = KEY, *, suspect: bool = False, frequency: int = 1) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        if suspect:
            flag = {"exactKey": key, "version": 1, "lineIndex": 0, "earlierExactKey": b"\x22" * 32, "earlierVersion": 1}
            events.append(("SuspectDuplicateFlagged", flag))
        args = {
            "exactKey": key,
            "version": 1,
            "providerOrg": PROVIDER_ORG,
            "payerOrg": PAYER_ORG,
            "documentHash": b"\x33" * 32,
            "keyId": 7,
            "lineCount": 1,
            "totalCharge": 12500,
            "frequency": frequency,
        }
        events.append(("ClaimSubmitted", args))
        self.emit(SUBMITTED_AT, *events)

    def acknowledge(self, accepted: bool, reason: bytes) -> None:
        args = {"exactKey": KEY, "version": 1, "payerOrg": PAYER_ORG, "accepted": accepted, "reasonCode": reason}
        self.emit(SUBMITTED_AT + 3600, ("ClaimAcknowledged", args))

    def adjudicate(self, outcome: str, allowed: int, carc_codes: list[bytes]) -> None:
        args = {
            "exactKey": KEY,
            "version": 1,
            "payerOrg": PAYER_ORG,
            "outcome": OUTCOMES.index(outcome),
            "allowedAmount": allowed,
            "carcCodes": carc_codes,
        }
        self.emit(SUBMITTED_AT + 7200, ("ClaimAdjudicated", args))

    def pay(self, paid: int) -> None:
        args = {
            "exactKey": KEY,
            "version": 1,
            "payerOrg": PAYER_ORG,
            "paidAmount": paid,
            "remittanceHash": b"\x44" * 32,
        }
        self.emit(PAID_AT, ("ClaimPaid", args))

    def record(self) -> dict[str, Any]:
        return self.service.claim(KEY, 1)

    def history(self) -> list[dict[str, Any]]:
        return self.service.history(KEY, 1)


def _carc(code: str) -> bytes:
    return code.encode("ascii").ljust(4, b"\0")  # as ClaimLedgerContract.adjudicate sends them


def ledger_in(status: str) -> Ledger:
    """A claim walked to ``status`` through the contract's events."""
    ledger = Ledger()
    ledger.submit(suspect=status == "suspect")
    if status in ("submitted", "suspect"):
        return ledger
    if status == "voided":
        ledger.emit(SUBMITTED_AT + 60, ("ClaimVoided", {"exactKey": KEY, "version": 1, "providerOrg": PROVIDER_ORG}))
        return ledger
    if status == "replaced":
        args = {"exactKey": KEY, "version": 1, "replacementKey": b"\x55" * 32, "replacementVersion": 1}
        ledger.emit(SUBMITTED_AT + 60, ("ClaimReplaced", args))
        return ledger
    ledger.acknowledge(status != "rejected", b"A3:21" if status == "rejected" else b"A2:20")
    if status in ("accepted", "rejected"):
        return ledger
    outcome, allowed, codes = {
        "approved": ("approved", 12500, []),
        "partly_approved": ("partly_approved", 9000, [_carc("CO45"), _carc("PR2")]),
        "denied": ("denied", 0, [_carc("50")]),
        "paid": ("partly_approved", 9000, [_carc("CO45")]),
    }[status]
    ledger.adjudicate(outcome, allowed, codes)
    if status == "paid":
        ledger.pay(9000)
    return ledger


def respond(ledger: Ledger, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("created", NOW)
    response = claim_response(ledger.record(), history=ledger.history(), **kwargs)
    ClaimResponse.model_validate(response)
    assert json.loads(json.dumps(response)) == response
    return response


def totals(response: dict[str, Any]) -> dict[str, float]:
    return {t["category"]["coding"][0]["code"]: t["amount"]["value"] for t in response["total"]}


def reasons(response: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (a["reason"]["coding"][0]["system"], a["reason"]["coding"][0]["code"], a["reason"]["text"])
        for a in response.get("adjudication", [])
    ]


def test_records_are_what_the_service_returns() -> None:
    record = ledger_in("paid").record()
    assert set(record) == {column.name for column in indexed_claims.columns}
    assert record["exact_key"] == "0x" + KEY.hex()
    assert (record["status"], record["outcome"], record["allowed_amount"], record["paid_amount"]) == (
        "paid",
        "partly_approved",
        9000,
        9000,
    )
    assert record["paid_at"] == PAID_AT


@pytest.mark.parametrize(
    ("status", "fhir_status", "outcome", "amounts", "disposition"),
    [
        ("submitted", "active", "queued", {"submitted": 125.0}, "waiting for the payer"),
        ("accepted", "active", "queued", {"submitted": 125.0}, "Accepted by the payer for adjudication (A2:20)"),
        ("rejected", "active", "error", {"submitted": 125.0}, "Rejected by the payer (A3:21)"),
        (
            "approved",
            "active",
            "complete",
            {"submitted": 125.0, "eligible": 125.0},
            "Approved: allowed $125.00 of $125.00 charged; payment to follow.",
        ),
        (
            "partly_approved",
            "active",
            "complete",
            {"submitted": 125.0, "eligible": 90.0},
            "Partly approved (CARC CO45, PR2): allowed $90.00 of $125.00 charged; payment to follow.",
        ),
        (
            "denied",
            "active",
            "complete",
            {"submitted": 125.0, "eligible": 0.0},
            "Denied (CARC 50): nothing allowed of $125.00 charged.",
        ),
        (
            "paid",
            "active",
            "complete",
            {"submitted": 125.0, "eligible": 90.0, "benefit": 90.0},
            "Partly approved (CARC CO45): allowed $90.00 of $125.00 charged; paid $90.00 on 2025-06-30.",
        ),
        ("voided", "cancelled", "complete", {"submitted": 125.0}, "Voided by the provider."),
        ("replaced", "cancelled", "complete", {"submitted": 125.0}, "Replaced by the provider's corrected claim"),
    ],
)
def test_claim_response_for_each_status(
    status: str, fhir_status: str, outcome: str, amounts: dict[str, float], disposition: str
) -> None:
    response = respond(ledger_in(status), claim_id="CLM-0001", payer="PAYER-ACME", provider="PROV-A")
    assert response["resourceType"] == "ClaimResponse"
    assert (response["status"], response["outcome"], response["use"]) == (fhir_status, outcome, "claim")
    assert totals(response) == amounts
    assert disposition in response["disposition"]
    assert all(t["amount"]["currency"] == "USD" for t in response["total"])
    assert response["request"]["identifier"] == {"system": LEDGER_CLAIM_SYSTEM, "value": KEY_REF}
    assert [i["value"] for i in response["identifier"]] == [KEY_REF, "CLM-0001"]
    assert response["insurer"]["identifier"] == {"system": ORGANISATION_SYSTEM, "value": "PAYER-ACME"}
    assert response["requestor"]["identifier"] == {"system": ORGANISATION_SYSTEM, "value": "PROV-A"}
    assert response["created"] == "2025-06-30T12:00:00+00:00"
    assert ("payment" in response) == (status == "paid")
    assert ("error" in response) == (status == "rejected")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("approved", []),
        ("partly_approved", [(CARC_SYSTEM, "45", "CO45"), (CARC_SYSTEM, "2", "PR2")]),
        ("denied", [(CARC_SYSTEM, "50", "50")]),
        ("paid", [(CARC_SYSTEM, "45", "CO45")]),
        ("accepted", []),
    ],
)
def test_claim_response_carc_reasons(status: str, expected: list[tuple[str, str, str]]) -> None:
    response = respond(ledger_in(status))
    assert reasons(response) == expected
    for adjudication in response.get("adjudication", []):
        assert adjudication["category"]["coding"][0]["code"] == "adjustmentreason"


def test_claim_response_without_history_has_no_reasons_but_the_amounts() -> None:
    ledger = ledger_in("paid")
    response = claim_response(ledger.record(), created=NOW)
    ClaimResponse.model_validate(response)
    assert reasons(response) == []
    assert totals(response) == {"submitted": 125.0, "eligible": 90.0, "benefit": 90.0}
    assert "identifier" not in response["payment"]
    assert response["disposition"] == "Partly approved: allowed $90.00 of $125.00 charged; paid $90.00 on 2025-06-30."


def test_claim_response_payment() -> None:
    payment = respond(ledger_in("paid"))["payment"]
    assert payment["amount"] == {"value": 90.0, "currency": "USD"}
    assert payment["date"] == "2025-06-30"
    assert payment["type"]["coding"][0]["code"] == "complete"
    assert payment["identifier"]["value"] == "0x" + "44" * 32


def test_claim_response_rejection_names_the_277ca_status() -> None:
    (error,) = respond(ledger_in("rejected"))["error"]
    assert error["code"]["coding"][0] == {"system": "https://x12.org/codes/claim-status-codes", "code": "21"}
    assert error["code"]["text"] == "277CA A3:21"


def test_claim_response_names_the_replacement() -> None:
    response = respond(ledger_in("replaced"))
    assert response["disposition"] == f"Replaced by the provider's corrected claim (0x{'55' * 32}:1)."


def test_claim_response_after_a_payment_reversal_is_queued_again_without_the_old_reasons() -> None:
    ledger = ledger_in("paid")
    reversal = {
        "exactKey": KEY,
        "version": 1,
        "payerOrg": PAYER_ORG,
        "reversedAmount": 9000,
        "remittanceHash": b"\x66" * 32,
    }
    ledger.emit(PAID_AT + 86_400, ("ClaimPaymentReversed", reversal))
    response = respond(ledger)
    assert (response["status"], response["outcome"]) == ("active", "queued")
    assert reasons(response) == []
    assert totals(response) == {"submitted": 125.0}
    assert "payment" not in response


def test_claim_response_patient_is_masked_unless_the_caller_gives_the_member_id() -> None:
    ledger = ledger_in("submitted")
    masked = respond(ledger)["patient"]
    assert masked == {
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]
    }
    known = respond(ledger, member_id="MBR100200300")["patient"]
    assert known["identifier"]["value"] == "MBR100200300"
    assert known["identifier"]["type"]["coding"][0]["code"] == "MB"


def test_claim_response_without_names_uses_the_organisation_index() -> None:
    response = respond(ledger_in("submitted"))
    assert response["insurer"]["identifier"] == {"system": ORGANISATION_INDEX_SYSTEM, "value": str(PAYER_ORG)}
    assert response["requestor"]["identifier"] == {"system": ORGANISATION_INDEX_SYSTEM, "value": str(PROVIDER_ORG)}
    assert [i["value"] for i in response["identifier"]] == [KEY_REF]


def test_claim_response_notes_a_suspect_duplicate() -> None:
    assert "processNote" not in respond(ledger_in("submitted"))
    (note,) = respond(ledger_in("suspect"))["processNote"]
    assert "suspect duplicate" in note["text"]


def test_claim_response_ignores_another_claims_events() -> None:
    ledger = ledger_in("partly_approved")
    assert reasons(claim_response(ledger.record(), history=ledger.history(), created=NOW)) != []
    foreign = [dict(row, exact_key="0x" + "77" * 32) for row in ledger.history()]
    response = claim_response(ledger.record(), history=foreign, created=NOW)
    assert reasons(response) == []


def test_claim_response_refuses_what_is_not_a_ledger_record() -> None:
    record = ledger_in("submitted").record()
    with pytest.raises(ValueError, match="not one the ledger records"):
        claim_response({**record, "status": "pending"}, created=NOW)
    with pytest.raises(ValueError, match="time zone"):
        claim_response(record, created=datetime(2025, 6, 30, 12, 0))
