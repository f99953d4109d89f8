"""FHIR R4 ``Claim`` in, ``ClaimResponse`` out: the ledger's claims as US FHIR exchanges write them.

- :func:`read_fhir_claim`: a ``Claim`` resource, or a ``Bundle`` (``batch`` or ``collection``)
  of them, as :class:`~ledger.formats.ImportedClaim` items (the mapping
  :func:`ledger.claim.parse_claim` takes, or the problems that kept a claim from mapping);
- :func:`write_fhir_claim` / :func:`write_fhir_bundle`: a claim mapping as a ``Claim`` (and
  back: ``read_fhir_claim(write_fhir_claim(c))`` gives a claim equal to ``c``);
- :func:`claim_response`: a ledger record (``ClaimLedgerService.claim()``) and its history as
  a ``ClaimResponse``: where the claim is, what was allowed and paid, and why (CARC).

Which FHIR models
    FHIR R4 (4.0.1) is the release US payers and providers exchange (CARIN Blue Button, Da Vinci,
    US Core all build on it). ``fhir.resources`` 8 is the release that runs on pydantic v2 (this
    project's pydantic); its default package is R5, whose claims are not R4's (R5 adds
    ``Claim.event``, ``traceNumber``, ``patientPaid``, renames ``careTeam.qualification`` to
    ``specialty`` and ``adjudication.value`` to ``quantity``), so this module uses
    ``fhir.resources.R4B`` on purpose. R4B (4.3.0) is the R4 line's last release and the one
    ``fhir.resources`` 8 still ships; R4 itself only exists in ``fhir.resources`` 6.x, on
    pydantic v1, which cannot live beside pydantic v2. HL7 confines R4B's changes to the
    medication definition, evidence-based medicine and subscription resources and keeps the
    rest compatible with R4 (hl7.org/fhir/R4B/r4b-explanation.html): ``Claim`` and
    ``ClaimResponse`` are the same elements in both, so an R4 ``Claim`` validates as R4B and
    the ``ClaimResponse`` written here is valid R4. The models check structure (elements,
    types, cardinality, choice types); they do not enforce required value sets
    (``Claim.status`` ``"weird"`` passes), so the codes this module depends on are checked
    here.

Reading: what is refused as a whole (:class:`~ledger.errors.FormatError`, nothing of it is read)
    ``not_utf8`` bytes that are not UTF-8 (a leading byte-order mark is allowed);
    ``json_invalid`` not one JSON object (``NaN`` and ``Infinity`` included);
    ``fhir_unsupported`` neither a ``Claim`` nor a ``Bundle`` of type ``batch`` or
    ``collection`` whose every entry is a ``Claim`` (an empty bundle too);
    ``fhir_invalid`` the R4B model rejects the ``Claim`` (or the bundle's envelope). The
    error's :class:`~ledger.formats.SourceRef` names the element path (pydantic's ``loc`` as
    FHIRPath from the resource: ``Claim.item[0].net.value``, ``Bundle.type``) in ``segment``,
    and ``position`` is the entry's 1-based ordinal in the bundle (``Bundle.entry[2]`` is
    position 3; 0 for a lone ``Claim``), as in each ``ImportedClaim.source`` (segment
    ``Bundle.entry[2].resource``, or ``Claim``; ``control`` holds ``Bundle.id`` and
    ``Bundle.identifier`` when present). One invalid entry refuses the bundle: it is not the
    document its sender meant to send.

Reading: what only one claim falls with (``ImportedClaim.data`` ``None``, ``problems`` listed)
    A ``Claim`` valid as FHIR that does not map onto the ledger's claim model: each
    :class:`~ledger.errors.FieldProblem` names the FHIR element path from the ``Claim``
    (``Claim.item[1].net.value``; indices from 0, as FHIRPath counts), the value, a rule id of
    :data:`FHIR_RULES` and a message a billing clerk can act on. The other claims of a bundle
    still map. Whether a mapped claim is clean (NPI check digits, codes in the code sets,
    dates, totals) is :mod:`ledger.validation`, afterwards, exactly as for a claim posted as
    JSON.

Mapping (read, and written the same way)
    ``claim_id``
        ``Claim.identifier``: the one typed ``pat`` (CARIN ``C4BBIdentifierType``, patient
        account number: the X12 CLM01 patient control number), else the first with a value.
    ``frequency``, ``original_claim_id``
        ``Claim.status`` ``active`` without a ``Claim.related`` of relationship ``prior`` is an
        original (1); ``active`` with one is a replacement (7); ``cancelled`` is a void (8).
        R4 has no element for the X12 frequency code: this is what ``status`` and ``related``
        mean (``prior``: "a prior claim instance for the same intended suite of services").
        The original is the ``prior`` entry's ``claim.identifier.value`` (or, failing that,
        its ``reference.value``, the X12 REF*F8 payer claim control number); the ledger names
        claims as ``0x<exact key>:<version>`` under the system :data:`LEDGER_CLAIM_SYSTEM`.
        ``draft`` and ``entered-in-error`` claims are not for payment and do not map.
    ``billing_npi``
        ``Claim.provider``: its identifier of system :data:`NPI_SYSTEM`, or that of the
        contained ``Organization``, ``Practitioner`` or ``PractitionerRole`` it refers to.
    ``rendering_npi``
        ``Claim.careTeam`` member of role ``performing`` (CARIN ``C4BBClaimCareTeamRole``: "the
        performing or rendering provider"), else of role ``primary`` (R4
        ``claimcareteamrole``); none is a claim without a rendering provider. The ledger holds
        one rendering provider per claim: two different ones do not map.
    ``payer_id``
        ``Claim.insurer``: its identifier (or the contained ``Organization``'s) of system
        :data:`ORGANISATION_SYSTEM`, or without a system: the consortium name, e.g.
        ``PAYER-ACME``; without ``Claim.insurer``, the focal ``Coverage.payor``. A payer id of
        any other system (a NAIC code, a clearinghouse id) does not map: the ledger routes by
        consortium name.
    ``responsibility``
        the one ``Claim.insurance`` with ``focal`` true: its ``sequence`` 1, 2 or 3 is the
        primary, secondary or tertiary payer (R4: ``sequence`` "conveys coordination of
        benefit order"; ``focal`` is "the coverage to be used for adjudication").
    ``member_id``
        the focal insurance's contained ``Coverage``: its identifier typed ``MB`` (HL7 v2
        table 0203 member number, CARIN's ``memberid``), else its ``subscriberId``; failing a
        contained coverage, the contained ``Patient``'s or ``Claim.patient``'s identifier typed
        ``MB``. The ledger's member id is the one the payer knows the patient by (X12 2010BA
        NM109); written as both the ``MB`` identifier and ``subscriberId``.
    ``patient_birth_date``
        the contained ``Patient`` ``Claim.patient`` refers to: its ``birthDate``, a full date.
    ``place_of_service``
        ``Claim.facility``, a contained ``Location`` whose ``type`` is coded in
        :data:`POS_SYSTEM` (CMS place of service: R4 has no claim-level place of service, X12
        does, CLM05-1); without one (or when it is not a contained, typed ``Location``), the
        first item's place of service.
    ``diagnoses``
        ``Claim.diagnosis`` in ``sequence`` order, the ``diagnosisCodeableConcept`` coding of
        :data:`ICD10CM_SYSTEM` (written with its dot, ``E11.9``, as FHIR writes ICD-10-CM;
        the model drops it). A ``diagnosisReference`` to a ``Condition`` does not map.
    ``service_lines``
        ``Claim.item`` in document order: ``servicedDate`` or ``servicedPeriod`` (start, end;
        the date as written, a time of day is dropped), ``productOrService`` coded in
        :data:`CPT_SYSTEM` or :data:`HCPCS_SYSTEM`, each ``modifier`` coded in either (CPT's
        are digits, HCPCS Level II's letters), ``locationCodeableConcept`` in
        :data:`POS_SYSTEM` (CARIN's line place of service), ``quantity.value`` a whole number
        (1 when absent), ``net`` in USD with at most cents (``12.340`` is 1234 cents,
        ``12.345`` does not map), ``diagnosisSequence`` turned into 1-based positions in the
        diagnosis list. ``item.detail`` (packages of sub-lines) does not map.
    ``total_charge_cents``
        ``Claim.total`` (USD, cents); when absent, the sum of the lines (R4 makes it optional).

    Written too, for a valid resource: ``type`` professional (the ledger's claim is the 837P's
    content: a place of service, CPT/HCPCS lines), ``use`` claim, ``priority`` normal,
    ``billablePeriod`` (first to last date of service), ``created`` (given, or today in UTC).
    The contained ``Patient`` has no name: the ledger never holds one, and inventing one would
    put made-up demographics into a claim document; its ``name`` is the data-absent-reason
    ``unknown`` (US Core's way to say so). Money is written as JSON numbers (floats), exact
    for amounts below $10 trillion; anything larger is refused rather than rounded. Read back,
    numbers from JSON text are decimals, and floats in a mapping are read by their shortest
    ``repr`` (what a JSON parser gave), so no amount is ever rounded.

ClaimResponse (:func:`claim_response`)
    ``type`` professional and ``use`` claim, as the claims written here; ``status`` ``active``,
    ``cancelled`` for a voided or replaced claim; ``outcome`` ``queued``
    while submitted or accepted, ``complete`` once adjudicated, paid, voided or replaced,
    ``error`` when the payer rejected it (277CA A3, with ``error.code`` in X12 claim status
    codes); ``disposition`` says the same in words. ``identifier`` and ``request.identifier``:
    the ledger ref under :data:`LEDGER_CLAIM_SYSTEM` (typed ``uc``, CARIN's unique claim id;
    ``Reference.identifier`` holds one identifier, so the provider's claim id, when the
    caller gives it, is the response's second identifier, typed ``pat``, as an 835 echoes
    CLP01). ``insurer`` and ``requestor`` are the payer and provider organisations by
    consortium name (or, without names, by on-chain index under
    :data:`ORGANISATION_INDEX_SYSTEM`). ``total``: ``submitted`` (the charge), ``eligible``
    (allowed, once adjudicated), ``benefit`` (paid) in USD, codes of HL7's ``adjudication``
    system as CARIN uses them. ``adjudication``: one header entry per CARC of the latest
    adjudication, category CARIN ``adjustmentreason``, ``reason`` coded in :data:`CARC_SYSTEM`
    with the group code kept in ``text`` (``CO45``). ``payment`` when paid: type ``complete``
    (the ledger records one payment per claim), amount, date (the block's UTC date),
    identifier the 835 / EFT remittance hash. ``processNote`` when the ledger flagged the claim
    a suspect duplicate. R4 requires ``patient``, and the record holds no patient: with the
    member id the caller already holds, an identifier-only reference typed ``MB``; without,
    a reference carrying only the data-absent-reason ``masked`` (withheld for privacy). CARC
    codes, the rejection reason and the remittance hash come from the claim's history
    (``ClaimLedgerService.history()``); without it they are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim as FhirClaim
from fhir.resources.R4B.claim import ClaimItem
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.money import Money
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from ledger.chain import code_text
from ledger.claim import Claim, Frequency, Responsibility, parse_claim
from ledger.errors import FieldProblem, FormatError
from ledger.formats import ImportedClaim, SourceRef

__all__ = [
    "FHIR_RULES",
    "FORMAT_RULES",
    "claim_response",
    "read_fhir_claim",
    "write_fhir_bundle",
    "write_fhir_claim",
]

# Code and identifier systems: the URLs the US FHIR guides use.
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
CLAIM_STATUS_SYSTEM = "https://x12.org/codes/claim-status-codes"
CLAIM_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-type"
PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/processpriority"
RELATED_CLAIM_SYSTEM = "http://terminology.hl7.org/CodeSystem/related-claim-relationship"
CARE_TEAM_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
C4BB_CARE_TEAM_ROLE_SYSTEM = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole"
C4BB_IDENTIFIER_TYPE_SYSTEM = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType"
C4BB_ADJUDICATION_DISCRIMINATOR_SYSTEM = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
V2_IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"
PAYMENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
DATA_ABSENT_REASON_URL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

LEDGER_CLAIM_SYSTEM = "urn:claimledger:claim"
"""A claim on the ledger: ``0x<exact key>:<version>`` (what ``original_claim_id`` names)."""
ORGANISATION_SYSTEM = "urn:claimledger:organisation"
"""A consortium organisation by its registered name, e.g. ``PAYER-ACME``."""
ORGANISATION_INDEX_SYSTEM = "urn:claimledger:organisation-index"
"""A consortium organisation by its on-chain index (when the caller gives no names)."""
REMITTANCE_SYSTEM = "urn:claimledger:remittance-hash"
"""The hash of the 835 or EFT trace a payment was recorded with."""

CURRENCY = "USD"
CODE_SYSTEMS = {
    CPT_SYSTEM: "CPT",
    HCPCS_SYSTEM: "HCPCS",
    ICD10CM_SYSTEM: "ICD-10-CM",
    POS_SYSTEM: "CMS place of service",
}
_PROCEDURE_SYSTEMS = (CPT_SYSTEM, HCPCS_SYSTEM)
_SEQUENCE_RESPONSIBILITY = {1: "P", 2: "S", 3: "T"}
_RESPONSIBILITY_SEQUENCE = {Responsibility.PRIMARY: 1, Responsibility.SECONDARY: 2, Responsibility.TERTIARY: 3}
_CLAIM_TYPES = ("professional", "institutional")
_CARC_GROUPS = ("CO", "PR", "OA", "PI", "CR")
_EXACT_FLOAT_CENTS = 10**15  # below this, cents / 100 as a float reads back as the same decimal
_BOM = "\ufeff"

FORMAT_RULES: Mapping[str, str] = {
    "not_utf8": "a FHIR JSON document is UTF-8 text",
    "json_invalid": "the document is one JSON object",
    "fhir_unsupported": "the document is a FHIR Claim, or a Bundle (batch or collection) of Claims",
    "fhir_invalid": "the resource is valid FHIR R4 (checked with the R4B models)",
}
"""Rule ids of :class:`~ledger.errors.FormatError` refusals by :func:`read_fhir_claim`."""

FHIR_RULES: Mapping[str, str] = {
    "claim_id_missing": "Claim.identifier holds the provider's claim id (patient control number)",
    "claim_status_unsupported": "a claim for payment is active (original, replacement) or cancelled (void)",
    "claim_use_unsupported": "Claim.use is claim (not a preauthorization or predetermination)",
    "claim_type_unsupported": "Claim.type is professional or institutional",
    "related_claim_ambiguous": "a claim names at most one prior claim",
    "original_claim_missing": "a prior related claim names the claim by identifier",
    "npi_missing": "the billing provider has an NPI (system http://hl7.org/fhir/sid/us-npi)",
    "rendering_npi_missing": "the rendering (performing) provider has an NPI",
    "rendering_provider_ambiguous": "a claim has one rendering provider",
    "payer_missing": "Claim.insurer names the payer by its consortium id",
    "identifier_system_unknown": "a payer is named by its consortium id (system urn:claimledger:organisation)",
    "insurance_focal": "exactly one Claim.insurance is focal: the coverage this claim bills",
    "responsibility_sequence": "the focal insurance's sequence is 1, 2 or 3 (primary, secondary, tertiary)",
    "member_id_missing": "the focal coverage names the member id",
    "patient_not_contained": "Claim.patient refers to a Patient contained in the claim",
    "birth_date_missing": "the patient has a birth date",
    "date_partial": "a date is a full date (YYYY-MM-DD)",
    "place_of_service_missing": "the claim has a place of service (Claim.facility or the lines)",
    "code_system_unknown": "a code is from a code system the ledger reads (CPT, HCPCS, ICD-10-CM, CMS POS)",
    "code_missing": "a coded element has a code",
    "diagnosis_reference_unsupported": "a diagnosis is an ICD-10-CM code, not a reference to a Condition",
    "diagnosis_sequence_duplicate": "each diagnosis has its own sequence number",
    "diagnosis_sequence_unknown": "an item's diagnosisSequence is the sequence of a listed diagnosis",
    "items_missing": "the claim has at least one item",
    "item_detail_unsupported": "an item is one service line, without detail sub-lines",
    "location_unsupported": "a line's place of service is a locationCodeableConcept",
    "service_date_missing": "an item has servicedDate or servicedPeriod.start",
    "quantity_not_whole": "an item's quantity is a whole number of units",
    "charge_missing": "an item has its charge in net",
    "money_precision": "an amount has at most two decimals (whole cents)",
    "currency_not_usd": "amounts are in US dollars (USD)",
}
"""Rule ids of the problems that keep a valid FHIR ``Claim`` from mapping onto the ledger's claim."""


