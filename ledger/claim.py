"""The claim model and its normal form: one claim, written down one way whoever sent it.

A :class:`Claim` is built from a mapping (JSON, an X12 or FHIR adapter) and normalised on
construction, so two submissions of the same claim give equal objects:

- codes and ids (NPIs, member id, ICD-10-CM, procedure codes, modifiers, place of service)
  are upper-cased with white space, dots and dashes removed: ``"e11.9"`` -> ``"E119"``,
  ``"123-456-7893"`` -> ``"1234567893"``;
- the payer id is trimmed and upper-cased but keeps its dashes (``"PAYER-ACME"`` is the
  consortium's registered name); the provider's claim id (CLM01) and ``original_claim_id``
  are only trimmed: they are the submitter's references, echoed back and looked up as given;
- modifiers are sorted; service lines are put in a canonical order (dates, procedure code,
  modifiers, units, charge, place of service, pointers); a line's place of service equal to
  the claim's is dropped (it is the default); diagnoses keep their order (the first is the
  principal one, and pointers index them);
- dates are ``datetime.date`` (ISO ``YYYY-MM-DD`` or ``YYYYMMDD`` strings are accepted);
  money and units are strict integers: a float, a bool or a numeric string is refused.

The model checks structure only (types, required fields, integers the canonical JSON can
hold). Whether the claim is clean (codes exist, NPI check digits, dates, totals) is
``ledger.validation``. :func:`parse_claim` turns structural errors into the ledger's own
:class:`~ledger.errors.ClaimValidationError`, one :class:`~ledger.errors.FieldProblem` each.

Field paths in every problem refer to the service lines in the order they were submitted:
:attr:`Claim.submitted_order` maps a canonical line back to its submitted position.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from ledger.errors import ClaimValidationError, FieldProblem

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer RFC 8785 JSON holds exactly (an IEEE double); larger ones are refused."""


class Frequency(StrEnum):
    """Claim frequency code (CLM05-3)."""

    ORIGINAL = "1"
    REPLACEMENT = "7"
    VOID = "8"


class Responsibility(StrEnum):
    """Payer responsibility sequence (SBR01)."""

    PRIMARY = "P"
    SECONDARY = "S"
    TERTIARY = "T"


