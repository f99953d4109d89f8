"""Properties that hold for every claim: the normal form, what each key covers, canonical JSON."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

import orjson
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.claim import MAX_SAFE_INTEGER, Claim, parse_claim
from ledger.fingerprint import FingerprintKey, Fingerprints, canonical_document, canonical_json, fingerprint
from ledger.validation import npi_check_digit

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
KEY = FingerprintKey.from_secret(bytes(range(32)))

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SEPARATORS = [".", "-", " ", "\t"]

npis = st.from_regex(r"[12][0-9]{8}", fullmatch=True).map(lambda base: base + npi_check_digit(base))
member_ids = st.text(ALNUM, min_size=1, max_size=14)
procedure_codes = st.one_of(
    st.from_regex(r"[0-9]{4}[0-9FT]", fullmatch=True), st.from_regex(r"[A-V][0-9]{4}", fullmatch=True)
)
modifier_codes = st.text(ALNUM, min_size=2, max_size=2)
places = st.from_regex(r"[0-9]{2}", fullmatch=True)
diagnosis_codes = st.sampled_from(["E119", "I10", "J069", "M5450", "Z0000", "R079", "S0101XA", "QA00101", "F419"])
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31))


@st.composite
def line_data(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(days)
    return {
        "service_date_from": start.isoformat(),
        "service_date_to": (start + timedelta(days=draw(st.integers(0, 3)))).isoformat(),
        "procedure_code": draw(procedure_codes),
        "modifiers": draw(st.lists(modifier_codes, max_size=4)),
        "units": draw(st.integers(1, 99)),
        "charge_cents": draw(st.integers(1, 10**9)),
        "place_of_service": draw(st.none() | places),
        "diagnosis_pointers": draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)),
    }


@st.composite
def claim_data(draw: st.DrawFn, min_lines: int = 1, max_lines: int = 4) -> dict[str, Any]:
    lines = draw(st.lists(line_data(), min_size=min_lines, max_size=max_lines))
    return {
        "claim_id": draw(st.text(ALNUM + "-/", min_size=1, max_size=38)),
        "frequency": "1",
        "original_claim_id": None,
        "billing_npi": draw(npis),
        "rendering_npi": draw(st.none() | npis),
        "payer_id": draw(st.sampled_from(["PAYER-ACME", "PAYER-BETA", "MEDICARE-A"])),
        "responsibility": draw(st.sampled_from("PST")),
        "member_id": draw(member_ids),
        "patient_birth_date": draw(days).isoformat(),
        "place_of_service": draw(places),
        "diagnoses": draw(st.lists(diagnosis_codes, min_size=1, max_size=4)),
        "service_lines": lines,
        "total_charge_cents": sum(line["charge_cents"] for line in lines),
    }


def prints(data: dict[str, Any]) -> Fingerprints:
    return fingerprint(parse_claim(data), KEY)


# --- the normal form --------------------------------------------------------------------------


def _mess_up(draw: st.DrawFn, code: str) -> str:
    """The same code as a person might type it: random case, separators inside, white space around."""
    chars = [c.lower() if draw(st.booleans()) else c for c in code]
    out = ""
    for char in chars:
        out += char
        if draw(st.integers(0, 4)) == 0:
            out += draw(st.sampled_from(SEPARATORS))
    return draw(st.sampled_from(["", " ", "\t"])) + out + draw(st.sampled_from(["", " ", "\n"]))


_WORDS = {"P": "primary", "S": "secondary", "T": "tertiary"}


@st.composite
def messed_up(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for name in ("billing_npi", "member_id", "place_of_service"):
        out[name] = _mess_up(draw, out[name])
    if out["rendering_npi"] is not None:
        out["rendering_npi"] = _mess_up(draw, out["rendering_npi"])
    out["diagnoses"] = [_mess_up(draw, code) for code in out["diagnoses"]]
    out["payer_id"] = " " + out["payer_id"].lower() + " "  # the payer keeps its dashes
    out["claim_id"] = "  " + out["claim_id"] + "\t"  # the provider's reference is only trimmed
    if draw(st.booleans()):
        word = _WORDS[out["responsibility"]]
        out["responsibility"] = word.upper() if draw(st.booleans()) else word.title()
    out["frequency"] = draw(st.sampled_from(["1", 1, " original "]))
    if draw(st.booleans()):
        out["patient_birth_date"] = out["patient_birth_date"].replace("-", "")
    for line in out["service_lines"]:
        line["procedure_code"] = _mess_up(draw, line["procedure_code"])
        line["modifiers"] = draw(st.permutations([_mess_up(draw, m) for m in line["modifiers"]]))
        if line["place_of_service"] is None and draw(st.booleans()):
            line["place_of_service"] = data["place_of_service"]  # the claim's, said again
        elif line["place_of_service"] is not None:
            line["place_of_service"] = _mess_up(draw, line["place_of_service"])
        if line["service_date_to"] == line["service_date_from"] and draw(st.booleans()):
            del line["service_date_to"]
        elif draw(st.booleans()):
            line["service_date_from"] = date.fromisoformat(line["service_date_from"])
    out["service_lines"] = draw(st.permutations(out["service_lines"]))
    return out


@SETTINGS
@given(st.data())
def test_case_white_space_separators_and_order_never_change_any_key(data: st.DataObject) -> None:
    clean = data.draw(claim_data())
    messy = data.draw(messed_up(clean))
    assert parse_claim(messy) == parse_claim(clean)
    assert prints(messy) == prints(clean)
    assert canonical_document(parse_claim(messy)) == canonical_document(parse_claim(clean))


@SETTINGS
@given(claim_data())
def test_the_normal_form_is_a_fixed_point(data: dict[str, Any]) -> None:
    claim = parse_claim(data)
    again = Claim.model_validate(claim.model_dump())
    assert again == claim
    assert canonical_document(again) == canonical_document(claim)


# --- what is in a key changes it --------------------------------------------------------------

EXACT_LINE_FIELDS = ["service_date_from", "service_date_to", "procedure_code", "modifiers", "units", "charge_cents"]
SUSPECT_LINE_FIELDS = ["service_date_from", "service_date_to", "procedure_code", "modifiers"]


def _other_value(data: st.DataObject, name: str, old: Any) -> Any:
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "member_id": member_ids,
        "billing_npi": npis,
        "responsibility": st.sampled_from("PST"),
        "service_date_from": days.map(date.isoformat),
        "service_date_to": days.map(date.isoformat),
        "procedure_code": procedure_codes,
        "modifiers": st.lists(modifier_codes, max_size=4),
        "units": st.integers(1, 99),
        "charge_cents": st.integers(1, 10**9),
        "place_of_service": places,
    }
    new = data.draw(strategies[name])
    assume(sorted(new) != sorted(old) if name == "modifiers" else new != old)
    return new


@SETTINGS
@given(st.data())
def test_changing_a_field_in_the_exact_key_changes_it(data: st.DataObject) -> None:
    before = data.draw(claim_data())
    after = copy.deepcopy(before)
    target = data.draw(st.sampled_from(["member_id", "billing_npi", "responsibility", "line", "line_place"]))
    if target == "line" or target == "line_place":
        line = data.draw(st.sampled_from(after["service_lines"]))
        if target == "line_place":
            effective = line["place_of_service"] or after["place_of_service"]
            line["place_of_service"] = data.draw(places.filter(lambda p: p != effective))
        else:
            name = data.draw(st.sampled_from(EXACT_LINE_FIELDS))
            line[name] = _other_value(data, name, line[name])
    else:
        after[target] = _other_value(data, target, after[target])
    assert prints(after).exact_key != prints(before).exact_key


@SETTINGS
@given(st.data())
def test_changing_a_field_in_the_suspect_key_changes_it(data: st.DataObject) -> None:
    before = data.draw(claim_data(max_lines=1))
    after = copy.deepcopy(before)
    name = data.draw(st.sampled_from(["member_id", "responsibility", *SUSPECT_LINE_FIELDS]))
    holder = after if name in ("member_id", "responsibility") else after["service_lines"][0]
    holder[name] = _other_value(data, name, holder[name])
    assert prints(after).line_keys != prints(before).line_keys


@SETTINGS
@given(st.data())
def test_changing_any_field_changes_the_document_hash(data: st.DataObject) -> None:
    before = data.draw(claim_data(max_lines=1))
    after = copy.deepcopy(before)
    name = data.draw(st.sampled_from(["claim_id", "payer_id", "patient_birth_date", "diagnoses", "rendering_npi"]))
    after[name] = {
        "claim_id": before["claim_id"] + "X",
        "payer_id": before["payer_id"] + "-2",
        "patient_birth_date": "1901-01-01",
        "diagnoses": [*before["diagnoses"], "Z23"],
        "rendering_npi": None if before["rendering_npi"] else "1245319599",
    }[name]
    assert prints(after).document_hash != prints(before).document_hash


# --- what is not in a key never changes it ----------------------------------------------------


@SETTINGS
@given(st.data())
def test_fields_outside_the_exact_key_never_change_it(data: st.DataObject) -> None:
    before = data.draw(claim_data())
    after = copy.deepcopy(before)
    after["payer_id"] = data.draw(st.sampled_from(["PAYER-OTHER", "MEDICAID-NY"]))
    after["claim_id"] = data.draw(st.text(min_size=1, max_size=38).filter(str.strip))
    after["rendering_npi"] = data.draw(st.none() | npis)
    after["diagnoses"] = data.draw(st.lists(diagnosis_codes, min_size=1, max_size=12))
    after["patient_birth_date"] = data.draw(days).isoformat()
    if data.draw(st.booleans()):
        after["frequency"], after["original_claim_id"] = data.draw(st.sampled_from("78")), "CLM-ORIGINAL"
    for line in after["service_lines"]:
        line["diagnosis_pointers"] = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=12))
    changed, same = prints(after), prints(before)
    assert changed.exact_key == same.exact_key
    assert changed.line_keys == same.line_keys


@SETTINGS
@given(st.data())
def test_payer_provider_units_charge_and_place_never_change_suspect_keys(data: st.DataObject) -> None:
    before = data.draw(claim_data())
    after = copy.deepcopy(before)
    after["payer_id"] = "PAYER-OTHER"
    after["billing_npi"] = data.draw(npis)
    after["rendering_npi"] = data.draw(st.none() | npis)
    after["place_of_service"] = data.draw(places)
    for line in after["service_lines"]:
        line["units"] = data.draw(st.integers(1, 99))
        line["charge_cents"] = data.draw(st.integers(1, 10**9))
        line["place_of_service"] = data.draw(st.none() | places)
    assert sorted(prints(after).line_keys) == sorted(prints(before).line_keys)


# --- canonical JSON: the orjson fast path is RFC 8785 -----------------------------------------

any_text = st.text(st.characters(codec="utf-8"), max_size=40)
ascii_text = st.text(st.characters(codec="ascii"), max_size=40)
safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)


@st.composite
def wild_claim_data(draw: st.DrawFn) -> dict[str, Any]:
    """Structurally valid, otherwise anything: non-ASCII and control characters, extreme integers."""
    data = draw(claim_data())
    text = draw(st.sampled_from([any_text, ascii_text]))
    for name in ("claim_id", "payer_id", "member_id", "billing_npi", "place_of_service"):
        data[name] = draw(text)
    data["original_claim_id"] = draw(st.none() | text)
    data["diagnoses"] = draw(st.lists(text, max_size=3))
    data["total_charge_cents"] = draw(safe_ints)
    for line in data["service_lines"]:
        line["procedure_code"] = draw(text)
        line["modifiers"] = draw(st.lists(text, max_size=5))
        line["units"], line["charge_cents"] = draw(safe_ints), draw(safe_ints)
        line["diagnosis_pointers"] = draw(st.lists(safe_ints, max_size=3))
    return data


@SETTINGS
@given(wild_claim_data())
def test_canonical_document_is_rfc8785(data: dict[str, Any]) -> None:
    claim = parse_claim(data)
    assert canonical_document(claim) == rfc8785.dumps(claim.model_dump(mode="json"))


json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | ascii_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values)
def test_orjson_equals_rfc8785_on_the_domain_the_fast_path_takes(value: Any) -> None:
    """The proof behind the fast path: ASCII strings (every control character too), safe integers."""
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


def test_orjson_equals_rfc8785_for_every_ascii_character() -> None:
    for code in range(128):
        value = {chr(code): chr(code), "x" + chr(code): [chr(code) * 3]}
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value), code


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | safe_ints | any_text, lambda inner: st.lists(inner, max_size=4)))
def test_canonical_json_is_rfc8785_for_any_text(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)