# ---------------------------------------------------------------- reading


def read_fhir_claim(document: bytes | str | Mapping[str, Any], *, file: str | None = None) -> list[ImportedClaim]:
    """The claims of a FHIR ``Claim`` or ``Bundle`` of claims, one :class:`ImportedClaim` each, in order.

    ``document`` is the JSON text (bytes or str) or the parsed JSON object; ``file`` names it
    in every :class:`SourceRef`. Raises :class:`FormatError` for what the module docstring
    lists; a claim that is valid FHIR but does not map comes back with ``data`` ``None`` and
    its problems.
    """
    resource = _load(document, file)
    kind = resource.get("resourceType")
    if kind == "Claim":
        model = _validate_claim(resource, file, position=0)
        return [_map_claim(model, SourceRef(file, "Claim", 0))]
    if kind == "Bundle":
        return _read_bundle(resource, file)
    raise FormatError(
        f"the document is a FHIR {kind!r} resource, not a Claim: send a Claim, or a Bundle of Claims"
        if isinstance(kind, str)
        else "the document has no FHIR resourceType: send a Claim, or a Bundle of Claims",
        rule="fhir_unsupported",
        source=SourceRef(file, "resourceType", 0),
    )


def _load(document: bytes | str | Mapping[str, Any], file: str | None) -> dict[str, Any]:
    if isinstance(document, Mapping):
        return dict(document)
    if isinstance(document, (bytes, bytearray, memoryview)):
        try:
            text = bytes(document).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(
                f"the document is not UTF-8 text (byte {exc.start} is 0x{bytes(document)[exc.start]:02x}): "
                "save it as UTF-8 and send it again",
                rule="not_utf8",
                source=SourceRef(file, "document", 0),
            ) from None
    else:
        text = document
    try:
        value = json.loads(text.removeprefix(_BOM), parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise FormatError(
            f"the document is not valid JSON: {exc}", rule="json_invalid", source=SourceRef(file, "document", 0)
        ) from None
    if not isinstance(value, dict):
        raise FormatError(
            f"the document is a JSON {type(value).__name__}, not an object: send one FHIR resource",
            rule="json_invalid",
            source=SourceRef(file, "document", 0),
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_bundle(bundle: dict[str, Any], file: str | None) -> list[ImportedClaim]:
    entries = bundle.get("entry")
    if bundle.get("type") not in ("batch", "collection"):
        raise FormatError(
            f"a Bundle of type {bundle.get('type')!r} is not read here: send a batch or collection of Claims",
            rule="fhir_unsupported",
            source=SourceRef(file, "Bundle.type", 0),
        )
    if entries is None or entries == []:
        raise FormatError(
            "the Bundle holds no Claim", rule="fhir_unsupported", source=SourceRef(file, "Bundle.entry", 0)
        )
    if not isinstance(entries, list):
        raise FormatError(
            "Bundle.entry must be a list of entries", rule="fhir_invalid", source=SourceRef(file, "Bundle.entry", 0)
        )
    resources: list[dict[str, Any]] = []
    envelope = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise FormatError(
                f"{where} holds no resource: every entry of the bundle is a Claim",
                rule="fhir_invalid",
                source=SourceRef(file, f"{where}.resource", index + 1),
            )
        kind = resource.get("resourceType")
        if kind != "Claim":
            raise FormatError(
                f"{where} is a {kind!r}, not a Claim: a bundle sent here holds Claims only",
                rule="fhir_unsupported",
                source=SourceRef(file, f"{where}.resource.resourceType", index + 1),
            )
        resources.append(resource)
        envelope.append({k: v for k, v in entry.items() if k != "resource"})
    try:  # the envelope without the claims, which are validated (and placed) one by one below
        Bundle.model_validate({**bundle, "entry": envelope})
    except ValidationError as exc:
        loc, message = _first_error(exc)
        at = loc[1] if len(loc) > 1 and loc[0] == "entry" and isinstance(loc[1], int) else None
        raise FormatError(
            f"the Bundle is not valid FHIR R4: {_fhir_path('Bundle', loc)}: {message}",
            rule="fhir_invalid",
            source=SourceRef(file, _fhir_path("Bundle", loc), 0 if at is None else at + 1),
        ) from None
    control = {
        name: str(value)
        for name, value in (("Bundle.id", bundle.get("id")), ("Bundle.identifier", _bundle_identifier(bundle)))
        if value
    }
    # Each claim mapped as soon as it is validated: 1,000 live models cost the garbage collector 15%.
    return [
        _map_claim(
            _validate_claim(resource, file, position=i + 1),
            SourceRef(file, f"Bundle.entry[{i}].resource", i + 1, dict(control)),
        )
        for i, resource in enumerate(resources)
    ]


def _bundle_identifier(bundle: Mapping[str, Any]) -> Any:
    identifier = bundle.get("identifier")
    return identifier.get("value") if isinstance(identifier, dict) else None


def _validate_claim(resource: dict[str, Any], file: str | None, *, position: int) -> FhirClaim:
    where = f" (bundle entry {position})" if position else ""
    contained = resource.get("contained")
    if isinstance(contained, list):
        # An unknown resourceType in contained makes the model raise a bare KeyError: name it first.
        for index, item in enumerate(contained):
            kind = item.get("resourceType") if isinstance(item, dict) else None
            if isinstance(kind, str) and not _known_resource(kind):
                path = f"Claim.contained[{index}].resourceType"
                raise FormatError(
                    f"the Claim{where} is not valid FHIR R4: {path}: {kind!r} is not a FHIR resource type",
                    rule="fhir_invalid",
                    source=SourceRef(file, path, position),
                )
    try:
        return FhirClaim.model_validate(resource)
    except ValidationError as exc:
        loc, message = _first_error(exc)
        path = _fhir_path("Claim", loc)
        more = len(exc.errors()) - 1
        also = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        raise FormatError(
            f"the Claim{where} is not valid FHIR R4: {path}: {message}{also}",
            rule="fhir_invalid",
            source=SourceRef(file, path, position),
        ) from None
    except (KeyError, TypeError, ValueError) as exc:  # the model's own checks, outside pydantic's errors
        raise FormatError(
            f"the Claim{where} is not valid FHIR R4: {exc}",
            rule="fhir_invalid",
            source=SourceRef(file, "Claim", position),
        ) from None


def _known_resource(kind: str) -> bool:
    try:
        get_fhir_model_class(kind)
    except (ValueError, KeyError):
        return False
    return True


def _first_error(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    error = exc.errors()[0]
    message = " ".join(str(error.get("msg", "invalid")).split()).removeprefix("Value error, ")
    return tuple(error["loc"]), message


def _fhir_path(root: str, loc: Iterable[str | int]) -> str:
    """``("item", 0, "net", "value")`` -> ``Claim.item[0].net.value`` (``x__ext`` is FHIR's ``_x``)."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part.endswith("__ext"):
            path += f"._{part.removesuffix('__ext')}"
        else:
            path += f".{part}"
    return path


# ---------------------------------------------------------------- mapping a Claim


@dataclass
class _Mapper:
    """Maps one validated ``Claim`` onto a claim mapping, listing every problem on the way."""

    claim: FhirClaim
    problems: list[FieldProblem] = field(default_factory=list)
    contained: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index, resource in enumerate(self.claim.contained or []):
            if resource.id:
                self.contained[str(resource.id)] = (index, resource)

    def problem(self, path: str, value: Any, rule: str, message: str) -> None:
        self.problems.append(FieldProblem(path, _jsonable(value), rule, message))

    def resolve(self, ref: Reference | None) -> tuple[int, Any] | None:
        """The contained resource a local reference (``#id``) points at, with its index."""
        if ref is None or not ref.reference or not str(ref.reference).startswith("#"):
            return None
        return self.contained.get(str(ref.reference)[1:])

    # -------------------------------------------------------------- the claim's own fields

    def map(self) -> dict[str, Any]:
        claim = self.claim
        self.check_kind()
        frequency, original = self.frequency()
        data: dict[str, Any] = {
            "claim_id": self.claim_id(),
            "frequency": frequency,
            "original_claim_id": original,
            "billing_npi": self.billing_npi(),
            "rendering_npi": self.rendering_npi(),
        }
        focal = self.focal_insurance()
        data["payer_id"] = self.payer_id(focal)
        data["responsibility"] = self.responsibility(focal)
        data["member_id"] = self.member_id(focal)
        data["patient_birth_date"] = self.birth_date()
        positions = self.diagnosis_positions()
        data["diagnoses"] = self.diagnoses()
        lines = [self.line(index, item, positions) for index, item in enumerate(claim.item or [])]
        if not lines:
            self.problem(
                "Claim.item", None, "items_missing", "the claim has no items: list each service as a Claim.item"
            )
        data["place_of_service"] = self.place_of_service(lines)
        data["service_lines"] = lines
        data["total_charge_cents"] = self.total(lines)
        return data

    def check_kind(self) -> None:
        claim = self.claim
        if claim.use != "claim":
            message = f"a {claim.use} is not a claim for payment: only Claim.use 'claim' is recorded"
            self.problem("Claim.use", claim.use, "claim_use_unsupported", message)
        kinds = [c.code for c in claim.type.coding or [] if c.system in (None, CLAIM_TYPE_SYSTEM)]
        if not any(kind in _CLAIM_TYPES for kind in kinds):
            shown = kinds[0] if kinds else claim.type.text
            message = f"claim type {shown!r} is not recorded: the ledger takes professional and institutional claims"
            self.problem("Claim.type", shown, "claim_type_unsupported", message)

    def claim_id(self) -> str | None:
        identifiers = [i for i in self.claim.identifier or [] if i.value]
        for identifier in identifiers:
            if _has_code(identifier.type, C4BB_IDENTIFIER_TYPE_SYSTEM, "pat"):
                return str(identifier.value)
        if identifiers:
            return str(identifiers[0].value)
        message = "the claim has no claim id: put the provider's claim id (patient control number) in Claim.identifier"
        self.problem("Claim.identifier", None, "claim_id_missing", message)
        return None

    def frequency(self) -> tuple[str | None, str | None]:
        priors = [
            (index, related)
            for index, related in enumerate(self.claim.related or [])
            if _has_code(related.relationship, RELATED_CLAIM_SYSTEM, "prior")
        ]
        original: str | None = None
        if len(priors) > 1:
            message = (
                f"the claim names {len(priors)} prior claims: a replacement or void names the one claim it changes"
            )
            self.problem("Claim.related", len(priors), "related_claim_ambiguous", message)
        elif priors:
            index, related = priors[0]
            if related.claim is not None and related.claim.identifier is not None and related.claim.identifier.value:
                original = str(related.claim.identifier.value)
            elif related.reference is not None and related.reference.value:
                original = str(related.reference.value)
            else:
                message = (
                    "the prior claim is not named: give the claim it replaces or voids in "
                    f"Claim.related[{index}].claim.identifier (its ledger reference 0x<key>:<version>)"
                )
                self.problem(f"Claim.related[{index}].claim.identifier", None, "original_claim_missing", message)
        status = self.claim.status
        if status == "cancelled":
            return Frequency.VOID.value, original
        if status == "active":
            return (Frequency.REPLACEMENT.value if priors else Frequency.ORIGINAL.value), original
        message = (
            f"a claim with status {status!r} is not sent for payment: use 'active' for an original or a "
            "replacement, 'cancelled' for a void"
        )
        self.problem("Claim.status", status, "claim_status_unsupported", message)
        return None, original

    def npi(self, ref: Reference | None) -> str | None:
        """The NPI on a reference, or on the contained Organization/Practitioner(Role) it points at."""
        if ref is None:
            return None
        if ref.identifier is not None and ref.identifier.system == NPI_SYSTEM and ref.identifier.value:
            return str(ref.identifier.value)
        target = self.resolve(ref)
        if target is not None and isinstance(target[1], (Organization, Practitioner, PractitionerRole)):
            for identifier in target[1].identifier or []:
                if identifier.system == NPI_SYSTEM and identifier.value:
                    return str(identifier.value)
        return None

    def billing_npi(self) -> str | None:
        npi = self.npi(self.claim.provider)
        if npi is None:
            message = (
                "the billing provider has no NPI: give Claim.provider an identifier of system "
                f"{NPI_SYSTEM}, or refer it to a contained Organization that has one"
            )
            self.problem("Claim.provider", None, "npi_missing", message)
        return npi

    def rendering_npi(self) -> str | None:
        team = list(enumerate(self.claim.careTeam or []))
        chosen = [(i, m) for i, m in team if _has_code(m.role, C4BB_CARE_TEAM_ROLE_SYSTEM, "performing")]
        if not chosen:
            chosen = [(i, m) for i, m in team if _has_code(m.role, CARE_TEAM_ROLE_SYSTEM, "primary")]
        found: dict[str, int] = {}
        for index, member in chosen:
            npi = self.npi(member.provider)
            if npi is None:
                message = f"care team member {member.sequence} (the rendering provider) has no NPI: add its NPI"
                self.problem(f"Claim.careTeam[{index}].provider", None, "rendering_npi_missing", message)
            else:
                found.setdefault(npi, index)
        if len(found) > 1:
            index = list(found.values())[1]
            message = "the claim names two rendering providers: the ledger records one per claim, send one claim each"
            self.problem(f"Claim.careTeam[{index}].provider", list(found)[1], "rendering_provider_ambiguous", message)
        return next(iter(found), None)

    def focal_insurance(self) -> int | None:
        focal = [index for index, insurance in enumerate(self.claim.insurance) if insurance.focal]
        if len(focal) == 1:
            return focal[0]
        message = (
            f"{len(focal) or 'no'} insurance entries are focal: mark exactly one (focal true), the coverage this "
            "claim bills"
        )
        self.problem("Claim.insurance", len(focal), "insurance_focal", message)
        return None

    def coverage(self, focal: int | None) -> tuple[int, Coverage] | None:
        if focal is None:
            return None
        target = self.resolve(self.claim.insurance[focal].coverage)
        if target is not None and isinstance(target[1], Coverage):
            return target[0], target[1]
        return None

    def payer_id(self, focal: int | None) -> str | None:
        insurer = self.claim.insurer
        path = "Claim.insurer"
        candidates: list[tuple[str, Identifier]] = []
        if insurer is not None:
            if insurer.identifier is not None:
                candidates = [(f"{path}.identifier", insurer.identifier)]
            else:
                target = self.resolve(insurer)
                if target is not None and isinstance(target[1], Organization):
                    where = f"Claim.contained[{target[0]}].identifier"
                    candidates = [(f"{where}[{i}]", ident) for i, ident in enumerate(target[1].identifier or [])]
        else:
            coverage = self.coverage(focal)
            if coverage is not None and coverage[1].payor:
                path = f"Claim.contained[{coverage[0]}].payor[0]"
                payor = coverage[1].payor[0]
                candidates = [(f"{path}.identifier", payor.identifier)] if payor.identifier is not None else []
        for system in (ORGANISATION_SYSTEM, None):
            for _, identifier in candidates:
                if identifier.system == system and identifier.value:
                    return str(identifier.value).strip()
        foreign = next(((where, i) for where, i in candidates if i.value), None)
        if foreign is not None:
            where, identifier = foreign
            message = (
                f"the payer is named by {identifier.value!r} of system {identifier.system}: name it by its consortium "
                f"id (e.g. PAYER-ACME) with system {ORGANISATION_SYSTEM}"
            )
            self.problem(f"{where}.system", identifier.system, "identifier_system_unknown", message)
        else:
            message = f"the payer is not named: give Claim.insurer an identifier (system {ORGANISATION_SYSTEM})"
            self.problem(path, None, "payer_missing", message)
        return None

    def responsibility(self, focal: int | None) -> str | None:
        if focal is None:
            return None
        sequence = self.claim.insurance[focal].sequence
        responsibility = _SEQUENCE_RESPONSIBILITY.get(int(sequence)) if sequence is not None else None
        if responsibility is None:
            message = f"insurance sequence {sequence} is not a payer order: 1 primary, 2 secondary, 3 tertiary"
            self.problem(f"Claim.insurance[{focal}].sequence", sequence, "responsibility_sequence", message)
        return responsibility

    def member_id(self, focal: int | None) -> str | None:
        coverage = self.coverage(focal)
        if coverage is not None:
            member = _typed_identifier(coverage[1].identifier, "MB") or coverage[1].subscriberId
            if member:
                return str(member)
        patient = self.resolve(self.claim.patient)
        if patient is not None and isinstance(patient[1], Patient):
            member = _typed_identifier(patient[1].identifier, "MB")
            if member:
                return member
        reference = self.claim.patient.identifier
        if reference is not None and _has_code(reference.type, V2_IDENTIFIER_TYPE_SYSTEM, "MB") and reference.value:
            return str(reference.value)
        if focal is not None:  # else the focal insurance is what is wrong, and is named already
            message = (
                "the member id is missing: put it in the contained Coverage (identifier of type MB, or subscriberId)"
            )
            self.problem(f"Claim.insurance[{focal}].coverage", None, "member_id_missing", message)
        return None

    def birth_date(self) -> str | None:
        target = self.resolve(self.claim.patient)
        if target is None or not isinstance(target[1], Patient):
            message = "the patient is not in the claim: contain the Patient (with its birthDate) and refer to it by #id"
            self.problem("Claim.patient", self.claim.patient.reference, "patient_not_contained", message)
            return None
        index, patient = target
        path = f"Claim.contained[{index}].birthDate"
        if patient.birthDate is None:
            self.problem(path, None, "birth_date_missing", "the patient's birth date is missing: add Patient.birthDate")
            return None
        return self.full_date(path, patient.birthDate, "the patient's birth date")

    def full_date(self, path: str, value: Any, what: str) -> str | None:
        if isinstance(value, datetime):  # a dateTime: the date as written, in its own time zone
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        message = f"{what} {value!r} is not a full date: write it as YYYY-MM-DD"
        self.problem(path, value, "date_partial", message)
        return None

    # -------------------------------------------------------------- codes

    def code(self, path: str, concept: CodeableConcept | None, systems: Sequence[str], what: str) -> str | None:
        """The code of ``concept`` in the first of ``systems`` it has, else a problem."""
        codings = list(concept.coding or []) if concept is not None else []
        for system in systems:
            for coding in codings:
                if coding.system == system and coding.code:
                    return str(coding.code)
        names = " or ".join(f"{CODE_SYSTEMS[s]} ({s})" for s in systems)
        coded = next((c for c in codings if c.code), None)
        if coded is None:
            text = concept.text if concept is not None else None
            self.problem(f"{path}.coding", text, "code_missing", f"{what} has no code: code it in {names}")
        elif coded.system is None:
            message = f"{what} {coded.code} has no code system: code it in {names}"
            self.problem(f"{path}.coding[{codings.index(coded)}].system", None, "code_system_unknown", message)
        else:
            message = f"{what} {coded.code} is coded in {coded.system}, which the ledger does not read: use {names}"
            self.problem(f"{path}.coding[{codings.index(coded)}].system", coded.system, "code_system_unknown", message)
        return None

    def diagnosis_positions(self) -> dict[int, int]:
        """Diagnosis sequence number -> its 1-based position in the claim's diagnosis list."""
        sequences = sorted(int(d.sequence) for d in self.claim.diagnosis or [] if d.sequence is not None)
        return {sequence: position for position, sequence in enumerate(dict.fromkeys(sequences), start=1)}

    def diagnoses(self) -> list[str | None]:
        entries = sorted(enumerate(self.claim.diagnosis or []), key=lambda e: int(e[1].sequence or 0))
        codes: list[str | None] = []
        seen: set[int] = set()
        for index, diagnosis in entries:
            path = f"Claim.diagnosis[{index}]"
            sequence = int(diagnosis.sequence or 0)
            if sequence in seen:
                message = f"diagnosis sequence {sequence} is used twice: number each diagnosis once"
                self.problem(f"{path}.sequence", sequence, "diagnosis_sequence_duplicate", message)
                continue
            seen.add(sequence)
            if diagnosis.diagnosisCodeableConcept is None:
                shown = diagnosis.diagnosisReference.reference if diagnosis.diagnosisReference is not None else None
                message = f"diagnosis {sequence} refers to a Condition: give its ICD-10-CM code instead"
                self.problem(f"{path}.diagnosisReference", shown, "diagnosis_reference_unsupported", message)
                continue
            concept = diagnosis.diagnosisCodeableConcept
            codes.append(self.code(f"{path}.diagnosisCodeableConcept", concept, (ICD10CM_SYSTEM,), "a diagnosis"))
        return codes

    # -------------------------------------------------------------- lines and money

    def line(self, index: int, item: ClaimItem, positions: Mapping[int, int]) -> dict[str, Any]:
        path = f"Claim.item[{index}]"
        if item.detail:
            message = f"line {index + 1} has detail sub-lines: send each service as its own Claim.item"
            self.problem(f"{path}.detail", len(item.detail), "item_detail_unsupported", message)
        start: str | None = None
        end: str | None = None
        if item.servicedDate is not None:
            start = end = self.full_date(
                f"{path}.servicedDate", item.servicedDate, f"line {index + 1}: date of service"
            )
        elif item.servicedPeriod is not None and item.servicedPeriod.start is not None:
            period = item.servicedPeriod
            start = self.full_date(f"{path}.servicedPeriod.start", period.start, f"line {index + 1}: date of service")
            end = start
            if period.end is not None:
                end = self.full_date(f"{path}.servicedPeriod.end", period.end, f"line {index + 1}: date of service")
        else:
            message = f"line {index + 1} has no date of service: give servicedDate or servicedPeriod.start"
            self.problem(f"{path}.servicedDate", None, "service_date_missing", message)
        what = f"line {index + 1}: procedure"
        procedure = self.code(f"{path}.productOrService", item.productOrService, _PROCEDURE_SYSTEMS, what)
        modifiers = [
            self.code(f"{path}.modifier[{m}]", concept, _PROCEDURE_SYSTEMS, f"line {index + 1}: modifier")
            for m, concept in enumerate(item.modifier or [])
        ]
        place: str | None = None
        if item.locationCodeableConcept is not None:
            what = f"line {index + 1}: place of service"
            place = self.code(f"{path}.locationCodeableConcept", item.locationCodeableConcept, (POS_SYSTEM,), what)
        elif item.locationAddress is not None or item.locationReference is not None:
            which = "locationAddress" if item.locationAddress is not None else "locationReference"
            message = f"line {index + 1}: give the place of service as locationCodeableConcept (a CMS POS code)"
            self.problem(f"{path}.{which}", None, "location_unsupported", message)
        units: int | None = 1
        if item.quantity is not None and item.quantity.value is not None:
            units = self.whole_units(f"{path}.quantity.value", item.quantity.value, index)
        charge: int | None = None
        if item.net is None or item.net.value is None:
            message = f"line {index + 1} has no charge: give it in Claim.item[{index}].net"
            self.problem(f"{path}.net", None, "charge_missing", message)
        else:
            charge = self.cents(f"{path}.net", item.net, f"line {index + 1}: charge")
        pointers: list[int | None] = []
        for p, sequence in enumerate(item.diagnosisSequence or []):
            position = positions.get(int(sequence)) if sequence is not None else None
            if position is None:
                message = f"line {index + 1} points at diagnosis {sequence}, which the claim does not list"
                self.problem(f"{path}.diagnosisSequence[{p}]", sequence, "diagnosis_sequence_unknown", message)
            pointers.append(position)
        line: dict[str, Any] = {
            "service_date_from": start,
            "service_date_to": end,
            "procedure_code": procedure,
            "modifiers": modifiers,
            "units": units,
            "charge_cents": charge,
            "diagnosis_pointers": pointers,
        }
        if place is not None:
            line["place_of_service"] = place
        return line

    def whole_units(self, path: str, value: Decimal, index: int) -> int | None:
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        message = f"line {index + 1}: quantity {value} is not a whole number of units: bill whole units"
        self.problem(path, value, "quantity_not_whole", message)
        return None

    def cents(self, path: str, money: Money, what: str) -> int | None:
        if money.currency is not None and money.currency != CURRENCY:
            message = f"{what} is in {money.currency}: the ledger records US dollars (USD)"
            self.problem(f"{path}.currency", money.currency, "currency_not_usd", message)
            return None
        value = Decimal(money.value) if money.value is not None else Decimal(0)
        cents = _exact_cents(value)
        if cents is None:
            message = f"{what} {value} has more than two decimals: give dollars and cents, e.g. 12.35"
            self.problem(f"{path}.value", value, "money_precision", message)
        return cents

    def place_of_service(self, lines: Sequence[Mapping[str, Any]]) -> str | None:
        facility = self.claim.facility
        if facility is not None:
            target = self.resolve(facility)
            if target is not None and isinstance(target[1], Location) and target[1].type:
                index, location = target
                concept = location.type[0]
                path = f"Claim.contained[{index}].type[0]"
                return self.code(path, concept, (POS_SYSTEM,), "the claim's place of service")
        first = lines[0].get("place_of_service") if lines else None
        if first is None:
            message = (
                "the claim has no place of service: give Claim.facility (a contained Location typed with a CMS POS "
                "code) or each item's locationCodeableConcept"
            )
            self.problem("Claim.facility", None, "place_of_service_missing", message)
        return first

    def total(self, lines: Sequence[Mapping[str, Any]]) -> int | None:
        if self.claim.total is not None and self.claim.total.value is not None:
            return self.cents("Claim.total", self.claim.total, "the claim total")
        charges = [line.get("charge_cents") for line in lines]
        return sum(c for c in charges if isinstance(c, int)) if all(isinstance(c, int) for c in charges) else None


def _map_claim(claim: FhirClaim, source: SourceRef) -> ImportedClaim:
    mapper = _Mapper(claim)
    data = mapper.map()
    claim_id = data.get("claim_id")
    if mapper.problems:
        return ImportedClaim(source=source, claim_id=claim_id, data=None, problems=tuple(mapper.problems))
    return ImportedClaim(source=source, claim_id=claim_id, data=data)


def _has_code(concept: CodeableConcept | None, system: str, code: str) -> bool:
    """Whether ``concept`` has ``code`` in ``system`` (a coding without a system counts, for these small sets)."""
    if concept is None:
        return False
    return any(c.code == code and c.system in (None, system) for c in concept.coding or [])


def _typed_identifier(identifiers: Iterable[Identifier] | None, code: str) -> str | None:
    for identifier in identifiers or []:
        if identifier.value and _has_code(identifier.type, V2_IDENTIFIER_TYPE_SYSTEM, code):
            return str(identifier.value)
    return None


def _exact_cents(value: Decimal) -> int | None:
    """``value`` dollars as integer cents, or ``None`` when that would round (or is not a number)."""
    if not value.is_finite():
        return None
    cents = value.scaleb(2)
    return int(cents) if cents == cents.to_integral_value() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- writing


def write_fhir_claim(claim: Mapping[str, Any] | Claim, *, created: date | datetime | None = None) -> dict[str, Any]:
    """``claim`` (a claim mapping or :class:`~ledger.claim.Claim`) as an R4 ``Claim``, checked by the R4B model.

    Raises :class:`~ledger.errors.ClaimValidationError` when ``claim`` does not parse;
    ``created`` defaults to today's date in UTC. The result is plain JSON values.
    """
    model = claim if isinstance(claim, Claim) else parse_claim(claim)
    resource = _claim_resource(model, created)
    FhirClaim.model_validate(resource)
    return resource


def write_fhir_bundle(
    claims: Iterable[Mapping[str, Any] | Claim], *, created: date | datetime | None = None
) -> dict[str, Any]:
    """``claims`` as a ``Bundle`` of type ``collection``, one ``Claim`` entry each, in order."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": write_fhir_claim(claim, created=created)} for claim in claims],
    }
    Bundle.model_validate({**bundle, "entry": [{} for _ in bundle["entry"]]})  # the envelope; claims checked above
    return bundle


def _claim_resource(claim: Claim, created: date | datetime | None) -> dict[str, Any]:
    insurer = {"identifier": {"system": ORGANISATION_SYSTEM, "value": claim.payer_id}}
    lines = claim.service_lines
    contained: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "patient",
            "name": [_absent("unknown")],
            "birthDate": claim.patient_birth_date.isoformat(),
        },
        {
            "resourceType": "Coverage",
            "id": "coverage",
            "identifier": [{"type": _concept(V2_IDENTIFIER_TYPE_SYSTEM, "MB"), "value": claim.member_id}],
            "status": "active",
            "subscriberId": claim.member_id,
            "beneficiary": {"reference": "#patient"},
            "payor": [insurer],
        },
        {
            "resourceType": "Organization",
            "id": "billing-provider",
            "identifier": [{"system": NPI_SYSTEM, "value": claim.billing_npi}],
            "name": f"Billing provider NPI {claim.billing_npi}",
        },
        {"resourceType": "Location", "id": "facility", "type": [_concept(POS_SYSTEM, claim.place_of_service)]},
    ]
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "contained": contained,
        "identifier": [{"type": _concept(C4BB_IDENTIFIER_TYPE_SYSTEM, "pat"), "value": claim.claim_id}],
        "status": "cancelled" if claim.frequency is Frequency.VOID else "active",
        "type": _concept(CLAIM_TYPE_SYSTEM, "professional"),
        "use": "claim",
        "patient": {"reference": "#patient"},
        "billablePeriod": {
            "start": min(line.service_date_from for line in lines).isoformat(),
            "end": max(line.service_date_to for line in lines).isoformat(),
        },
        "created": _created_text(created),
        "insurer": insurer,
        "provider": {"reference": "#billing-provider"},
        "priority": _concept(PRIORITY_SYSTEM, "normal"),
    }
    if claim.original_claim_id is not None:
        original: dict[str, Any] = {"value": claim.original_claim_id}
        if _is_ledger_ref(claim.original_claim_id):
            original = {"system": LEDGER_CLAIM_SYSTEM, **original}
        resource["related"] = [
            {"claim": {"identifier": original}, "relationship": _concept(RELATED_CLAIM_SYSTEM, "prior")}
        ]
    resource["facility"] = {"reference": "#facility"}
    if claim.rendering_npi is not None:
        resource["careTeam"] = [
            {
                "sequence": 1,
                "provider": {
                    "type": "Practitioner",
                    "identifier": {"system": NPI_SYSTEM, "value": claim.rendering_npi},
                },
                "role": _concept(C4BB_CARE_TEAM_ROLE_SYSTEM, "performing"),
            }
        ]
    resource["diagnosis"] = [
        {"sequence": number, "diagnosisCodeableConcept": _concept(ICD10CM_SYSTEM, _dotted_icd10(code))}
        for number, code in enumerate(claim.diagnoses, start=1)
    ]
    resource["insurance"] = [
        {
            "sequence": _RESPONSIBILITY_SEQUENCE[claim.responsibility],
            "focal": True,
            "coverage": {"reference": "#coverage"},
        }
    ]
    items = []
    for number, line in enumerate(lines, start=1):
        item: dict[str, Any] = {"sequence": number}
        if claim.rendering_npi is not None:
            item["careTeamSequence"] = [1]
        if line.diagnosis_pointers:
            item["diagnosisSequence"] = list(line.diagnosis_pointers)
        item["productOrService"] = _concept(_procedure_system(line.procedure_code), line.procedure_code)
        if line.modifiers:
            item["modifier"] = [_concept(_modifier_system(m), m) for m in line.modifiers]
        if line.service_date_from == line.service_date_to:
            item["servicedDate"] = line.service_date_from.isoformat()
        else:
            item["servicedPeriod"] = {
                "start": line.service_date_from.isoformat(),
                "end": line.service_date_to.isoformat(),
            }
        item["locationCodeableConcept"] = _concept(POS_SYSTEM, claim.line_place_of_service(line))
        item["quantity"] = {"value": line.units}
        item["net"] = _money(line.charge_cents)
        items.append(item)
    resource["item"] = items
    resource["total"] = _money(claim.total_charge_cents)
    return resource


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _absent(reason: str) -> dict[str, Any]:
    return {"extension": [{"url": DATA_ABSENT_REASON_URL, "valueCode": reason}]}


def _money(cents: int) -> dict[str, Any]:
    if abs(cents) >= _EXACT_FLOAT_CENTS:
        raise ValueError(f"{cents} cents is too large to write exactly as a JSON number")
    return {"value": float(Decimal(cents).scaleb(-2)), "currency": CURRENCY}


def _created_text(created: date | datetime | None) -> str:
    if created is None:
        return datetime.now(UTC).date().isoformat()
    if isinstance(created, datetime) and created.tzinfo is None:
        raise ValueError("created is a time with its time zone (FHIR dateTime): pass datetime.now(UTC) or a date")
    return created.isoformat()


def _procedure_system(code: str) -> str:
    # HCPCS Level II: a letter A to V and four digits; everything else the model takes is CPT's form.
    return HCPCS_SYSTEM if code[:1].isalpha() else CPT_SYSTEM


def _modifier_system(modifier: str) -> str:
    # CPT modifiers are two digits (25, 59, 76); HCPCS Level II modifiers have a letter (RT, XU, GT).
    return CPT_SYSTEM if modifier.isdigit() else HCPCS_SYSTEM


def _dotted_icd10(code: str) -> str:
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 else code


def _is_ledger_ref(text: str) -> bool:
    key, sep, version = text.partition(":")
    hexpart = key.removeprefix("0x").removeprefix("0X")
    return (
        bool(sep) and len(hexpart) == 64 and all(c in "0123456789abcdefABCDEF" for c in hexpart) and version.isdigit()
    )


# ---------------------------------------------------------------- ClaimResponse


@dataclass
class _History:
    """What a claim's events add to its record: the latest adjudication's reasons and so on."""

    carc_codes: list[str] = field(default_factory=list)
    ack_reason: str = ""
    remittance_hash: str | None = None
    replacement: str | None = None


def claim_response(
    record: Mapping[str, Any],
    *,
    claim_id: str | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    created: datetime | None = None,
    payer: str | None = None,
    provider: str | None = None,
    member_id: str | None = None,
) -> dict[str, Any]:
    """The R4 ``ClaimResponse`` for a ledger record, checked by the R4B model.

    ``record`` is what ``ClaimLedgerService.claim()`` returns (amounts in cents, keys 0x-hex);
    ``history`` what ``ClaimLedgerService.history()`` returns for the same claim (for the CARC
    codes, the rejection reason and the remittance hash). ``claim_id`` (the provider's claim
    id), ``payer`` and ``provider`` (consortium names) and ``member_id`` are what the caller
    already knows and may show; each is left out (or replaced as the module docstring says)
    when not given. ``created`` defaults to now, in UTC.
    """
    status = str(record["status"])
    if status not in _STATUS_OUTCOME:
        raise ValueError(f"claim status {status!r} is not one the ledger records: {', '.join(_STATUS_OUTCOME)}")
    if created is not None and created.tzinfo is None:
        raise ValueError("created is a time with its time zone: pass datetime.now(UTC)")
    moment = (created or datetime.now(UTC)).replace(microsecond=0)
    ref = _ledger_ref(record)
    events = _read_history(record, history)
    outcome = record.get("outcome")
    adjudicated = outcome not in (None, "none")
    charge = int(record["total_charge"])
    allowed = record.get("allowed_amount")
    paid = record.get("paid_amount")

    identifiers: list[dict[str, Any]] = [
        {"type": _concept(C4BB_IDENTIFIER_TYPE_SYSTEM, "uc"), "system": LEDGER_CLAIM_SYSTEM, "value": ref}
    ]
    if claim_id:
        identifiers.append({"type": _concept(C4BB_IDENTIFIER_TYPE_SYSTEM, "pat"), "value": claim_id})
    if member_id:
        patient: dict[str, Any] = {
            "identifier": {"type": _concept(V2_IDENTIFIER_TYPE_SYSTEM, "MB"), "value": member_id}
        }
    else:
        patient = _absent("masked")
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "identifier": identifiers,
        "status": "cancelled" if status in ("voided", "replaced") else "active",
        "type": _concept(CLAIM_TYPE_SYSTEM, "professional"),
        "use": "claim",
        "patient": patient,
        "created": moment.isoformat(),
        "insurer": _organisation(payer, record["payer_org"]),
        "requestor": _organisation(provider, record["provider_org"]),
        "request": {"type": "Claim", "identifier": {"system": LEDGER_CLAIM_SYSTEM, "value": ref}},
        "outcome": _STATUS_OUTCOME[status],
        "disposition": _disposition(status, outcome, charge, allowed, paid, record.get("paid_at"), events),
    }
    if adjudicated and events.carc_codes:
        response["adjudication"] = [_carc_adjudication(code) for code in events.carc_codes]
    if status == "rejected":
        response["error"] = [{"code": _rejection_code(events.ack_reason)}]
    totals = [_total("submitted", "Submitted Amount", charge)]
    if adjudicated and allowed is not None:
        totals.append(_total("eligible", "Eligible Amount", int(allowed)))
    if paid is not None:
        totals.append(_total("benefit", "Benefit Amount", int(paid)))
    response["total"] = totals
    if status == "paid" and paid is not None:
        payment: dict[str, Any] = {
            "type": {"coding": [{"system": PAYMENT_TYPE_SYSTEM, "code": "complete", "display": "Complete"}]},
            "amount": _money(int(paid)),
        }
        if record.get("paid_at") is not None:
            payment["date"] = _utc_date(int(record["paid_at"]))
        if events.remittance_hash:
            payment["identifier"] = {"system": REMITTANCE_SYSTEM, "value": events.remittance_hash}
        response["payment"] = payment
    if record.get("suspect"):
        note = (
            "A line of this claim matches a line of an earlier live claim: the ledger flagged it as a suspect "
            "duplicate for the payer to review."
        )
        response["processNote"] = [{"number": 1, "type": "display", "text": note}]
    ClaimResponse.model_validate(response)
    return response


_STATUS_OUTCOME = {
    "submitted": "queued",
    "accepted": "queued",
    "rejected": "error",
    "adjudicated": "complete",
    "paid": "complete",
    "voided": "complete",
    "replaced": "complete",
}
_OUTCOME_WORDS = {"approved": "Approved", "partly_approved": "Partly approved", "denied": "Denied"}


def _ledger_ref(record: Mapping[str, Any]) -> str:
    key = record["exact_key"]
    text = key if isinstance(key, str) else "0x" + bytes(key).hex()
    return f"{text.lower()}:{int(record['version'])}"


def _organisation(name: str | None, index: Any) -> dict[str, Any]:
    if name:
        return {"type": "Organization", "identifier": {"system": ORGANISATION_SYSTEM, "value": name}}
    return {"type": "Organization", "identifier": {"system": ORGANISATION_INDEX_SYSTEM, "value": str(int(index))}}


def _total(code: str, display: str, cents: int) -> dict[str, Any]:
    return {
        "category": {"coding": [{"system": ADJUDICATION_SYSTEM, "code": code, "display": display}]},
        "amount": _money(cents),
    }


def _carc_adjudication(code: str) -> dict[str, Any]:
    reason = code[2:] if code[:2] in _CARC_GROUPS and len(code) > 2 else code
    return {
        "category": {
            "coding": [
                {
                    "system": C4BB_ADJUDICATION_DISCRIMINATOR_SYSTEM,
                    "code": "adjustmentreason",
                    "display": "Adjustment Reason",
                }
            ]
        },
        "reason": {"coding": [{"system": CARC_SYSTEM, "code": reason}], "text": code},
    }


def _rejection_code(reason: str) -> dict[str, Any]:
    category, _, status = reason.partition(":")
    if status:
        return {"coding": [{"system": CLAIM_STATUS_SYSTEM, "code": status}], "text": f"277CA {category}:{status}"}
    return {"text": f"277CA {reason}" if reason else "rejected by the payer"}


def _read_history(record: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None) -> _History:
    found = _History()
    key = str(record["exact_key"]).lower() if isinstance(record["exact_key"], str) else None
    for row in history or ():
        row_key = row.get("exact_key")
        if key is not None and isinstance(row_key, str) and row_key.lower() != key:
            continue  # another claim's event: not this response's
        if row.get("version") is not None and row.get("version") != record["version"]:
            continue
        args = row.get("args")
        values: Mapping[str, Any] = json.loads(args) if isinstance(args, str) else (args or {})
        name = row.get("name")
        if name == "ClaimAcknowledged":
            found.ack_reason = code_text(values.get("reasonCode"))
        elif name == "ClaimAdjudicated":
            found.carc_codes = [code for code in (code_text(c) for c in values.get("carcCodes") or []) if code]
        elif name == "ClaimPaid":
            found.remittance_hash = str(values.get("remittanceHash") or "") or None
        elif name == "ClaimPaymentReversed":  # accepted again: the earlier adjudication and payment no longer stand
            found.carc_codes, found.remittance_hash = [], None
        elif name == "ClaimReplaced":
            replacement_key, replacement_version = values.get("replacementKey"), values.get("replacementVersion")
            if replacement_key is not None and replacement_version is not None:
                found.replacement = f"{str(replacement_key).lower()}:{replacement_version}"
    return found


def _disposition(
    status: str,
    outcome: Any,
    charge: int,
    allowed: Any,
    paid: Any,
    paid_at: Any,
    events: _History,
) -> str:
    if status == "submitted":
        return "Received on the ledger; waiting for the payer to acknowledge it."
    if status == "accepted":
        reason = f" ({events.ack_reason})" if events.ack_reason else ""
        return f"Accepted by the payer for adjudication{reason}."
    if status == "rejected":
        reason = f" ({events.ack_reason})" if events.ack_reason else ""
        return f"Rejected by the payer{reason}: it will not be adjudicated; correct it and submit it as a new claim."
    if status == "voided":
        return "Voided by the provider."
    if status == "replaced":
        by = f" ({events.replacement})" if events.replacement else ""
        return f"Replaced by the provider's corrected claim{by}."
    words = _OUTCOME_WORDS.get(str(outcome), str(outcome))
    reasons = f" (CARC {', '.join(events.carc_codes)})" if events.carc_codes else ""
    if allowed is None:
        amounts = f"{_dollars(charge)} charged"
    elif int(allowed) == 0:
        amounts = f"nothing allowed of {_dollars(charge)} charged"
    else:
        amounts = f"allowed {_dollars(int(allowed))} of {_dollars(charge)} charged"
    if status == "paid":
        when = f" on {_utc_date(int(paid_at))}" if paid_at is not None else ""
        return f"{words}{reasons}: {amounts}; paid {_dollars(int(paid or 0))}{when}."
    follow = "" if outcome == "denied" else "; payment to follow"
    return f"{words}{reasons}: {amounts}{follow}."


def _dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _utc_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()
