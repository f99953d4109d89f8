"""X12 5010 writers for samples and tests: claim mappings as an 837P or 837I, payments as an 835.

:func:`write_837p` and :func:`write_837i` render claim mappings (what
:func:`ledger.claim.parse_claim` takes, as posted in JSON) as one interchange with one
transaction set holding every claim, so that ``read_837(write_837p(claims)).claims[i].data``
parses to the claim ``parse_claim(claims[i])`` is. Each claim is parsed first (a structural
problem raises :class:`~ledger.errors.ClaimValidationError`) and written from its normal form:
codes without dots, modifiers sorted, lines in the order they were submitted. The subscriber
is the patient (no 2000C loop) unless the claim's index is in ``dependents``; names and
addresses are synthetic. Clean-claim rules are not applied: a test may write a claim with a
bad NPI on purpose.

:func:`write_835` renders ``(claim_id, status, charge, paid, patient_responsibility,
adjustments)`` payments as an 835 paying them in one BPR. :func:`write_interchange` puts any
transaction sets' segments in an envelope with correct counts and control numbers, for tests
that need several sets or groups in one file.

Plain segment strings, not x12sdk's ``write_transactions``: that takes full transaction models
(the payer id and NPIs of test claims would have to pass its validators, building them costs
about as much as parsing them, some 180 claims/s) and stamps the current time into every file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from ledger.claim import Claim, ServiceLine, parse_claim
from ledger.formats.x835 import Adjustment
from ledger.formats.x837 import INSTITUTIONAL_VERSIONS, PROFESSIONAL_VERSIONS

__all__ = [
    "Payment",
    "claim_segments",
    "remittance_segments",
    "write_835",
    "write_837i",
    "write_837p",
    "write_interchange",
]

ELEMENT, COMPONENT, REPETITION, TERMINATOR = "*", ":", "^", "~"
_RESERVED = frozenset(ELEMENT + COMPONENT + REPETITION + TERMINATOR + "\r\n")

Payment = tuple[str, str, int, int, int, Sequence[Adjustment | tuple[str, str, int]]]
"""``(claim_id, status, charge_cents, paid_cents, patient_responsibility_cents, adjustments)``."""

_FIRST_NAMES = ("ALEX", "SAM", "JORDAN", "TAYLOR", "CASEY", "RILEY", "MORGAN", "JAMIE", "AVERY", "QUINN")
_LAST_NAMES = ("DOE", "ROE", "POE", "MOE", "LOE", "SHAW", "WELLS", "HALE", "MARSH", "PIKE", "LANE")
_SUBSCRIBER_BIRTH_DATE = "19650301"  # the subscriber's, when the patient is a dependent (synthetic)
_FUNCTIONAL_CODES = {"837": "HC", "835": "HP"}


def _text(value: Any, what: str) -> str:
    text = "" if value is None else str(value)
    if _RESERVED.intersection(text):
        raise ValueError(f"{what} {text!r} holds an X12 delimiter ({ELEMENT} {COMPONENT} {REPETITION} {TERMINATOR})")
    return text


def _segment(*elements: str) -> str:
    return ELEMENT.join(elements).rstrip(ELEMENT)


def _amount(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _d8(day: date) -> str:
    return day.strftime("%Y%m%d")


def _interchange_id(value: str, what: str) -> str:
    text = _text(value, what).strip()
    if not 2 <= len(text) <= 15:
        raise ValueError(f"{what} {value!r} must be 2 to 15 characters (ISA06/ISA08)")
    return text


# --- envelope ---------------------------------------------------------------------------------


def write_interchange(
    groups: Sequence[Sequence[Sequence[str]]],
    *,
    transaction_code: str,
    version: str,
    sender: str,
    receiver: str,
    control_number: int = 1,
    created: datetime | None = None,
    usage: str = "T",
    st03: bool = True,
) -> bytes:
    """An interchange of functional ``groups``, each a list of transaction sets, each a list of segments.

    Segments are given without ST/SE and without terminator (``"BHT*0019*00*1*20250701*1200*CH"``).
    ISA13 is ``control_number``, GS06 counts up from it, ST02 from 0001 across the interchange;
    SE01, GE01 and IEA01 are the true counts. ``st03``: write the version in ST03 (the 837 has it,
    the 835 does not). One segment per line.
    """
    if not 0 < control_number < 10**9:
        raise ValueError(f"the interchange control number is 1 to 999999999, not {control_number}")
    sender, receiver = _interchange_id(sender, "sender"), _interchange_id(receiver, "receiver")
    moment = created or datetime.now(UTC)
    isa = _segment(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        sender.ljust(15),
        "ZZ",
        receiver.ljust(15),
        moment.strftime("%y%m%d"),
        moment.strftime("%H%M"),
        REPETITION,
        "00501",
        f"{control_number:09d}",
        "0",
        usage,
        COMPONENT,
    )
    out = [isa]
    set_number = 0
    for group_index, sets in enumerate(groups):
        group_control = str(control_number + group_index)
        out.append(
            _segment(
                "GS",
                _FUNCTIONAL_CODES[transaction_code],
                sender,
                receiver,
                moment.strftime("%Y%m%d"),
                moment.strftime("%H%M"),
                group_control,
                "X",
                version,
            )
        )
        for body in sets:
            set_number += 1
            st02 = f"{set_number:04d}"
            out.append(_segment("ST", transaction_code, st02, version if st03 else ""))
            out.extend(body)
            out.append(_segment("SE", str(len(body) + 2), st02))
        out.append(_segment("GE", str(len(sets)), group_control))
    out.append(_segment("IEA", str(len(groups)), f"{control_number:09d}"))
    return (TERMINATOR + "\n").join(out).encode("ascii") + (TERMINATOR + "\n").encode("ascii")


# --- 837 --------------------------------------------------------------------------------------


def _submitted_lines(claim: Claim) -> list[ServiceLine]:
    order = claim.submitted_order
    return [line for _, line in sorted(zip(order, claim.service_lines, strict=True), key=lambda pair: pair[0])]


def _name(index: int) -> tuple[str, str]:
    return _LAST_NAMES[index % len(_LAST_NAMES)], _FIRST_NAMES[(index // len(_LAST_NAMES)) % len(_FIRST_NAMES)]


def _line_dates(line: ServiceLine) -> list[str]:
    if line.service_date_from == line.service_date_to:
        return ["DTP", "472", "D8", _d8(line.service_date_from)]
    return ["DTP", "472", "RD8", f"{_d8(line.service_date_from)}-{_d8(line.service_date_to)}"]


def _procedure(line: ServiceLine) -> str:
    code = _text(line.procedure_code, "procedure code")
    modifiers = [_text(m, "modifier") for m in line.modifiers]
    if len(modifiers) > 4:
        raise ValueError(f"line {code} has {len(modifiers)} modifiers: an 837 line holds 4")
    return COMPONENT.join(["HC", code, *modifiers])


def claim_segments(
    claims: Sequence[Mapping[str, Any]],
    *,
    kind: str = "837P",
    sender: str = "SUBMITTER",
    receiver: str = "RECEIVER",
    dependents: Collection[int] = (),
    created: datetime | None = None,
    reference: str = "0001",
    revenue_code: str = "0510",
) -> list[str]:
    """The segments of one 837 transaction set (BHT to the last line) holding ``claims``.

    Consecutive claims of the same billing NPI share a billing provider loop (HL 20); each claim
    has a subscriber loop (HL 22) of its own, and a patient loop (HL 23) if its index is in
    ``dependents``. 837I lines carry ``revenue_code`` (SV201) and must point at diagnosis 1 only
    and have no place of service of their own (SV2 has neither).
    """
    if kind not in ("837P", "837I"):
        raise ValueError(f"kind is 837P or 837I, not {kind!r}")
    professional = kind == "837P"
    moment = created or datetime.now(UTC)
    out = [
        _segment("BHT", "0019", "00", _text(reference, "reference"), moment.strftime("%Y%m%d"), "1200", "CH"),
        _segment("NM1", "41", "2", "SYNTHETIC BILLING SERVICE", "", "", "", "", "46", _text(sender, "sender")),
        _segment("PER", "IC", "CLAIMS DESK", "TE", "5555550100"),
        _segment("NM1", "40", "2", "SYNTHETIC CLEARINGHOUSE", "", "", "", "", "46", _text(receiver, "receiver")),
    ]
    hl = 0
    billing_hl = 0
    billing_npi: str | None = None
    for index, mapping in enumerate(claims):
        claim = parse_claim(mapping)
        if claim.billing_npi != billing_npi:
            billing_npi = claim.billing_npi
            hl += 1
            billing_hl = hl
            out += [
                _segment("HL", str(hl), "", "20", "1"),
                _segment("NM1", "85", "2", "SYNTHETIC CLINIC", "", "", "", "", "XX", _text(billing_npi, "billing NPI")),
                _segment("N3", "100 MAIN ST"),
                _segment("N4", "SPRINGFIELD", "IL", "627010000"),
                _segment("REF", "EI", "990000001"),
            ]
        dependent = index in dependents
        last, first = _name(index)
        birth = _d8(claim.patient_birth_date)
        hl += 1
        subscriber_hl = hl
        out += [
            _segment("HL", str(hl), str(billing_hl), "22", "1" if dependent else "0"),
            _segment(
                "SBR", _text(claim.responsibility.value, "responsibility"), "" if dependent else "18", *[""] * 6, "CI"
            ),
            _segment("NM1", "IL", "1", last, first, "", "", "", "MI", _text(claim.member_id, "member id")),
            _segment("N3", f"{10 + index % 900} ELM ST"),
            _segment("N4", "SPRINGFIELD", "IL", "627040000"),
            _segment("DMG", "D8", _SUBSCRIBER_BIRTH_DATE if dependent else birth, "U"),
            _segment(
                "NM1", "PR", "2", "SYNTHETIC HEALTH PLAN", "", "", "", "", "PI", _text(claim.payer_id, "payer id")
            ),
        ]
        if dependent:
            hl += 1
            out += [
                _segment("HL", str(hl), str(subscriber_hl), "23", "0"),
                _segment("PAT", "19"),
                _segment("NM1", "QC", "1", last, "KIDD"),
                _segment("N3", f"{10 + index % 900} ELM ST"),
                _segment("N4", "SPRINGFIELD", "IL", "627040000"),
                _segment("DMG", "D8", birth, "U"),
            ]
        out += _claim_loop(claim, professional, revenue_code)
    return out


def _claim_loop(claim: Claim, professional: bool, revenue_code: str) -> list[str]:
    lines = _submitted_lines(claim)
    place = _text(claim.place_of_service, "place of service")
    frequency = claim.frequency.value
    total = _amount(claim.total_charge_cents)
    claim_id = _text(claim.claim_id, "claim id")
    out = []
    if professional:
        out.append(
            _segment("CLM", claim_id, total, "", "", COMPONENT.join((place, "B", frequency)), "Y", "A", "Y", "Y")
        )
    else:
        out.append(_segment("CLM", claim_id, total, "", "", COMPONENT.join((place, "A", frequency)), "", "A", "Y", "Y"))
        start = min(line.service_date_from for line in lines) if lines else claim.patient_birth_date
        end = max(line.service_date_to for line in lines) if lines else start
        out.append(_segment("DTP", "434", "RD8", f"{_d8(start)}-{_d8(end)}"))
        out.append(_segment("CL1", "3", "1", "01"))
    if claim.original_claim_id is not None:
        out.append(_segment("REF", "F8", _text(claim.original_claim_id, "original claim id")))
    diagnoses = [_text(code, "diagnosis") for code in claim.diagnoses]
    if diagnoses:
        composites = [f"ABK{COMPONENT}{diagnoses[0]}"] + [f"ABF{COMPONENT}{code}" for code in diagnoses[1:]]
        if not professional:  # the 837I gives the principal diagnosis an HI of its own
            out.append(_segment("HI", composites[0]))
            composites = composites[1:]
        for start_at in range(0, len(composites), 12):
            out.append(_segment("HI", *composites[start_at : start_at + 12]))
    if claim.rendering_npi is not None:
        npi = _text(claim.rendering_npi, "rendering NPI")
        entity = "82" if professional else "71"
        out.append(_segment("NM1", entity, "1", "PROVIDER", "PAT", "", "", "", "XX", npi))
    for number, line in enumerate(lines, start=1):
        out.append(_segment("LX", str(number)))
        if professional:
            pointers = [str(p) for p in line.diagnosis_pointers]
            if len(pointers) > 4:
                raise ValueError(f"line {number} of claim {claim_id} has {len(pointers)} pointers: SV107 holds 4")
            own_place = _text(line.place_of_service, "place of service") if line.place_of_service else ""
            out.append(
                _segment(
                    "SV1",
                    _procedure(line),
                    _amount(line.charge_cents),
                    "UN",
                    str(line.units),
                    own_place,
                    "",
                    COMPONENT.join(pointers),
                )
            )
        else:
            if line.diagnosis_pointers != (1,) or line.place_of_service is not None:
                raise ValueError(
                    f"line {number} of claim {claim_id}: an 837I line has no diagnosis pointers (it points at "
                    "the principal diagnosis) nor a place of service of its own"
                )
            revenue = _text(revenue_code, "revenue code")
            out.append(_segment("SV2", revenue, _procedure(line), _amount(line.charge_cents), "UN", str(line.units)))
        out.append(_segment(*_line_dates(line)))
    return out


def write_837p(
    claims: Sequence[Mapping[str, Any]],
    *,
    sender: str,
    receiver: str,
    control_number: int = 1,
    created: datetime | None = None,
    dependents: Collection[int] = (),
    version: str = "005010X222A1",
) -> bytes:
    """``claims`` as an 837P interchange (one transaction set); see the module docstring."""
    if version not in PROFESSIONAL_VERSIONS:
        raise ValueError(f"{version!r} is not an 837P version: {sorted(PROFESSIONAL_VERSIONS)}")
    body = claim_segments(claims, kind="837P", sender=sender, receiver=receiver, dependents=dependents, created=created)
    return _one_set_837(body, version, sender, receiver, control_number, created)


def write_837i(
    claims: Sequence[Mapping[str, Any]],
    *,
    sender: str,
    receiver: str,
    control_number: int = 1,
    created: datetime | None = None,
    dependents: Collection[int] = (),
    version: str = "005010X223A2",
    revenue_code: str = "0510",
) -> bytes:
    """``claims`` as an 837I interchange; ``place_of_service`` is written as the facility type code."""
    if version not in INSTITUTIONAL_VERSIONS:
        raise ValueError(f"{version!r} is not an 837I version: {sorted(INSTITUTIONAL_VERSIONS)}")
    body = claim_segments(
        claims,
        kind="837I",
        sender=sender,
        receiver=receiver,
        dependents=dependents,
        created=created,
        revenue_code=revenue_code,
    )
    return _one_set_837(body, version, sender, receiver, control_number, created)


def _one_set_837(
    body: Sequence[str], version: str, sender: str, receiver: str, control_number: int, created: datetime | None
) -> bytes:
    return write_interchange(
        [[body]],
        transaction_code="837",
        version=version,
        sender=sender,
        receiver=receiver,
        control_number=control_number,
        created=created,
    )


# --- 835 --------------------------------------------------------------------------------------


def _adjustment(value: Adjustment | tuple[str, str, int]) -> tuple[str, str, int]:
    if isinstance(value, Adjustment):
        return value.group, value.reason, value.amount_cents
    group, reason, amount = value
    return group, reason, amount


def remittance_segments(
    payments: Sequence[Payment],
    *,
    payer_id: str,
    payee_npi: str | None,
    trace_number: str,
    payment_date: date,
    payer_name: str = "SYNTHETIC HEALTH PLAN",
    payee_name: str = "SYNTHETIC CLINIC",
) -> list[str]:
    """The segments of one 835 transaction set (BPR to the last claim) paying ``payments``.

    BPR02 is the sum of what the claims were paid (``I``, by ACH; ``H`` with no money when it is
    0). Each payment's adjustments are its claim-level CAS segments, grouped by group code, up to
    six triplets a segment; CLP07 (the payer's claim control number) is the trace and a counter.
    """
    total = sum(payment[3] for payment in payments)
    day = _d8(payment_date)
    if total > 0:
        bpr = ["BPR", "I", _amount(total), "C", "ACH", "CCP", "01", "011000015", "DA", "0001234567", "1999999999"]
        bpr += ["", "01", "021000021", "DA", "0009876543", day]
    else:
        bpr = ["BPR", "H", _amount(total), "C", "NON", *[""] * 11, day]
    out = [
        _segment(*bpr),
        _segment("TRN", "1", _text(trace_number, "trace number"), "1999999999"),
        _segment("DTM", "405", day),
        _segment("N1", "PR", _text(payer_name, "payer name"), "XV", _text(payer_id, "payer id")),
        _segment("N3", "1 PAYER PLAZA"),
        _segment("N4", "HARTFORD", "CT", "061010000"),
    ]
    if payee_npi is None:
        out.append(_segment("N1", "PE", _text(payee_name, "payee name"), "FI", "990000001"))
    else:
        out.append(_segment("N1", "PE", _text(payee_name, "payee name"), "XX", _text(payee_npi, "payee NPI")))
    out.append(_segment("LX", "1"))
    for index, (claim_id, status, charge, paid, patient, adjustments) in enumerate(payments):
        control = f"{_text(trace_number, 'trace number')}{index + 1:04d}"
        out.append(
            _segment(
                "CLP",
                _text(claim_id, "claim id"),
                _text(status, "claim status"),
                _amount(charge),
                _amount(paid),
                _amount(patient),
                "12",
                control,
                "11",
                "1",
            )
        )
        by_group: dict[str, list[str]] = {}
        for group, reason, amount in (_adjustment(a) for a in adjustments):
            by_group.setdefault(_text(group, "group code"), []).extend(
                (_text(reason, "reason code"), _amount(amount), "")
            )
        for group, triplets in by_group.items():
            for start in range(0, len(triplets), 18):
                out.append(_segment("CAS", group, *triplets[start : start + 18]))
        last, first = _name(index)
        out.append(_segment("NM1", "QC", "1", last, first))
    return out


def write_835(
    payments: Sequence[Payment],
    *,
    payer_id: str,
    payee_npi: str | None,
    trace_number: str,
    payment_date: date,
    sender: str = "SYNTHETICPAYER",
    receiver: str = "SYNTHETICPROV",
    control_number: int = 1,
    created: datetime | None = None,
    version: str = "005010X221A1",
) -> bytes:
    """``payments`` as an 835 interchange (one transaction set); see :func:`remittance_segments`."""
    body = remittance_segments(
        payments, payer_id=payer_id, payee_npi=payee_npi, trace_number=trace_number, payment_date=payment_date
    )
    return write_interchange(
        [[body]],
        transaction_code="835",
        version=version,
        sender=sender,
        receiver=receiver,
        control_number=control_number,
        created=created,
        st03=False,
    )
