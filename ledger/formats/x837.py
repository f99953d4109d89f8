"""X12 5010 837P (005010X222A1) and 837I (005010X223A2) claims, as the mappings the ledger takes.

:func:`read_837` checks the envelope (:mod:`ledger.formats.x12`: a wrong SE01 refuses that
transaction set, a wrong GE01 that group; a wrong IEA01, a file cut short, bytes that are not
UTF-8 or a file above 64 MiB refuse the whole file) and maps every claim (2300 loop) to the
mapping :func:`ledger.claim.parse_claim` takes, exactly as if it had been posted as JSON:

==========================  ===========================================================
claim field                 837
==========================  ===========================================================
``claim_id``                CLM01
``total_charge_cents``      CLM02 (``"125.00"`` -> ``12500``)
``place_of_service``        CLM05-1: the place of service on an 837P; on an 837I the
                            facility type code (2 digits, e.g. 13 hospital outpatient),
                            which is what an institutional claim has in its place
``frequency``               CLM05-3 (1 original, 7 replacement, 8 void)
``original_claim_id``       REF*F8 of the claim (2300), the claim a 7 or 8 replaces or voids
``billing_npi``             NM1*85 (loop 2010AA) NM109, qualified XX
``rendering_npi``           837P: NM1*82 (2310B rendering provider); 837I: NM1*71 (2310A
                            attending provider), else NM1*82 (2310D rendering provider)
``payer_id``                NM1*PR (2010BB) NM109: the consortium's payer id, ``PAYER-ACME``
``responsibility``          SBR01 (2000B): P, S, T
``member_id``               NM1*IL (2010BA) NM109
``patient_birth_date``      DMG02 of the patient loop 2010CA when the patient is not the
                            subscriber (HL 23), else of the subscriber loop 2010BA
``diagnoses``               HI: the principal (ABK, or BK for ICD-9) first, then the others
                            (ABF, BF), in file order
``service_lines``           2400 loops: SV1 (837P) or SV2 (837I) and DTP*472
==========================  ===========================================================

Service lines: on an 837P, SV101 ``HC:code:mod1:...:mod4``, SV102 the charge, SV103 ``UN``,
SV104 the units, SV105 the line's place of service if given, SV107 the diagnosis pointers
(``1:2:3``). On an 837I, SV202 ``HC:code:modifiers``, SV203 the charge, SV204 ``UN`` (or ``DA``,
days), SV205 the units; an institutional line has no diagnosis pointers, so it points at the
principal diagnosis (pointer 1). A line's dates are its DTP*472 (D8, or RD8 for a range); an
837I line without one takes the claim's statement period (DTP*434).

HI qualifiers that are not diagnoses of the claim in the ledger's sense (837P anesthesia
procedures BP/BO and condition codes BG; 837I admitting, reason-for-visit and external-cause
diagnoses, DRG, procedures, occurrence, value, condition and treatment codes) are passed over:
the ledger's claim has no field for them. Any other qualifier is a problem
(``unknown_qualifier``). Loops the ledger does not record (names, addresses, other payers in
2320/2330, line-level providers in 2420) are passed over without looking inside.

A claim that cannot be mapped (a missing segment, an amount that is not one, fractional
units, an unknown qualifier, no service lines...) comes back with ``data=None`` and every
problem found (:class:`~ledger.errors.FieldProblem`, ``field`` in the scheme of
:func:`ledger.formats.x12.field_ref`: ``CLM[12].SV1[15]-04``); the claims after it are still
read. Whether a mapped claim is *clean* (codes, NPIs, dates, totals) is
:mod:`ledger.validation`, as for any claim.

x12sdk's transaction models (``X12ModelReader``) are not used: on a 300-claim 837P they parse
at about 180 claims/s (pydantic validation of every segment and loop), and one claim without
service lines fails the whole transaction set with a pydantic error and no position. This
module walks the loops itself over x12sdk's segment reader, at several thousand claims/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from ledger.errors import FieldProblem, FormatError
from ledger.formats import ImportedClaim
from ledger.formats.x12 import (
    MAX_X12_BYTES,
    EnvelopeSpec,
    Segment,
    SetHeader,
    field_ref,
    implementation_versions,
    money_cents,
    parse_cents,
    parse_d8,
    parse_date_value,
    read_interchange,
    whole_number,
)

__all__ = ["INSTITUTIONAL_VERSIONS", "PROFESSIONAL_VERSIONS", "X12ClaimFile", "read_837"]

PROFESSIONAL_VERSIONS = implementation_versions("005010X222")
"""GS08/ST03 of an 837P: 005010X222A1 (HIPAA's), and the base and A2 errata versions."""
INSTITUTIONAL_VERSIONS = implementation_versions("005010X223")
"""GS08/ST03 of an 837I: 005010X223A2 (HIPAA's), and the base, A1 and A3 versions."""

SPEC_837 = EnvelopeSpec(
    transaction_code="837",
    functional_code="HC",
    versions={**dict.fromkeys(PROFESSIONAL_VERSIONS, "837P"), **dict.fromkeys(INSTITUTIONAL_VERSIONS, "837I")},
    noun="claim",
)

PRINCIPAL_QUALIFIERS = frozenset({"ABK", "BK"})
OTHER_DIAGNOSIS_QUALIFIERS = frozenset({"ABF", "BF"})
PASSED_OVER_QUALIFIERS: Mapping[str, frozenset[str]] = {
    "837P": frozenset({"BP", "BO", "BG"}),
    "837I": frozenset(
        {
            *("ABJ", "BJ", "APR", "PR", "ABN", "BN", "DR"),  # admitting, reason for visit, external cause, DRG
            *("BBR", "BR", "CAH", "BBQ", "BQ"),  # principal and other procedures
            *("BI", "BH", "BE", "BG", "TC"),  # occurrence span, occurrence, value, condition, treatment
        }
    ),
}
"""HI qualifiers of the implementation guides that are not the claim's diagnoses (see the module docstring)."""

_UNIT_BASES: Mapping[str, frozenset[str]] = {"837P": frozenset({"UN"}), "837I": frozenset({"UN", "DA"})}
_MEMBER_QUALIFIERS = frozenset({"MI", "II"})
_PAYER_QUALIFIERS = frozenset({"PI", "XV"})
_NPI_QUALIFIERS = frozenset({"XX"})


@dataclass(frozen=True)
class X12ClaimFile:
    """What :func:`read_837` read: the claims in file order, and the sets or groups it refused.

    ``claims`` holds every claim of the accepted transaction sets (mapped, or with its
    problems); nothing of a set in ``rejected`` is in it. ``kind`` is ``"837P"`` or ``"837I"``.
    """

    claims: list[ImportedClaim]
    rejected: list[FormatError]
    kind: str


def read_837(data: bytes, *, file: str | None = None, max_bytes: int = MAX_X12_BYTES) -> X12ClaimFile:
    """Read an 837P or 837I interchange; :class:`FormatError` if the file as a whole cannot be read."""
    interchange = read_interchange(data, file=file, spec=SPEC_837, open_set=_ClaimSet, max_bytes=max_bytes)
    claims = [claim for claims in interchange.results for claim in claims]
    return X12ClaimFile(claims, interchange.rejected, interchange.kind)


# --- the loops around a claim -----------------------------------------------------------------


class _Context:
    """One HL level (billing provider, subscriber, patient): what its loops gave, and what went wrong.

    Problems are kept without the claim's anchor (``NM1[8]-09``) and given it claim by claim.
    """

    __slots__ = ("hl", "problems")

    def __init__(self, hl: Segment) -> None:
        self.hl = hl
        self.problems: list[FieldProblem] = []

    def add(self, segment: Segment, element: int, value: Any, rule: str, message: str, component: int = 0) -> None:
        self.problems.append(FieldProblem(_bare_ref(segment, element, component), value, rule, message))


def _identifier(
    context: _Context, segment: Segment, qualifiers: frozenset[str], who: str, expected: str, missing: str
) -> str | None:
    """NM109 when NM108 is one of ``qualifiers`` and NM109 is there; else a problem on ``context``
    (``who`` is identified by ..., not ``expected``; ``missing`` (NM109) is missing)."""
    qualifier, identifier = segment.element(8), segment.element(9).strip()
    if qualifier not in qualifiers:
        message = f"{who} is identified by {qualifier or 'nothing'!r} (NM108), not {expected}"
        context.add(segment, 8, qualifier, "unknown_qualifier", message)
        return None
    if not identifier:
        context.add(segment, 9, None, "required", f"{missing} (NM109) is missing")
        return None
    return identifier


class _Billing(_Context):
    __slots__ = ("npi", "seen")

    def __init__(self, hl: Segment) -> None:
        super().__init__(hl)
        self.npi: str | None = None
        self.seen = False


class _Subscriber(_Context):
    __slots__ = ("billing", "birth_date", "dmg_seen", "member_id", "payer_id", "responsibility", "seen")

    def __init__(self, hl: Segment, billing: _Billing | None) -> None:
        super().__init__(hl)
        self.billing = billing
        self.responsibility: str | None = None
        self.member_id: str | None = None
        self.payer_id: str | None = None
        self.birth_date: str | None = None
        self.dmg_seen = False
        self.seen: set[str] = set()
        """Which of SBR, NM1*IL, NM1*PR the loop had (a bad one is a problem already, a missing one not yet)."""


class _Patient(_Context):
    __slots__ = ("birth_date", "dmg_seen")

    def __init__(self, hl: Segment) -> None:
        super().__init__(hl)
        self.birth_date: str | None = None
        self.dmg_seen = False


def _bare_ref(segment: Segment, element: int, component: int = 0) -> str:
    where = f"{segment.id}[{segment.position}]-{element:02d}"
    return f"{where}-{component}" if component else where


def _iso(day: date) -> str:
    return day.isoformat()


# --- one claim --------------------------------------------------------------------------------


class _Line:
    __slots__ = ("dated", "lx", "service", "values")

    def __init__(self, lx: Segment) -> None:
        self.lx = lx
        self.service: Segment | None = None
        self.dated = False
        self.values: dict[str, Any] = {}


class _ClaimBuilder:
    """The 2300 loop of one claim and its 2400 lines, until the next CLM, HL or SE."""

    __slots__ = (
        "anchor",
        "billing",
        "clm",
        "lines",
        "loop",
        "other_diagnoses",
        "patient",
        "principal",
        "problems",
        "rendering",
        "rendering_fallback",
        "statement",
        "statement_seen",
        "subscriber",
        "values",
    )

    def __init__(self, clm: Segment, subscriber: _Subscriber | None, patient: _Patient | None) -> None:
        self.clm = clm
        self.anchor = f"CLM[{clm.position}]"
        self.subscriber = subscriber
        self.billing = subscriber.billing if subscriber is not None else None
        self.patient = patient
        self.loop = "2300"  # then 2310 (claim providers), 2320 (other payers), 2400 (lines)
        self.problems: list[FieldProblem] = []
        self.values: dict[str, Any] = {}
        self.principal: list[tuple[str, Segment]] = []
        self.other_diagnoses: list[str] = []
        self.rendering: str | None = None
        self.rendering_fallback: str | None = None
        self.statement: tuple[date, date] | None = None
        self.statement_seen = False
        self.lines: list[_Line] = []

    def ref(self, segment: Segment | None, element: int | None = None, component: int = 0) -> str:
        return field_ref(self.anchor, None if segment is self.clm else segment, element, component)

    def add(self, field: str, value: Any, rule: str, message: str) -> None:
        self.problems.append(FieldProblem(field, value, rule, message))


class _ClaimSet:
    """Reads the claims of one 837 transaction set (a :class:`ledger.formats.x12.SetReader`)."""

    def __init__(self, header: SetHeader) -> None:
        self.header = header
        self.kind = header.kind
        self.professional = header.kind == "837P"
        self.component = header.delimiters.component
        self.repetition = header.delimiters.repetition
        self.passed_over = PASSED_OVER_QUALIFIERS[header.kind]
        self.unit_bases = _UNIT_BASES[header.kind]
        self.rendering_entity = "82" if self.professional else "71"
        self.claims: list[ImportedClaim] = []
        self.count = 0
        self.loop = "header"
        self.billing: _Billing | None = None
        self.subscriber: _Subscriber | None = None
        self.patient: _Patient | None = None
        self.claim: _ClaimBuilder | None = None
        self.handlers = {
            "HL": self._hl,
            "NM1": self._nm1,
            "SBR": self._sbr,
            "DMG": self._dmg,
            "CLM": self._clm,
            "REF": self._ref,
            "HI": self._hi,
            "DTP": self._dtp,
            "LX": self._lx,
            "SV1": self._sv1,
            "SV2": self._sv2,
        }

    # SetReader ---------------------------------------------------------------------------

    def segment(self, segment: Segment) -> None:
        handler = self.handlers.get(segment.id)
        if handler is not None:
            handler(segment)

    def finish(self, se: Segment) -> list[ImportedClaim]:
        self._close_claim()
        return self.claims

    # hierarchy -----------------------------------------------------------------------------

    def _hl(self, segment: Segment) -> None:
        self._close_claim()
        level = segment.element(3)
        if level == "20":
            self.billing = _Billing(segment)
            self.subscriber = self.patient = None
            self.loop = "2000A"
        elif level == "22":
            self.subscriber = _Subscriber(segment, self.billing)
            self.patient = None
            self.loop = "2000B"
        elif level == "23":
            self.patient = _Patient(segment)
            self.loop = "2000C"
        else:
            # Claims under a level this reader does not know cannot say whose they are.
            self.patient = _Patient(segment)
            self.patient.add(
                segment,
                3,
                level,
                "unknown_qualifier",
                f"hierarchical level {level!r} (HL03) is not 20 (billing provider), 22 (subscriber) or 23 (patient)",
            )
            self.loop = "2000?"

    def _nm1(self, segment: Segment) -> None:
        entity = segment.element(1)
        claim = self.claim
        if claim is not None:
            if claim.loop in ("2320", "2400"):
                return  # other payers' names (2330), line-level providers (2420)
            claim.loop = "2310"
            if entity == self.rendering_entity:
                claim.rendering = self._provider_npi(claim, segment, "rendering provider")
            elif entity == "82":  # 837I 2310D rendering provider: used when there is no attending
                claim.rendering_fallback = self._provider_npi(claim, segment, "rendering provider")
            return
        if entity == "85" and self.billing is not None:
            billing = self.billing
            billing.seen = True
            self.loop = "2010AA"
            npi = _identifier(
                billing, segment, _NPI_QUALIFIERS, "the billing provider", "an NPI (XX)", "the billing provider's NPI"
            )
            if npi is not None:
                billing.npi = npi
        elif entity == "IL" and self.subscriber is not None:
            self.loop = "2010BA"
            subscriber = self.subscriber
            subscriber.seen.add("member_id")
            member = _identifier(
                subscriber, segment, _MEMBER_QUALIFIERS, "the subscriber", "a member id (MI)", "member id"
            )
            if member is not None:
                subscriber.member_id = member
        elif entity == "PR" and self.subscriber is not None:
            self.loop = "2010BB"
            subscriber = self.subscriber
            subscriber.seen.add("payer_id")
            payer = _identifier(
                subscriber, segment, _PAYER_QUALIFIERS, "the payer", "a payer id (PI or XV)", "the payer id"
            )
            if payer is not None:
                subscriber.payer_id = payer
        elif entity == "QC" and self.patient is not None:
            self.loop = "2010CA"
        else:
            self.loop = f"NM1*{entity}"

    def _provider_npi(self, claim: _ClaimBuilder, segment: Segment, what: str) -> str | None:
        qualifier, identifier = segment.element(8), segment.element(9).strip()
        if not qualifier and not identifier:
            return None  # a provider without an NPI (an atypical provider): none to record
        if qualifier != "XX":
            claim.add(
                claim.ref(segment, 8),
                qualifier,
                "unknown_qualifier",
                f"the {what} is identified by {qualifier or 'nothing'!r} (NM108), not by an NPI (XX)",
            )
            return None
        if not identifier:
            claim.add(claim.ref(segment, 9), None, "required", f"the {what}'s NPI (NM109) is missing")
            return None
        return identifier

    def _sbr(self, segment: Segment) -> None:
        claim = self.claim
        if claim is not None:
            if claim.loop != "2400":
                claim.loop = "2320"  # another payer's coverage, for coordination of benefits
            return
        subscriber = self.subscriber
        if subscriber is None or self.patient is not None:
            return  # an SBR belongs to the subscriber's loops (2000B), not to a patient's
        subscriber.seen.add("responsibility")
        responsibility = segment.element(1).strip()
        if responsibility:
            subscriber.responsibility = responsibility
        else:
            subscriber.add(
                segment, 1, None, "required", "the payer responsibility sequence (SBR01: P, S or T) is missing"
            )

    def _dmg(self, segment: Segment) -> None:
        if self.claim is not None:
            return
        if self.loop == "2010BA" and self.subscriber is not None:
            context: _Subscriber | _Patient = self.subscriber
        elif self.loop == "2010CA" and self.patient is not None:
            context = self.patient
        else:
            return
        context.dmg_seen = True
        qualifier, value = segment.element(1), segment.element(2)
        if qualifier != "D8":
            context.add(
                segment,
                1,
                qualifier,
                "unknown_qualifier",
                f"the birth date's format {qualifier or 'nothing'!r} (DMG01) is not D8 (CCYYMMDD)",
            )
            return
        problems: list[FieldProblem] = []
        days = parse_date_value("D8", value, _bare_ref(segment, 2), "the patient's birth date (DMG02)", problems)
        if days is None:
            context.problems.extend(problems)
        else:
            context.birth_date = _iso(days[0])

    # the claim -----------------------------------------------------------------------------

    def _clm(self, segment: Segment) -> None:
        self._close_claim()
        self.count += 1
        claim = self.claim = _ClaimBuilder(segment, self.subscriber, self.patient)
        values = claim.values
        claim_id = segment.element(1).strip()
        if claim_id:
            values["claim_id"] = claim_id
        else:
            claim.add(claim.ref(None, 1), None, "required", "the claim id (CLM01, patient control number) is missing")
        charge = segment.element(2)
        if charge:
            cents = parse_cents(charge)
            if cents is None:
                money_cents(charge, claim.ref(None, 2), "the total charge (CLM02)", claim.problems)
            else:
                values["total_charge_cents"] = cents
        else:
            claim.add(claim.ref(None, 2), None, "required", "the total charge (CLM02) is missing")
        facility = segment.element(5).split(self.component)
        place = facility[0].strip()
        what = "place of service" if self.professional else "facility type code"
        if place:
            values["place_of_service"] = place
        else:
            claim.add(claim.ref(None, 5, 1), None, "required", f"the {what} (CLM05-1) is missing")
        frequency = facility[2].strip() if len(facility) > 2 else ""
        if frequency:
            values["frequency"] = frequency
        else:
            claim.add(
                claim.ref(None, 5, 3), None, "required", "the claim frequency code (CLM05-3: 1, 7 or 8) is missing"
            )

    def _ref(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None or claim.loop not in ("2300", "2310") or segment.element(1) != "F8":
            return
        original = segment.element(2).strip()
        if original:
            claim.values["original_claim_id"] = original
        else:
            claim.add(claim.ref(segment, 2), None, "required", "the original claim id (REF02 of REF*F8) is missing")

    def _hi(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None or claim.loop in ("2320", "2400"):
            return
        component = self.component
        for index, composite in enumerate(segment.elements[1:], start=1):
            if not composite:
                continue
            parts = composite.split(component)
            qualifier = parts[0].strip()
            code = parts[1].strip() if len(parts) > 1 else ""
            if qualifier in PRINCIPAL_QUALIFIERS or qualifier in OTHER_DIAGNOSIS_QUALIFIERS:
                if not code:
                    claim.add(
                        claim.ref(segment, index, 2),
                        None,
                        "required",
                        f"diagnosis {qualifier} in HI{index:02d} has no code (HI{index:02d}-2)",
                    )
                elif qualifier in PRINCIPAL_QUALIFIERS:
                    claim.principal.append((code, segment))
                else:
                    claim.other_diagnoses.append(code)
            elif qualifier not in self.passed_over:
                kinds = "ABK/BK (principal) or ABF/BF (other)"
                claim.add(
                    claim.ref(segment, index, 1),
                    qualifier,
                    "unknown_qualifier",
                    f"diagnosis qualifier {qualifier!r} (HI{index:02d}-1) is not one of {kinds}",
                )

    def _dtp(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None:
            return
        qualifier = segment.element(1)
        if claim.loop == "2400" and qualifier == "472":
            line = claim.lines[-1]
            line.dated = True
            days = self._date(claim, segment, f"line {len(claim.lines)}: the date of service (DTP03)")
            if days is not None:
                start = days[0].isoformat()
                line.values["service_date_from"] = start
                line.values["service_date_to"] = start if days[1] == days[0] else days[1].isoformat()
        elif qualifier == "434" and not self.professional and claim.loop != "2400":
            claim.statement_seen = True
            claim.statement = self._date(claim, segment, "the statement period (DTP*434)")

    @staticmethod
    def _date(claim: _ClaimBuilder, segment: Segment, what: str) -> tuple[date, date] | None:
        form, text = segment.element(2), segment.element(3)
        if form == "D8":
            day = parse_d8(text)  # the common case, without formatting a field path
            if day is not None:
                return day, day
        element = 3 if form in ("D8", "RD8") else 2
        return parse_date_value(form, text, lambda: claim.ref(segment, element), what, claim.problems)

    def _lx(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None:
            return
        claim.loop = "2400"
        claim.lines.append(_Line(segment))

    def _line_for(self, claim: _ClaimBuilder, segment: Segment) -> _Line:
        # An SV1/SV2 without its LX, or a second one in a line, starts a line of its own.
        if claim.loop != "2400" or claim.lines[-1].service is not None:
            claim.loop = "2400"
            claim.lines.append(_Line(segment))
        line = claim.lines[-1]
        line.service = segment
        return line

    def _procedure(self, claim: _ClaimBuilder, line: _Line, segment: Segment, element: int, number: int) -> None:
        designator = f"{segment.id}{element:02d}"
        composite = segment.element(element)
        if not composite:
            claim.add(
                claim.ref(segment, element),
                None,
                "required",
                f"line {number}: the procedure code ({designator}) is missing: the ledger records CPT/HCPCS lines",
            )
            return
        parts = composite.split(self.component)
        qualifier = parts[0].strip()
        if qualifier != "HC":
            claim.add(
                claim.ref(segment, element, 1),
                qualifier,
                "unknown_qualifier",
                f"line {number}: procedure code qualifier {qualifier!r} ({designator}-1) is not HC (CPT/HCPCS)",
            )
            return
        code = parts[1].strip() if len(parts) > 1 else ""
        if not code:
            claim.add(claim.ref(segment, element, 2), None, "required", f"line {number}: the procedure code is missing")
            return
        line.values["procedure_code"] = code
        line.values["modifiers"] = [m.strip() for m in parts[2:6] if m.strip()]

    def _amounts(
        self, claim: _ClaimBuilder, line: _Line, segment: Segment, charge: int, basis: int, number: int
    ) -> None:
        designator = segment.id
        text = segment.element(charge)
        if text:
            cents = parse_cents(text)
            if cents is None:
                what = f"line {number}: the charge ({designator}{charge:02d})"
                money_cents(text, claim.ref(segment, charge), what, claim.problems)
            else:
                line.values["charge_cents"] = cents
        else:
            claim.add(claim.ref(segment, charge), None, "required", f"line {number}: the charge is missing")
        unit_basis = segment.element(basis)
        if unit_basis not in self.unit_bases:
            accepted = " or ".join(sorted(self.unit_bases))
            claim.add(
                claim.ref(segment, basis),
                unit_basis,
                "unknown_qualifier",
                f"line {number}: units are measured in {unit_basis or 'nothing'!r} ({designator}{basis:02d}), "
                f"not {accepted}",
            )
        quantity = segment.element(basis + 1)
        if quantity.isdigit():
            line.values["units"] = int(quantity)
        elif quantity:
            units = whole_number(
                quantity,
                claim.ref(segment, basis + 1),
                f"line {number}: units ({designator}{basis + 1:02d})",
                claim.problems,
                rule="fractional_units",
            )
            if units is not None:
                line.values["units"] = units
        else:
            claim.add(claim.ref(segment, basis + 1), None, "required", f"line {number}: the units are missing")

    def _sv1(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None:
            return
        line = self._line_for(claim, segment)
        number = len(claim.lines)
        if not self.professional:
            claim.add(
                claim.ref(segment),
                None,
                "unknown_qualifier",
                f"line {number}: an SV1 (professional service) in an 837I: institutional lines are SV2",
            )
            return
        self._procedure(claim, line, segment, 1, number)
        self._amounts(claim, line, segment, 2, 3, number)
        place = segment.element(5).strip()
        if place:
            line.values["place_of_service"] = place
        pointers = []
        for index, text in enumerate(segment.element(7).split(self.component), start=1):
            if text.isdigit():
                pointers.append(int(text))
                continue
            if not text:
                continue
            pointer = whole_number(
                text,
                claim.ref(segment, 7, index),
                f"line {number}: diagnosis pointer (SV107-{index})",
                claim.problems,
                rule="not_whole_number",
            )
            if pointer is not None:
                pointers.append(pointer)
        line.values["diagnosis_pointers"] = pointers

    def _sv2(self, segment: Segment) -> None:
        claim = self.claim
        if claim is None:
            return
        line = self._line_for(claim, segment)
        number = len(claim.lines)
        if self.professional:
            claim.add(
                claim.ref(segment),
                None,
                "unknown_qualifier",
                f"line {number}: an SV2 (institutional service) in an 837P: professional lines are SV1",
            )
            return
        self._procedure(claim, line, segment, 2, number)
        self._amounts(claim, line, segment, 3, 4, number)
        line.values["diagnosis_pointers"] = [1]

    # the claim, complete -------------------------------------------------------------------

    def _close_claim(self) -> None:
        claim = self.claim
        if claim is None:
            return
        self.claim = None
        self.claims.append(self._build(claim))

    def _build(self, claim: _ClaimBuilder) -> ImportedClaim:
        values = claim.values
        problems = claim.problems
        anchor = claim.anchor
        context_problems: list[FieldProblem] = []
        billing, subscriber, patient = claim.billing, claim.subscriber, claim.patient
        if subscriber is None:
            claim.add(
                anchor,
                values.get("claim_id"),
                "required",
                "the claim comes before any subscriber (HL with level 22): whose claim it is cannot be told",
            )
        else:
            if billing is None or not billing.seen:
                claim.add(
                    f"{anchor}.NM1",
                    None,
                    "required",
                    "the billing provider (NM1*85, loop 2010AA) is missing",
                )
            else:
                context_problems.extend(billing.problems)
                if billing.npi is not None:
                    values["billing_npi"] = billing.npi
            context_problems.extend(subscriber.problems)
            for name, value, what in (
                ("responsibility", subscriber.responsibility, "the payer responsibility sequence (SBR, loop 2000B)"),
                ("member_id", subscriber.member_id, "the subscriber's member id (NM1*IL, loop 2010BA)"),
                ("payer_id", subscriber.payer_id, "the payer (NM1*PR, loop 2010BB)"),
            ):
                if value is not None:
                    values[name] = value
                elif name not in subscriber.seen:
                    segment_id = "SBR" if name == "responsibility" else "NM1"
                    claim.add(f"{anchor}.{segment_id}", None, "required", f"{what} is missing")
            birth_from: _Subscriber | _Patient = subscriber if patient is None else patient
            if patient is not None:
                context_problems.extend(patient.problems)
            if birth_from.birth_date is not None:
                values["patient_birth_date"] = birth_from.birth_date
            elif not birth_from.dmg_seen:
                loop = "2010BA (subscriber)" if patient is None else "2010CA (patient)"
                claim.add(
                    f"{anchor}.DMG",
                    None,
                    "required",
                    f"the patient's birth date is missing: no DMG segment in loop {loop}",
                )
        if claim.principal:
            code = claim.principal[0][0]
            if len(claim.principal) > 1:
                second = claim.principal[1][1]
                claim.add(
                    claim.ref(second),
                    claim.principal[1][0],
                    "principal_diagnosis",
                    "the claim gives a second principal diagnosis (ABK/BK): give one, and the others as ABF/BF",
                )
            values["diagnoses"] = [code, *claim.other_diagnoses]
        elif claim.other_diagnoses:
            claim.add(
                f"{anchor}.HI",
                claim.other_diagnoses[0],
                "principal_diagnosis",
                "the claim has other diagnoses (ABF/BF) but no principal one (ABK/BK): give the principal first",
            )
        else:
            values["diagnoses"] = []  # the clean-claim rules say what is wrong with none
        rendering = claim.rendering if claim.rendering is not None else claim.rendering_fallback
        values["rendering_npi"] = rendering
        values.setdefault("original_claim_id", None)
        lines = []
        for number, line in enumerate(claim.lines, start=1):
            if line.service is None:
                claim.add(
                    claim.ref(line.lx),
                    None,
                    "required",
                    f"line {number} (LX at position {line.lx.position}) has no "
                    f"{'SV1' if self.professional else 'SV2'} service segment",
                )
                continue
            if not line.dated:
                if claim.statement is not None:
                    line.values["service_date_from"] = _iso(claim.statement[0])
                    line.values["service_date_to"] = _iso(claim.statement[1])
                elif not claim.statement_seen:  # else its statement period is a problem already
                    also = "" if self.professional else ", and the claim no statement period (DTP*434)"
                    claim.add(
                        claim.ref(line.lx),
                        None,
                        "required",
                        f"line {number} has no date of service (DTP*472){also}",
                    )
            lines.append(line.values)
        if not claim.lines:
            claim.add(
                anchor,
                values.get("claim_id"),
                "service_lines_missing",
                f"claim {values.get('claim_id', '')!r} has no service lines (no LX/"
                f"{'SV1' if self.professional else 'SV2'} loop 2400): nothing of it is taken",
            )
        values["service_lines"] = lines
        source = self.header.source(claim.clm)
        claim_id = values.get("claim_id")
        if context_problems:
            problems = [replace(p, field=f"{anchor}.{p.field}") for p in context_problems] + problems
        if problems:
            return ImportedClaim(source, claim_id, None, tuple(problems))
        return ImportedClaim(source, claim_id, values)
