"""X12 5010 835 (005010X221A1) remittance advice: what a payer paid, claim by claim, and why not more.

:func:`read_835` gives one :class:`Remittance` per transaction set (ST ... SE), with the same
envelope and bad-input rules as the 837 (:mod:`ledger.formats.x12`): a wrong SE01 refuses that
set, a wrong GE01 its group, the rest of the file is still read; a wrong IEA01, a file cut
short, bytes that are not UTF-8 or a file above 64 MiB refuse the whole file.

==============================  =========================================================
field                           835
==============================  =========================================================
``payer_id``                    N1*PR (loop 1000A) N104, the consortium payer id
                                (``PAYER-ACME``); else REF*2U of loop 1000A
``payee_npi``                   N1*PE (1000B) N104 when N103 is XX, else ``None``
``trace_number``                TRN02, the check or EFT trace number
``payment_cents``               BPR02
``payment_date``                BPR16 (``None`` when not given)
``digest``                      SHA-256 of the set's exact bytes, from ST to SE's terminator
``claims``                      CLP loops (2100), in file order
==============================  =========================================================

Per claim (:class:`ClaimPayment`): CLP01 the provider's claim id (CLM01), CLP02 the status
(1, 2, 3 processed as primary, secondary, tertiary; 4 denied; 22 reversal of a previous
payment; other codes kept as given), CLP03 charge, CLP04 paid, CLP05 patient responsibility
(0 when not given), CLP07 the payer's claim control number; ``adjustments`` are the claim's
CAS segments and then those of its SVC lines (loop 2110), in file order, each triplet an
:class:`Adjustment`. In a reversal (22) CLP03 to CLP05 are negative, as the payer takes back
what it paid; elsewhere a negative charge, payment or patient responsibility is a problem
(``money_negative``). CAS amounts may be negative anywhere (an adjustment can give back).

A remittance-level field that cannot be read (BPR02, BPR16, no TRN, no payer id) refuses the
transaction set: a payment whose amount, date or payer is unknown cannot be posted. A claim
payment that cannot be read keeps its place with ``problems`` (its unreadable amounts are 0):
it must not be posted, and the others still can.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from ledger.errors import FieldProblem, FormatError
from ledger.formats import SourceRef
from ledger.formats.x12 import (
    MAX_X12_BYTES,
    EnvelopeSpec,
    Segment,
    SetHeader,
    field_ref,
    implementation_versions,
    money_cents,
    parse_d8,
    read_interchange,
)

__all__ = [
    "ADJUSTMENT_GROUPS",
    "CLAIM_STATUS",
    "Adjustment",
    "ClaimPayment",
    "Remittance",
    "X12RemittanceFile",
    "read_835",
]

REMITTANCE_VERSIONS = implementation_versions("005010X221")
"""GS08 of an 835: 005010X221A1 (HIPAA's) and the base 005010X221."""

SPEC_835 = EnvelopeSpec(
    transaction_code="835",
    functional_code="HP",
    versions=dict.fromkeys(REMITTANCE_VERSIONS, "835"),
    noun="claim payment",
)

ADJUSTMENT_GROUPS: Mapping[str, str] = {
    "CO": "contractual obligation (the provider absorbs it)",
    "PR": "patient responsibility",
    "OA": "other adjustment",
    "PI": "payer-initiated reduction",
    "CR": "correction and reversal (before 5010)",
}
"""CAS01 claim adjustment group codes."""

CLAIM_STATUS: Mapping[str, str] = {
    "1": "processed as primary",
    "2": "processed as secondary",
    "3": "processed as tertiary",
    "4": "denied",
    "19": "processed as primary, forwarded to additional payer(s)",
    "20": "processed as secondary, forwarded to additional payer(s)",
    "21": "processed as tertiary, forwarded to additional payer(s)",
    "22": "reversal of previous payment",
    "23": "not our claim, forwarded to additional payer(s)",
    "25": "predetermination pricing only, no payment",
}
"""CLP02 claim status codes (kept as given, known or not)."""

REVERSAL = "22"
MAX_CAS_TRIPLETS = 6


@dataclass(frozen=True)
class Adjustment:
    """One CAS triplet: group (CO, PR, OA, PI, CR), CARC reason code, amount in cents."""

    group: str
    reason: str
    amount_cents: int


@dataclass(frozen=True)
class ClaimPayment:
    """One claim of a remittance (CLP loop 2100); see the module docstring for the fields."""

    source: SourceRef
    claim_id: str
    status_code: str
    charge_cents: int
    paid_cents: int
    patient_responsibility_cents: int
    payer_claim_control: str | None
    adjustments: tuple[Adjustment, ...]
    problems: tuple[FieldProblem, ...] = ()

    @property
    def is_reversal(self) -> bool:
        return self.status_code == REVERSAL

    @property
    def is_denied(self) -> bool:
        return self.status_code == "4"


@dataclass(frozen=True)
class Remittance:
    """One 835 transaction set: who paid whom, how much, when, under which trace, for which claims."""

    source: SourceRef
    payer_id: str
    payee_npi: str | None
    trace_number: str
    payment_cents: int
    payment_date: date | None
    digest: bytes
    """SHA-256 of the exact bytes from ST to SE (terminator included): the remittance's hash source."""
    claims: tuple[ClaimPayment, ...]


@dataclass(frozen=True)
class X12RemittanceFile:
    """What :func:`read_835` read: the remittances in file order, and the sets or groups it refused."""

    remittances: list[Remittance]
    rejected: list[FormatError]


def read_835(data: bytes, *, file: str | None = None, max_bytes: int = MAX_X12_BYTES) -> X12RemittanceFile:
    """Read an 835 interchange; :class:`FormatError` if the file as a whole cannot be read."""
    interchange = read_interchange(data, file=file, spec=SPEC_835, open_set=_RemittanceSet, max_bytes=max_bytes)
    rejected = list(interchange.rejected)
    remittances = []
    for result in interchange.results:
        if isinstance(result, FormatError):
            rejected.append(result)
        else:
            remittances.append(result)
    return X12RemittanceFile(remittances, rejected)


class _Payment:
    __slots__ = ("adjustments", "clp", "problems")

    def __init__(self, clp: Segment) -> None:
        self.clp = clp
        self.problems: list[FieldProblem] = []
        self.adjustments: list[Adjustment] = []


class _RemittanceSet:
    """Reads one 835 transaction set (a :class:`ledger.formats.x12.SetReader`)."""

    def __init__(self, header: SetHeader) -> None:
        self.header = header
        self.component = header.delimiters.component
        self.loop = "header"
        self.count = 0
        self.bpr: Segment | None = None
        self.trn: Segment | None = None
        self.payer_n1: Segment | None = None
        self.payer_ref: Segment | None = None
        self.payee_n1: Segment | None = None
        self.payment: _Payment | None = None
        self.payments: list[ClaimPayment] = []

    # SetReader ---------------------------------------------------------------------------

    def segment(self, segment: Segment) -> None:
        name = segment.id
        if name == "CLP":
            self._close_payment()
            self.count += 1
            self.loop = "2100"
            self.payment = _Payment(segment)
        elif name == "CAS":
            if self.payment is not None and self.loop in ("2100", "2110"):
                self._cas(self.payment, segment)
        elif name == "SVC":
            if self.payment is not None:
                self.loop = "2110"
        elif name in ("LX", "PLB"):
            self._close_payment()
            self.loop = "2000" if name == "LX" else "PLB"
        elif self.payment is not None:
            return  # the rest of a claim's loops: names, dates, references, amounts
        elif name == "BPR" and self.bpr is None:
            self.bpr = segment
        elif name == "TRN" and self.trn is None:
            self.trn = segment
        elif name == "N1":
            entity = segment.element(1)
            if entity == "PR":
                self.loop = "1000A"
                self.payer_n1 = segment
            elif entity == "PE":
                self.loop = "1000B"
                self.payee_n1 = segment
        elif name == "REF" and self.loop == "1000A" and segment.element(1) == "2U":
            self.payer_ref = segment

    def finish(self, se: Segment) -> Remittance | FormatError:
        self._close_payment()
        header = self.header
        st = header.st
        where = f"transaction set {header.control['ST02']} (ST at position {st.position})"

        count = len(self.payments)
        not_taken = "its 1 claim payment is not taken" if count == 1 else f"none of its {count} claim payments is taken"

        def refuse(message: str, rule: str, segment: Segment) -> FormatError:
            return FormatError(
                f"{where}: {message}; {not_taken}",
                rule=rule,
                source=header.source(segment),
            )

        bpr = self.bpr
        if bpr is None:
            return refuse("there is no BPR (financial information) segment", "required", st)
        problems: list[FieldProblem] = []
        amount = bpr.element(2)
        payment_cents = money_cents(amount, field_ref("BPR", bpr, 2), "the payment amount (BPR02)", problems)
        if payment_cents is None:
            return refuse(problems[0].message, problems[0].rule, bpr)
        payment_date = None
        if bpr.element(16):
            payment_date = parse_d8(bpr.element(16))
            if payment_date is None:
                return refuse(
                    f"the payment date {bpr.element(16)!r} (BPR16) is not a real date written CCYYMMDD",
                    "date_invalid",
                    bpr,
                )
        trn = self.trn
        if trn is None or not trn.element(2).strip():
            return refuse("there is no trace number (TRN02)", "required", trn or st)
        payer_id = ""
        if self.payer_n1 is not None:
            payer_id = self.payer_n1.element(4).strip()
        if not payer_id and self.payer_ref is not None:
            payer_id = self.payer_ref.element(2).strip()
        if not payer_id:
            return refuse(
                "the payer is not identified: N1*PR (loop 1000A) has no N104, and there is no REF*2U",
                "required",
                self.payer_n1 or st,
            )
        payee_npi = None
        payee = self.payee_n1
        if payee is not None and payee.element(3) == "XX" and payee.element(4).strip():
            payee_npi = payee.element(4).strip()
        return Remittance(
            source=header.source(st),
            payer_id=payer_id,
            payee_npi=payee_npi,
            trace_number=trn.element(2).strip(),
            payment_cents=payment_cents,
            payment_date=payment_date,
            digest=hashlib.sha256(header.set_bytes(se)).digest(),
            claims=tuple(self.payments),
        )

    # claims --------------------------------------------------------------------------------

    def _cas(self, payment: _Payment, segment: Segment) -> None:
        anchor = f"CLP[{payment.clp.position}]"
        group = segment.element(1).strip()
        if group not in ADJUSTMENT_GROUPS:
            payment.problems.append(
                FieldProblem(
                    field_ref(anchor, segment, 1),
                    group,
                    "unknown_qualifier",
                    f"adjustment group {group or 'nothing'!r} (CAS01) is not CO, PR, OA, PI or CR",
                )
            )
            return
        for triplet in range(MAX_CAS_TRIPLETS):
            reason_at = 2 + 3 * triplet
            reason = segment.element(reason_at).strip()
            amount = segment.element(reason_at + 1)
            if not reason and not amount:
                continue
            what = f"adjustment {group}-{reason or '?'} (CAS{reason_at + 1:02d})"
            if not reason:
                payment.problems.append(
                    FieldProblem(
                        field_ref(anchor, segment, reason_at),
                        None,
                        "required",
                        f"an adjustment amount (CAS{reason_at + 1:02d}) has no reason code (CAS{reason_at:02d})",
                    )
                )
                continue
            if not amount:
                payment.problems.append(
                    FieldProblem(field_ref(anchor, segment, reason_at + 1), None, "required", f"{what} has no amount")
                )
                continue
            cents = money_cents(
                amount, field_ref(anchor, segment, reason_at + 1), what, payment.problems, negative=True
            )
            if cents is not None:
                payment.adjustments.append(Adjustment(group, reason, cents))

    def _close_payment(self) -> None:
        payment = self.payment
        if payment is None:
            return
        self.payment = None
        clp = payment.clp
        anchor = f"CLP[{clp.position}]"
        problems = payment.problems
        claim_id = clp.element(1).strip()
        if not claim_id:
            problems.insert(
                0, FieldProblem(field_ref(anchor, None, 1), None, "required", "the claim id (CLP01) is missing")
            )
        status = clp.element(2).strip()
        if not status:
            problems.insert(
                0, FieldProblem(field_ref(anchor, None, 2), None, "required", "the claim status (CLP02) is missing")
            )
        negative = status == REVERSAL
        amounts = []
        for element, what, required in (
            (3, "the claim's charge (CLP03)", True),
            (4, "the amount paid (CLP04)", True),
            (5, "the patient's responsibility (CLP05)", False),
        ):
            text = clp.element(element)
            if not text:
                if required:
                    problems.append(
                        FieldProblem(field_ref(anchor, None, element), None, "required", f"{what} is missing")
                    )
                amounts.append(0)
                continue
            cents = money_cents(text, field_ref(anchor, None, element), what, problems, negative=negative)
            amounts.append(0 if cents is None else cents)
        control = clp.element(7).strip() or None
        self.payments.append(
            ClaimPayment(
                source=self.header.source(clp),
                claim_id=claim_id,
                status_code=status,
                charge_cents=amounts[0],
                paid_cents=amounts[1],
                patient_responsibility_cents=amounts[2],
                payer_claim_control=control,
                adjustments=tuple(payment.adjustments),
                problems=tuple(problems),
            )
        )
