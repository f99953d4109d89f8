"""Payment posting from an 835: each CLP matched to its claim and moved along the payer steps.

An 835 (read by :func:`ledger.formats.x835.read_835`) says, per claim, what the payer decided
and paid. :func:`post_remittance` turns each :class:`~ledger.formats.x835.ClaimPayment` into
the ledger's payer steps for the payer that posts it, in file order (a reversal and the
corrected payment that follows it in the same 835 land in that order):

- **matching**: CLP01 is the provider's claim id (CLM01). Among the claims recorded under it
  that are addressed to this payer (:meth:`ClaimLedgerService.claims_by_claim_id`), the live
  one is taken; when several are live, the payee NPI (N1*PE) picks the one billed by that
  NPI; still several, or none, and the CLP is refused (``ambiguous`` / ``not_found``) and
  nothing is posted for it. CLP07 (the payer's claim control number) is answered back.
- **CLP02 1, 2, 3, 19, 20, 21** (processed as primary / secondary / tertiary, with or without
  forwarding): a submitted claim is acknowledged (accepted, ``A2:20``), an accepted one is
  adjudicated, an adjudicated one is paid. The allowed amount is CLP04 + CLP05 (what the payer
  pays plus what the patient owes); the contract refuses one above the claim's charge. The
  outcome is *approved* when the allowed amount is the whole charge and no adjustment is
  reported, *denied* when it is zero, else *partly approved*. The CARC codes are the
  adjustments' group and reason (``CO45``), or the reason alone where the pair does not fit the
  ledger's four characters (``253``), each once, at most five.
- **CLP02 4** (denied): acknowledged if need be, then adjudicated *denied* with allowed 0 and
  the CARC codes (an 835 denial without any CAS reason is refused: the ledger requires one).
- **CLP02 22** (reversal of a previous payment): a paid claim is reversed
  (:meth:`ClaimLedgerService.reverse_payment`), back to accepted; any other status is refused.
- anything else (e.g. 23, not our claim): refused as ``unsupported_status``.

An 835 whose payer (N1*PR) is not the organisation posting it is refused CLP by CLP
(``payer_mismatch``): a payer posts its own remittances only.

The CLPs are planned first and their steps then run together (up to 250 in one transaction,
through the contract's multicall), so an 835 costs a few transactions, not three a claim. A
transaction the contract refuses is run again step by step, so one bad CLP does not hold back
the others.

The remittance hash recorded with a payment or reversal is the SHA-256 of the 835 transaction
set (ST to SE) that carried it. Posting the same 835 again changes nothing: a claim already in
the state the CLP asks for is answered ``already_posted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import FormatError, PermissionDeniedError
from ledger.formats import SourceRef
from ledger.formats.x835 import ClaimPayment, Remittance
from ledger.service import ClaimLedgerService, Member, PayerStep

PAID_STATUSES = frozenset({"1", "2", "3", "19", "20", "21"})
DENIED_STATUS = "4"
REVERSAL_STATUS = "22"
ACCEPTED_REASON = "A2:20"
MAX_CARC_CODES = 5


@dataclass(frozen=True)
class PostingOutcome:
    """What posting one CLP did: ``posted`` (with the steps taken), ``already_posted``, or refused."""

    source: SourceRef
    claim_id: str
    payer_claim_control: str | None
    status: (
        str  # posted | already_posted | not_found | ambiguous | invalid | unsupported_status | payer_mismatch | refused
    )
    ref: str | None = None
    steps: tuple[str, ...] = ()
    claim_status: str | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.to_dict(),
            "claim_id": self.claim_id,
            "payer_claim_control": self.payer_claim_control,
            "status": self.status,
            "ref": self.ref,
            "steps": list(self.steps),
            "claim_status": self.claim_status,
            "error": self.error,
        }


@dataclass
class PostingSummary:
    posted: int = 0
    already_posted: int = 0
    refused: int = 0
    rejected_parts: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, outcomes: Sequence[PostingOutcome], rejected: Sequence[FormatError] = ()) -> None:
        for o in outcomes:
            if o.status == "posted":
                self.posted += 1
            elif o.status == "already_posted":
                self.already_posted += 1
            else:
                self.refused += 1
            self.by_status[o.status] = self.by_status.get(o.status, 0) + 1
        self.rejected_parts += len(rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "posted": self.posted,
            "already_posted": self.already_posted,
            "refused": self.refused,
            "rejected_parts": self.rejected_parts,
            "by_status": dict(self.by_status),
        }


def carc_codes(payment: ClaimPayment) -> list[str]:
    """The CARC codes the ledger keeps for a CLP: group + reason when it fits four characters."""
    codes: list[str] = []
    for adj in payment.adjustments:
        code = adj.group + adj.reason if len(adj.group + adj.reason) <= 4 else adj.reason
        if code not in codes:
            codes.append(code)
    return codes[:MAX_CARC_CODES]


def post_remittance(service: ClaimLedgerService, member: Member, remittance: Remittance) -> list[PostingOutcome]:
    """Post every CLP of one 835 transaction set for payer ``member``; one outcome each, in order.

    Every CLP is planned first (matched, and its steps chosen from the claim's status as the steps
    planned before it in this 835 leave it), then all the steps are run together through
    :meth:`ClaimLedgerService.payer_steps`: a few transactions for the whole 835, not three a claim.
    """
    if member.role != "payer":
        raise PermissionDeniedError(f"{member.name} is a {member.role}: only payers post remittances")
    if remittance.payer_id.strip().upper() != member.name.upper():
        where = remittance.source.describe()
        message = (
            f"{where}: this 835 is from payer {remittance.payer_id!r} (N1*PR), not {member.name}: "
            "a payer posts its own remittances only"
        )
        return [_refused(p, "payer_mismatch", message, payer_id=remittance.payer_id) for p in remittance.claims]
    planned: dict[str, dict[str, Any]] = {}  # ref -> the record as the planned steps leave it
    found = service.claims_by_claim_ids(member, [p.claim_id for p in remittance.claims])
    plans = [
        _plan(service, member, remittance, payment, found[payment.claim_id], planned) for payment in remittance.claims
    ]
    steps = [step for plan in plans if isinstance(plan, _Plan) for step in plan.steps]
    answers = iter(service.payer_steps(member, steps) if steps else [])
    return [
        plan if isinstance(plan, PostingOutcome) else plan.outcome([next(answers) for _ in plan.steps])
        for plan in plans
    ]


@dataclass
class _Plan:
    """The payer steps one CLP needs, and the status each leaves the claim in."""

    payment: ClaimPayment
    ref: str
    status: str
    steps: list[PayerStep] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    def add(self, step: str, args: tuple[Any, ...], status: str) -> None:
        key, _, version = self.ref.partition(":")
        self.steps.append(PayerStep(bytes.fromhex(key[2:]), int(version), step, args))
        self.after.append(status)

    def outcome(self, answers: list[dict[str, Any]]) -> PostingOutcome:
        done: list[str] = []
        status = self.status
        for step, after, answer in zip(self.steps, self.after, answers, strict=True):
            if "error" in answer:
                error = answer["error"]
                message = f"{self.payment.source.describe()}: {error.get('message', error.get('code'))}"
                return _answer(
                    self.payment,
                    "refused",
                    ref=self.ref,
                    steps=done,
                    claim_status=status,
                    error={**error, "message": message},
                )
            done.append(step.step)
            status = after
        return _answer(self.payment, "posted", ref=self.ref, steps=done, claim_status=status)


def _answer(payment: ClaimPayment, status: str, **fields: Any) -> PostingOutcome:
    fields["steps"] = tuple(fields.get("steps", ()))
    return PostingOutcome(payment.source, payment.claim_id, payment.payer_claim_control, status, **fields)


def _refused(payment: ClaimPayment, status: str, message: str, **details: Any) -> PostingOutcome:
    ref, claim_status = details.pop("ref", None), details.pop("claim_status", None)
    error = {"code": status, "message": message, "details": details}
    return _answer(payment, status, ref=ref, claim_status=claim_status, error=error)


def _plan(
    service: ClaimLedgerService,
    member: Member,
    remittance: Remittance,
    payment: ClaimPayment,
    found: list[dict[str, Any]],
    planned: dict[str, dict[str, Any]],
) -> _Plan | PostingOutcome:
    where = payment.source.describe()
    if payment.problems:
        problems = [p.to_dict() for p in payment.problems]
        return _refused(payment, "invalid", f"{where}: CLP {payment.claim_id!r} cannot be read", problems=problems)
    code = payment.status_code
    if code not in PAID_STATUSES and code not in (DENIED_STATUS, REVERSAL_STATUS):
        return _refused(
            payment,
            "unsupported_status",
            f"{where}: CLP02 {code!r} for claim {payment.claim_id!r} is not a payment, a denial (4) or a reversal (22)",
            clp02=code,
        )
    matched = _match(service, member, remittance, payment, found, planned)
    if isinstance(matched, PostingOutcome):
        return matched
    ref = f"{matched['exact_key']}:{matched['version']}"
    record = planned.get(ref, matched)
    status = record["status"]
    plan = _Plan(payment, ref, status)
    if code == REVERSAL_STATUS:
        if status != "paid":
            return _refused(
                payment,
                "refused",
                f"{where}: claim {payment.claim_id!r} ({ref}) is {status}, not paid: no payment to reverse",
                ref=ref,
                claim_status=status,
            )
        plan.add("reverse_payment", (remittance.digest,), "accepted")
        planned[ref] = {**record, "status": "accepted", "outcome": None, "paid_amount": None}
        return plan
    denied = code == DENIED_STATUS
    allowed = 0 if denied else payment.paid_cents + payment.patient_responsibility_cents
    codes = carc_codes(payment)
    if _already_posted(record, denied=denied, paid=payment.paid_cents):
        return _answer(payment, "already_posted", ref=ref, claim_status=status)
    if denied and not codes:
        return _refused(
            payment,
            "invalid",
            f"{where}: claim {payment.claim_id!r} is denied without any CAS adjustment reason; "
            "the ledger records a denial with its CARC codes",
            ref=ref,
            claim_status=status,
        )
    outcome = _outcome(allowed, int(record["total_charge"]), codes)
    if status == "submitted":
        plan.add("acknowledge", (True, ACCEPTED_REASON.encode("ascii")), "accepted")
        status = "accepted"
    if status == "accepted":
        plan.add("adjudicate", (outcome, allowed, codes if outcome != "approved" else []), "adjudicated")
        status = "adjudicated"
    if status == "adjudicated" and not denied:
        plan.add("record_payment", (payment.paid_cents, remittance.digest), "paid")
        status = "paid"
    if not plan.steps:
        return _refused(
            payment,
            "refused",
            f"{where}: claim {payment.claim_id!r} ({ref}) is {status}: the 835 cannot move it",
            ref=ref,
            claim_status=status,
        )
    planned[ref] = {
        **record,
        "status": status,
        "outcome": outcome,
        "paid_amount": None if denied else payment.paid_cents,
    }
    return plan


def _outcome(allowed: int, charge: int, codes: Sequence[str]) -> str:
    if allowed == 0:
        return "denied"
    if allowed == charge and not codes:
        return "approved"
    return "partly_approved"


def _already_posted(record: dict[str, Any], *, denied: bool, paid: int) -> bool:
    if denied:
        return record["status"] == "adjudicated" and record.get("outcome") == "denied"
    return record["status"] == "paid" and record.get("paid_amount") == paid


def _match(
    service: ClaimLedgerService,
    member: Member,
    remittance: Remittance,
    payment: ClaimPayment,
    found: list[dict[str, Any]],
    planned: dict[str, dict[str, Any]],
) -> dict[str, Any] | PostingOutcome:
    where = payment.source.describe()
    candidates = [planned.get(f"{r['exact_key']}:{r['version']}", r) for r in found if r["payer_org"] == member.org]
    live = [r for r in candidates if r["live"]]
    if len(live) > 1 and remittance.payee_npi:
        billed = [r for r in live if _billing_npi(service, r) == remittance.payee_npi]
        live = billed or live
    if len(live) == 1:
        return live[0]
    if not live:
        return _refused(
            payment,
            "not_found",
            f"{where}: no live claim with claim id {payment.claim_id!r} is addressed to {member.name} "
            "among the claims this gateway holds",
            ended=[f"{r['exact_key']}:{r['version']} ({r['status']})" for r in candidates],
        )
    return _refused(
        payment,
        "ambiguous",
        f"{where}: {len(live)} live claims with claim id {payment.claim_id!r} are addressed to {member.name}; "
        "post this one through the claim's own payer steps",
        candidates=[f"{r['exact_key']}:{r['version']}" for r in live],
    )


def _billing_npi(service: ClaimLedgerService, record: dict[str, Any]) -> str | None:
    npi = (service.document_of(record) or {}).get("billing_npi")
    return npi if isinstance(npi, str) else None