SafeInt = Annotated[int, Strict(), Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
Text = Annotated[str, Strict()]
IsoDate = Annotated[date, Strict()]

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid")

_FREQUENCY_WORDS = {"ORIGINAL": "1", "REPLACEMENT": "7", "VOID": "8"}
_RESPONSIBILITY_WORDS = {"PRIMARY": "P", "SECONDARY": "S", "TERTIARY": "T"}

# The normalisers run on every claim: plain str methods, a fast path for values already clean.


def normalise_code(value: Any) -> Any:
    """Upper case without white space, dots or dashes; anything but text is left for the model to refuse."""
    if isinstance(value, str):
        if not value.isalnum():
            value = value.replace(" ", "").replace(".", "").replace("-", "")
            if not value.isalnum():
                value = "".join(value.split())
        return value.upper()
    return value


def _normalise_optional_code(value: Any) -> Any:
    value = normalise_code(value)
    return None if value == "" else value


def _normalise_date(value: Any) -> Any:
    # Only ISO dates (YYYY-MM-DD, YYYYMMDD) become dates; anything else stays as given and the strict
    # date type refuses it (pydantic's lax parsing would read an int as a Unix time).
    if isinstance(value, str):
        text = value.strip()
        size = len(text)
        if (size == 10 and text[4] == "-" and text[7] == "-") or (size == 8 and text.isdigit()):
            try:
                return date.fromisoformat(text)
            except ValueError:
                return value
    return value


def _normalise_word_code(value: Any, words: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        text = value.strip().upper()
        return words.get(text, text)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def normalise_line_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The normal form of one raw service line; :class:`ServiceLine` applies it on construction."""
    line = dict(data)
    get = line.get
    value = get("procedure_code")
    if value is not None:
        line["procedure_code"] = normalise_code(value)
    modifiers = get("modifiers")
    if isinstance(modifiers, (list, tuple)) and modifiers:
        modifiers = [normalise_code(m) for m in modifiers]
        if all(isinstance(m, str) for m in modifiers):
            modifiers.sort()
        line["modifiers"] = modifiers
    value = get("place_of_service")
    if value is not None:
        line["place_of_service"] = _normalise_optional_code(value)
    start = get("service_date_from")
    if start is not None:
        line["service_date_from"] = start = _normalise_date(start)
    end = get("service_date_to")
    if end is None:
        if start is not None:
            line["service_date_to"] = start
    else:
        line["service_date_to"] = _normalise_date(end)
    return line


def normalise_claim_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The normal form of a raw claim's own fields (lines are normalised by :class:`ServiceLine`)."""
    claim = dict(data)
    get = claim.get
    for name in ("billing_npi", "member_id", "place_of_service"):
        value = get(name)
        if value is not None:
            claim[name] = normalise_code(value)
    value = get("rendering_npi")
    if value is not None:
        claim["rendering_npi"] = _normalise_optional_code(value)
    value = get("claim_id")
    if isinstance(value, str):
        claim["claim_id"] = value.strip()
    value = get("original_claim_id")
    if isinstance(value, str):
        claim["original_claim_id"] = value.strip() or None
    value = get("payer_id")
    if isinstance(value, str):
        claim["payer_id"] = value.strip().upper()
    value = get("frequency")
    if value is not None:
        claim["frequency"] = _normalise_word_code(value, _FREQUENCY_WORDS)
    value = get("responsibility")
    if value is not None:
        claim["responsibility"] = _normalise_word_code(value, _RESPONSIBILITY_WORDS)
    value = get("patient_birth_date")
    if value is not None:
        claim["patient_birth_date"] = _normalise_date(value)
    diagnoses = get("diagnoses")
    if isinstance(diagnoses, (list, tuple)):
        claim["diagnoses"] = [normalise_code(code) for code in diagnoses]
    return claim


def _service_date_to_is_optional(schema: dict[str, Any]) -> None:
    # Required in the model (always a date once built), optional in what a client sends.
    schema["required"] = [name for name in schema.get("required", []) if name != "service_date_to"]


class ServiceLine(BaseModel):
    """One service line: what was done, when, how many, for how much, and for which diagnoses."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_service_date_to_is_optional)

    service_date_from: IsoDate
    service_date_to: IsoDate
    """Defaults to ``service_date_from`` when absent or null."""
    procedure_code: Text
    """CPT or HCPCS Level II."""
    modifiers: tuple[Text, ...] = ()
    units: SafeInt = 1
    charge_cents: SafeInt
    place_of_service: Text | None = None
    """Only when it differs from the claim's place of service."""
    diagnosis_pointers: tuple[SafeInt, ...]
    """1-based positions in the claim's ``diagnoses``."""

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        return normalise_line_data(data) if isinstance(data, Mapping) else data

    def sort_key(self) -> tuple[Any, ...]:
        """The canonical line order; total, so that the order never depends on how lines were sent."""
        return (
            self.service_date_from,
            self.service_date_to,
            self.procedure_code,
            self.modifiers,
            self.units,
            self.charge_cents,
            self.place_of_service or "",
            self.diagnosis_pointers,
        )


class Claim(BaseModel):
    """A professional or institutional claim in its normal form (see the module docstring)."""

    model_config = _MODEL_CONFIG

    claim_id: Text
    """The provider's claim id (CLM01), 1 to 38 characters."""
    frequency: Frequency = Frequency.ORIGINAL
    original_claim_id: Text | None = None
    """For a replacement or void: the CLM01 or ledger reference of the claim it replaces or voids."""
    billing_npi: Text
    rendering_npi: Text | None = None
    payer_id: Text
    """The payer organisation's identifier as registered in the consortium, e.g. ``PAYER-ACME``."""
    responsibility: Responsibility
    member_id: Text
    patient_birth_date: IsoDate
    place_of_service: Text
    diagnoses: tuple[Text, ...]
    """ICD-10-CM codes without dots, principal first."""
    service_lines: tuple[ServiceLine, ...]
    total_charge_cents: SafeInt

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        return normalise_claim_data(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _canonical_lines(self) -> Claim:
        lines = self.service_lines
        place = self.place_of_service
        for candidate in lines:
            if candidate.place_of_service == place:
                lines = tuple(
                    line.model_copy(update={"place_of_service": None}) if line.place_of_service == place else line
                    for line in lines
                )
                break
        if len(lines) > 1:
            order = sorted(range(len(lines)), key=lambda i: lines[i].sort_key())
            if order != list(range(len(lines))):
                lines = tuple(lines[i] for i in order)
                # Kept beside the fields, as a cached_property would be: not in equality, hash or dumps.
                self.__dict__["_submitted_order"] = tuple(order)
        if lines is not self.service_lines:
            object.__setattr__(self, "service_lines", lines)  # frozen model: set once, while it is built
        return self

    @property
    def submitted_order(self) -> tuple[int, ...]:
        """``submitted_order[i]``: the position line ``i`` (canonical order) had when the claim was submitted.

        Identity for a claim whose lines came in canonical order, or that was built from
        already-normal lines (e.g. a ``model_dump`` of another claim). ``model_copy(update=...)``
        skips validation, normal form included: build a new claim instead.
        """
        order: tuple[int, ...] | None = self.__dict__.get("_submitted_order")
        if order is None or len(order) != len(self.service_lines):
            return tuple(range(len(self.service_lines)))
        return order

    def line_place_of_service(self, line: ServiceLine) -> str:
        """The place of service that applies to ``line``: its own, or else the claim's."""
        return line.place_of_service or self.place_of_service


FIELD_LABELS: Mapping[str, str] = {
    "claim_id": "claim id (CLM01)",
    "frequency": "claim frequency code",
    "original_claim_id": "original claim id",
    "billing_npi": "billing provider NPI",
    "rendering_npi": "rendering provider NPI",
    "payer_id": "payer id",
    "responsibility": "payer responsibility sequence",
    "member_id": "member id",
    "patient_birth_date": "patient birth date",
    "place_of_service": "place of service",
    "diagnoses": "diagnosis codes",
    "service_lines": "service lines",
    "total_charge_cents": "total charge",
    "service_date_from": "date of service (from)",
    "service_date_to": "date of service (to)",
    "procedure_code": "procedure code",
    "modifiers": "modifiers",
    "units": "units",
    "charge_cents": "line charge",
    "diagnosis_pointers": "diagnosis pointers",
}
_MONEY_FIELDS = frozenset({"charge_cents", "total_charge_cents"})

PARSE_RULES: Mapping[str, str] = {
    "required": "a required field is missing",
    "unknown_field": "a field the claim does not have (often a misspelling)",
    "not_text": "the value must be text",
    "not_whole_number": "money is integer cents and units, pointers are whole numbers",
    "number_too_large": "the number is beyond what the ledger can hold exactly",
    "date_invalid": "not a real date in YYYY-MM-DD form",
    "frequency_invalid": "frequency must be 1 (original), 7 (replacement) or 8 (void)",
    "responsibility_invalid": "responsibility must be P, S or T (primary, secondary, tertiary)",
    "not_a_list": "the value must be a list",
    "not_an_object": "the value must be an object (a mapping of fields)",
    "json_invalid": "the document is not valid JSON",
}
"""Rule ids of structural problems (:func:`parse_claim`); clean-claim rules are in ``ledger.validation``."""


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("service_lines", 0, "charge_cents")`` -> ``"service_lines[0].charge_cents"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "claim"


def jsonable_value(value: Any) -> Any:
    """A problem's value as JSON can carry it (dates as ISO strings)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [jsonable_value(v) for v in value]
    return repr(value)


def _label(loc: tuple[str | int, ...]) -> str:
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return "the claim"
    if len(loc) == 2 and loc[0] == "service_lines" and isinstance(loc[1], int):
        return f"line {loc[1] + 1}"
    label = FIELD_LABELS.get(names[-1], names[-1])
    if len(loc) > 2 and loc[0] == "service_lines" and isinstance(loc[1], int):
        label = f"line {loc[1] + 1}: {label}"
    return label


def _structural_problem(error: Mapping[str, Any]) -> FieldProblem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind: str = error["type"]
    value = None if kind == "missing" else jsonable_value(error.get("input"))
    names = [part for part in loc if isinstance(part, str)]
    name = names[-1] if names else ""
    label = _label(loc)
    if kind == "missing":
        rule, message = "required", f"{label} is required"
    elif kind == "extra_forbidden":
        rule, message = "unknown_field", f"'{name}' is not a claim field: check its spelling"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        rule = "not_whole_number"
        if name in _MONEY_FIELDS:
            message = f"{label} must be a whole number of cents (12.50 dollars is 1250), not {value!r}"
        else:
            message = f"{label} must be a whole number, not {value!r}"
    elif kind in ("less_than_equal", "greater_than_equal"):
        rule, message = "number_too_large", f"{label} {value} is too large: at most {MAX_SAFE_INTEGER}"
    elif kind == "string_type":
        rule, message = "not_text", f"{label} must be text, not {value!r}"
    elif kind in ("date_type", "date_parsing", "date_from_datetime_inexact"):
        rule, message = "date_invalid", f"{label} {value!r} is not a real date: write it as YYYY-MM-DD"
    elif kind == "enum" and name == "frequency":
        rule = "frequency_invalid"
        message = f"claim frequency {value!r} must be 1 (original), 7 (replacement) or 8 (void)"
    elif kind == "enum" and name == "responsibility":
        rule = "responsibility_invalid"
        message = f"responsibility {value!r} must be P, S or T (primary, secondary, tertiary)"
    elif kind in ("tuple_type", "list_type"):
        rule, message = "not_a_list", f"{label} must be a list, not {value!r}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        rule, message = "not_an_object", f"{label} must be an object of fields, not {value!r}"
    elif kind == "json_invalid":
        rule, message = "json_invalid", f"the claim is not valid JSON: {error.get('msg', '')}"
    else:
        rule, message = kind, f"{label}: {error.get('msg', 'invalid value')}"
    return FieldProblem(field=field_path(loc), value=value, rule=rule, message=message)


def problems_from_validation_error(exc: ValidationError) -> list[FieldProblem]:
    """One :class:`FieldProblem` per pydantic error, with the ledger's rule ids and plain messages."""
    errors = exc.errors()
    # A line without service_date_from has no default for service_date_to either: name only the first.
    missing_from = {tuple(e["loc"][:-1]) for e in errors if e["loc"] and e["loc"][-1] == "service_date_from"}
    return [
        _structural_problem(e)
        for e in errors
        if not (
            e["type"] == "missing" and e["loc"][-1:] == ("service_date_to",) and tuple(e["loc"][:-1]) in missing_from
        )
    ]


def _claim_ref(data: Any) -> str | None:
    claim_id = data.get("claim_id") if isinstance(data, Mapping) else None
    return claim_id.strip() if isinstance(claim_id, str) and claim_id.strip() else None


def parse_claim(data: Mapping[str, Any]) -> Claim:
    """Build a :class:`Claim` from a mapping; structural problems raise :class:`ClaimValidationError`."""
    try:
        return Claim.model_validate(data)
    except ValidationError as exc:
        raise ClaimValidationError(problems_from_validation_error(exc), claim_ref=_claim_ref(data)) from None


def parse_claim_json(document: str | bytes) -> Claim:
    """Like :func:`parse_claim`, from a JSON document."""
    try:
        return Claim.model_validate_json(document)
    except ValidationError as exc:
        raise ClaimValidationError(problems_from_validation_error(exc)) from None
