"""The claim lifecycle the contract enforces: every status against every step, the payer's
figures, stale versions, days to payment, and a stateful test of the whole graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.chain import ZERO32, ClaimSubmission, TransactionOutcome
from ledger.errors import ContractRevertError
from tests.integration.support import (
    ACCEPTED_REASON,
    BASE_SNAPSHOT,
    LIVE,
    REJECTED_REASON,
    UINT64_MAX,
    Consortium,
    Outcome,
    Snapshots,
    Status,
    assert_events,
    bytes4,
    bytes8,
    normalise,
    random_key,
    submitted,
)

DAY = 86_400

# ------------------------------------------------------------------ a claim in every status

STARTS: dict[str, Status] = {
    "none": Status.NONE,
    "submitted": Status.SUBMITTED,
    "accepted": Status.ACCEPTED,
    "rejected": Status.REJECTED,
    "adjudicated": Status.ADJUDICATED,
    "adjudicated (denied)": Status.ADJUDICATED,
    "paid": Status.PAID,
    "voided": Status.VOIDED,
    "replaced": Status.REPLACED,
    "replaced in its slot": Status.REPLACED,
}


@pytest.fixture
def claims(deployed_consortium: Consortium, snapshots: Snapshots) -> dict[str, ClaimSubmission]:
    """PROV-A's claims to PAYER-X, version 1 of each in the status it is named after ("none":
    never submitted; "replaced in its slot": replaced by a claim with its own exact key, so
    the slot holds version 2)."""
    c = deployed_consortium

    def build() -> dict[str, ClaimSubmission]:
        made = {name: c.claim() for name in STARTS}
        c.submit(*(s for name, s in made.items() if name != "none"))
        c.advance(made["accepted"], Status.ACCEPTED)
        c.advance(made["rejected"], Status.REJECTED)
        c.advance(made["adjudicated"], Status.ADJUDICATED)
        c.advance(made["adjudicated (denied)"], Status.ADJUDICATED, outcome=Outcome.DENIED)
        c.advance(made["paid"], Status.PAID)
        c.advance(made["voided"], Status.VOIDED)
        c.advance(made["replaced"], Status.REPLACED)
        in_slot = made["replaced in its slot"]
        c.submit(c.replacement(in_slot, 1, exact_key=in_slot.exact_key))
        return made

    return snapshots.prepared("lifecycle", build)


# ------------------------------------------------------------------ every status x every step

STEPS: dict[str, Status] = {
    "accept": Status.ACCEPTED,
    "reject": Status.REJECTED,
    "adjudicate": Status.ADJUDICATED,
    "pay": Status.PAID,
    "reverse payment": Status.ACCEPTED,
    "voidClaim": Status.VOIDED,
    "void entry": Status.VOIDED,
    "replace (same key)": Status.REPLACED,
    "replace (new key)": Status.REPLACED,
}
PROVIDER_STEPS = ("voidClaim", "void entry", "replace (same key)", "replace (new key)")
LEGAL: dict[str, set[str]] = {
    "submitted": {"accept", "reject", *PROVIDER_STEPS},
    "accepted": {"adjudicate", *PROVIDER_STEPS},
    "adjudicated": {"pay", *PROVIDER_STEPS},
    "adjudicated (denied)": set(PROVIDER_STEPS),
    "paid": {"reverse payment"},
}


@dataclass
class Step:
    """A step taken on claim (key, 1), with the events it must emit if it is legal."""

    run: Callable[[], TransactionOutcome]
    events: list[tuple[str, dict[str, Any]]]
    after: Callable[[], None]


def make_step(c: Consortium, step: str, s: ClaimSubmission) -> Step:
    ledger, key, payer, provider = c.ledger, s.exact_key, c.payer_x, c.prov_a
    status = ledger.claim_status

    def expect_status(version: int, label: str) -> Callable[[], None]:
        def check() -> None:
            assert status(key, version) == label

        return check

    if step in ("accept", "reject"):
        accepted = step == "accept"
        reason = ACCEPTED_REASON if accepted else REJECTED_REASON
        return Step(
            run=lambda: ledger.acknowledge(key, 1, accepted, reason, sender=payer.account),
            events=[
                (
                    "ClaimAcknowledged",
                    {
                        "exactKey": key,
                        "version": 1,
                        "payerOrg": payer.index,
                        "accepted": accepted,
                        "reasonCode": bytes8(reason),
                    },
                )
            ],
            after=expect_status(1, STEPS[step].label),
        )
    if step == "adjudicate":
        return Step(
            run=lambda: ledger.adjudicate(key, 1, "approved", s.total_charge, sender=payer.account),
            events=[
                (
                    "ClaimAdjudicated",
                    {
                        "exactKey": key,
                        "version": 1,
                        "payerOrg": payer.index,
                        "outcome": Outcome.APPROVED,
                        "allowedAmount": s.total_charge,
                        "carcCodes": [],
                    },
                )
            ],
            after=expect_status(1, "adjudicated"),
        )
    if step == "pay":
        remittance = random_key()
        return Step(
            run=lambda: ledger.record_payment(key, 1, s.total_charge, remittance, sender=payer.account),
            events=[
                (
                    "ClaimPaid",
                    {
                        "exactKey": key,
                        "version": 1,
                        "payerOrg": payer.index,
                        "paidAmount": s.total_charge,
                        "remittanceHash": remittance,
                    },
                )
            ],
            after=expect_status(1, "paid"),
        )
    if step == "reverse payment":
        remittance = random_key()
        return Step(
            run=lambda: ledger.reverse_payment(key, 1, remittance, sender=payer.account),
            events=[
                (
                    "ClaimPaymentReversed",
                    {
                        "exactKey": key,
                        "version": 1,
                        "payerOrg": payer.index,
                        "reversedAmount": s.total_charge // 2,
                        "remittanceHash": remittance,
                    },
                )
            ],
            after=expect_status(1, "accepted"),
        )
    if step in ("voidClaim", "void entry"):
        entry = c.void_entry(s)
        return Step(
            run=(lambda: ledger.void_claim(key, 1, sender=provider.account))
            if step == "voidClaim"
            else (lambda: c.submit(entry)),
            events=[("ClaimVoided", {"exactKey": key, "version": 1, "providerOrg": provider.index})],
            after=expect_status(1, "voided"),
        )
    same_key = step == "replace (same key)"
    replacement = c.replacement(s, 1, exact_key=key if same_key else None)
    new_version = 2 if same_key else 1

    def replaced() -> None:
        assert status(key, 1) == ("none" if same_key else "replaced")
        assert status(replacement.exact_key, new_version) == "submitted"

    return Step(
        run=lambda: c.submit(replacement),
        events=[
            (
                "ClaimReplaced",
                {
                    "exactKey": key,
                    "version": 1,
                    "replacementKey": replacement.exact_key,
                    "replacementVersion": new_version,
                },
            ),
            submitted(replacement, new_version, provider.index),
        ],
        after=replaced,
    )


TRANSITIONS = [pytest.param(start, step, id=f"{start}-{step}") for start in STARTS for step in STEPS]


@pytest.mark.parametrize(("start", "step"), TRANSITIONS)
def test_every_status_against_every_step(
    deployed_consortium: Consortium, claims: dict[str, ClaimSubmission], start: str, step: str
) -> None:
    c = deployed_consortium
    s = claims[start]
    taken = make_step(c, step, s)
    if step in LEGAL.get(start, set()):
        assert_events(taken.run(), taken.events)
        taken.after()
        return
    key = s.exact_key
    if start == "none":
        error, args = "ClaimLedgerUnknownClaim", {"exactKey": key, "version": 1, "current": 0}
    elif start == "replaced in its slot":
        error, args = "ClaimLedgerUnknownClaim", {"exactKey": key, "version": 1, "current": 2}
    elif (start, step) == ("adjudicated (denied)", "pay"):
        error, args = "ClaimLedgerNotPayable", {"exactKey": key, "outcome": Outcome.DENIED}
    else:
        error, args = "ClaimLedgerInvalidTransition", {"exactKey": key, "from": STARTS[start], "to": STEPS[step]}
    c.assert_refused(taken.run, error, args, keys=[key], line_keys=s.line_keys)


# ------------------------------------------------------------------ the payer's figures

Call = Callable[[Consortium, dict[str, ClaimSubmission]], Any]


def _adjudicate(name: str, outcome: str, allowed: Callable[[int], int], codes: tuple[str, ...]) -> Call:
    def call(c: Consortium, claims: dict[str, ClaimSubmission]) -> Any:
        s = claims[name]
        return c.ledger.adjudicate(s.exact_key, 1, outcome, allowed(s.total_charge), codes, sender=c.payer_x.account)

    return call


def _pay(name: str, paid: Callable[[int], int], remittance: bytes | None = None) -> Call:
    def call(c: Consortium, claims: dict[str, ClaimSubmission]) -> Any:
        s = claims[name]
        return c.ledger.record_payment(
            s.exact_key, 1, paid(s.total_charge), remittance or random_key(), sender=c.payer_x.account
        )

    return call


def _reject_without_reason(c: Consortium, claims: dict[str, ClaimSubmission]) -> Any:
    return c.ledger.acknowledge(claims["submitted"].exact_key, 1, False, b"", sender=c.payer_x.account)


PAYER_INPUT = [
    # (id, claim, call, error, args(key, charge))
    (
        "reject without a reason",
        "submitted",
        _reject_without_reason,
        "ClaimLedgerMissingReason",
        lambda k, t: {"exactKey": k},
    ),
    (
        "outcome None",
        "accepted",
        _adjudicate("accepted", "none", lambda t: t, ()),
        "ClaimLedgerInvalidOutcome",
        lambda k, t: {"exactKey": k, "outcome": Outcome.NONE},
    ),
    (
        "denied with an allowed amount",
        "accepted",
        _adjudicate("accepted", "denied", lambda t: 100, ("CO50",)),
        "ClaimLedgerAllowedAmountMismatch",
        lambda k, t: {"exactKey": k, "outcome": Outcome.DENIED, "allowedAmount": 100},
    ),
    (
        "approved with nothing allowed",
        "accepted",
        _adjudicate("accepted", "approved", lambda t: 0, ()),
        "ClaimLedgerAllowedAmountMismatch",
        lambda k, t: {"exactKey": k, "outcome": Outcome.APPROVED, "allowedAmount": 0},
    ),
    (
        "partly approved with nothing allowed",
        "accepted",
        _adjudicate("accepted", "partly_approved", lambda t: 0, ("CO45",)),
        "ClaimLedgerAllowedAmountMismatch",
        lambda k, t: {"exactKey": k, "outcome": Outcome.PARTLY_APPROVED, "allowedAmount": 0},
    ),
    (
        "allowed above the charge",
        "accepted",
        _adjudicate("accepted", "approved", lambda t: t + 1, ()),
        "ClaimLedgerAllowedExceedsCharge",
        lambda k, t: {"exactKey": k, "allowedAmount": t + 1, "totalCharge": t},
    ),
    # An allowed amount past 64 bits is more than any charge can be: the charge bound catches it first.
    (
        "allowed past uint64",
        "accepted",
        _adjudicate("accepted", "approved", lambda t: UINT64_MAX + 1, ()),
        "ClaimLedgerAllowedExceedsCharge",
        lambda k, t: {"exactKey": k, "allowedAmount": UINT64_MAX + 1, "totalCharge": t},
    ),
    (
        "allowed uint256 max",
        "accepted",
        _adjudicate("accepted", "partly_approved", lambda t: 2**256 - 1, ("CO45",)),
        "ClaimLedgerAllowedExceedsCharge",
        lambda k, t: {"exactKey": k, "allowedAmount": 2**256 - 1, "totalCharge": t},
    ),
    (
        "partly approved without a CARC",
        "accepted",
        _adjudicate("accepted", "partly_approved", lambda t: t // 2, ()),
        "ClaimLedgerMissingAdjustmentReason",
        lambda k, t: {"exactKey": k, "outcome": Outcome.PARTLY_APPROVED},
    ),
    (
        "denied without a CARC",
        "accepted",
        _adjudicate("accepted", "denied", lambda t: 0, ()),
        "ClaimLedgerMissingAdjustmentReason",
        lambda k, t: {"exactKey": k, "outcome": Outcome.DENIED},
    ),
    (
        "paid above allowed",
        "adjudicated",
        _pay("adjudicated", lambda t: t + 1),
        "ClaimLedgerPaidExceedsAllowed",
        lambda k, t: {"exactKey": k, "paidAmount": t + 1, "allowedAmount": t},
    ),
    (
        "paid past uint64",
        "adjudicated",
        _pay("adjudicated", lambda t: UINT64_MAX + 1),
        "ClaimLedgerPaidExceedsAllowed",
        lambda k, t: {"exactKey": k, "paidAmount": UINT64_MAX + 1, "allowedAmount": t},
    ),
    (
        "pay a denied claim",
        "adjudicated (denied)",
        _pay("adjudicated (denied)", lambda t: 0),
        "ClaimLedgerNotPayable",
        lambda k, t: {"exactKey": k, "outcome": Outcome.DENIED},
    ),
    (
        "zero remittance hash",
        "adjudicated",
        _pay("adjudicated", lambda t: t, ZERO32),
        "ClaimLedgerZeroRemittanceHash",
        lambda k, t: {"exactKey": k},
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "error", "args"),
    [pytest.param(*row[1:], id=row[0]) for row in PAYER_INPUT],
)
def test_payer_input_refused(
    deployed_consortium: Consortium,
    claims: dict[str, ClaimSubmission],
    name: str,
    call: Call,
    error: str,
    args: Callable[[bytes, int], dict[str, Any]],
) -> None:
    c = deployed_consortium
    s = claims[name]
    c.assert_refused(lambda: call(c, claims), error, args(s.exact_key, s.total_charge), keys=[s.exact_key])


def test_an_outcome_outside_the_enum_is_refused_by_the_abi_decoder(
    deployed_consortium: Consortium, claims: dict[str, ClaimSubmission]
) -> None:
    c = deployed_consortium
    key = claims["accepted"].exact_key
    before = c.observe([key])
    with pytest.raises(ContractRevertError) as refused:
        c.ledger.transact("adjudicate", key, 1, 4, 100, [], sender=c.payer_x.account)
    # Solidity's decoder reverts with no data: no custom error to name.
    assert refused.value.error == "Revert"
    assert c.observe([key]) == before


@pytest.mark.parametrize(
    ("outcome", "allowed", "codes"),
    [
        (Outcome.APPROVED, lambda t: t, ()),
        (Outcome.APPROVED, lambda t: t, ("CO45",)),
        (Outcome.PARTLY_APPROVED, lambda t: 1, ("CO45", "PR1")),
        (Outcome.DENIED, lambda t: 0, ("CO50",)),
    ],
    ids=["approved", "approved with a CARC", "partly approved", "denied"],
)
def test_adjudication_records_the_payer_figures(
    deployed_consortium: Consortium,
    claims: dict[str, ClaimSubmission],
    outcome: Outcome,
    allowed: Callable[[int], int],
    codes: tuple[str, ...],
) -> None:
    c = deployed_consortium
    s = claims["accepted"]
    amount = allowed(s.total_charge)
    out = c.ledger.adjudicate(s.exact_key, 1, outcome.label, amount, codes, sender=c.payer_x.account)
    assert_events(
        out,
        [
            (
                "ClaimAdjudicated",
                {
                    "exactKey": s.exact_key,
                    "version": 1,
                    "payerOrg": c.payer_x.index,
                    "outcome": outcome,
                    "allowedAmount": amount,
                    "carcCodes": [bytes4(code) for code in codes],
                },
            )
        ],
    )
    settled = c.ledger.settlement(s.exact_key)
    assert (settled["outcome"], settled["allowed_amount"], settled["paid_amount"]) == (outcome.label, amount, 0)
    assert settled["adjudicated_at"] == int(c.w3.eth.get_block(out.block_number)["timestamp"])


def test_a_stale_version_is_an_unknown_claim(consortium: Consortium) -> None:
    c = consortium
    s = c.submit_new()
    c.ledger.void_claim(s.exact_key, 1, sender=c.prov_a.account)
    again = c.claim(exact_key=s.exact_key)
    c.submit(again)
    key, payer, provider = s.exact_key, c.payer_x.account, c.prov_a.account

    def unknown(version: int) -> dict[str, Any]:
        return {"exactKey": key, "version": version, "current": 2}

    for version in (0, 1, 3):
        for run in (
            lambda v=version: c.ledger.acknowledge(key, v, True, sender=payer),
            lambda v=version: c.ledger.adjudicate(key, v, "approved", 1, sender=payer),
            lambda v=version: c.ledger.record_payment(key, v, 1, random_key(), sender=payer),
            lambda v=version: c.ledger.void_claim(key, v, sender=provider),
            lambda v=version: c.submit(c.void_entry(s, v)),
            lambda v=version: c.submit(c.replacement(s, v)),
        ):
            c.assert_refused(run, "ClaimLedgerUnknownClaim", unknown(version), keys=[key])
    assert c.ledger.claim_status(key, 1) == "none"
    assert c.ledger.claim_status(key, 2) == "submitted"


def test_a_reversed_payment_reopens_the_claim_for_a_corrected_settlement(consortium: Consortium) -> None:
    """835 CLP02 22: the payment is taken back, the settlement cleared, and the corrected one recorded."""
    c = consortium
    s = c.submit_new()
    key, payer = s.exact_key, c.payer_x.account
    c.advance(s, Status.PAID)
    c.assert_refused(
        lambda: c.ledger.reverse_payment(key, 1, b"\0" * 32, sender=payer),
        "ClaimLedgerZeroRemittanceHash",
        {"exactKey": key},
        keys=[key],
    )
    c.ledger.reverse_payment(key, 1, random_key(), sender=payer)
    assert c.ledger.claim_status(key, 1) == "accepted"
    cleared = c.ledger.settlement(key)
    assert (cleared["outcome"], cleared["allowed_amount"], cleared["paid_amount"], cleared["paid_at"]) == (
        "none",
        0,
        0,
        0,
    )
    c.assert_refused(
        lambda: c.ledger.reverse_payment(key, 1, random_key(), sender=payer),
        "ClaimLedgerInvalidTransition",
        {"exactKey": key, "from": Status.ACCEPTED, "to": Status.ACCEPTED},
        keys=[key],
    )
    allowed = s.total_charge - 1
    c.ledger.adjudicate(key, 1, "partly_approved", allowed, ["CO45"], sender=payer)
    c.ledger.record_payment(key, 1, allowed, random_key(), sender=payer)
    settled = c.ledger.settlement(key)
    assert (c.ledger.claim_status(key, 1), settled["allowed_amount"], settled["paid_amount"]) == (
        "paid",
        allowed,
        allowed,
    )


def test_days_to_payment_come_from_the_record(consortium: Consortium) -> None:
    c = consortium
    s = c.submit_new()
    key, payer = s.exact_key, c.payer_x.account
    c.assert_refused(
        lambda: c.ledger.call("daysToPayment", key),
        "ClaimLedgerInvalidTransition",
        {"exactKey": key, "from": Status.SUBMITTED, "to": Status.PAID},
    )
    submitted_at = c.ledger.claim_record(key)["submitted_at"]
    # The payer's steps on days 1, 2 and 3 (plus five hours) after submission.
    c.rpc("evm_setNextBlockTimestamp", [submitted_at + 1 * DAY])
    c.ledger.acknowledge(key, 1, True, ACCEPTED_REASON, sender=payer)
    c.rpc("evm_setNextBlockTimestamp", [submitted_at + 2 * DAY])
    c.ledger.adjudicate(key, 1, "approved", s.total_charge, sender=payer)
    c.rpc("evm_setNextBlockTimestamp", [submitted_at + 3 * DAY + 5 * 3600])
    c.ledger.record_payment(key, 1, s.total_charge, random_key(), sender=payer)

    settled = c.ledger.settlement(key)
    assert (settled["acknowledged_at"], settled["adjudicated_at"], settled["paid_at"]) == (
        submitted_at + DAY,
        submitted_at + 2 * DAY,
        submitted_at + 3 * DAY + 5 * 3600,
    )
    assert c.ledger.call("daysToPayment", key) == 3
    unknown = random_key()
    c.assert_refused(
        lambda: c.ledger.call("daysToPayment", unknown),
        "ClaimLedgerInvalidTransition",
        {"exactKey": unknown, "from": Status.NONE, "to": Status.PAID},
    )


# ------------------------------------------------------------------ the whole graph, stateful

RECORD_TYPE = "(uint8,uint8,bool,uint16,uint24,uint32,uint32,uint32,uint32,uint64)"
SETTLEMENT_TYPE = "(uint8,uint32,uint32,uint32,uint64,uint64)"
ADJUDICATIONS = {"approve": Outcome.APPROVED, "approve partly": Outcome.PARTLY_APPROVED, "deny": Outcome.DENIED}
MACHINE_PAYER_STEPS = ("accept", "reject", *ADJUDICATIONS, "pay")
MACHINE_PROVIDER_STEPS = (*PROVIDER_STEPS, "send again")
MISTAKES = (
    "other payer",
    "other provider",
    "older version, payer",
    "newer version, payer",
    "older version, provider",
    "newer version, provider",
)
MAX_LIVE = 3
"""Few live claims at a time, so that a run's steps move claims along rather than make more."""


@dataclass(frozen=True)
class SlotModel:
    """What the ledger should hold under one exact key."""

    claim: ClaimSubmission
    version: int
    status: Status
    outcome: Outcome = Outcome.NONE
    allowed: int = 0
    paid: int = 0

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def provider_may_end(self) -> bool:
        return self.live and self.status != Status.PAID


class LifecycleMachine(RuleBasedStateMachine):
    """Claims of PROV-A to PAYER-X or PAYER-Y, moved along the lifecycle graph by legal and
    illegal steps alike; a Python model predicts each answer and what the ledger then holds.

    Each step picks its claim from those it is legal for or from all of them (a coin toss),
    so runs get deep into the graph (adjudicated, paid) and still try every refusal.
    """

    def __init__(self, c: Consortium, snapshots: Snapshots) -> None:
        super().__init__()
        self.c = c
        self.snapshots = snapshots
        self.model: dict[bytes, SlotModel] = {}
        self.touched: bytes | None = None
        self.block = 0
        self.steps: list[str] = []
        """The events and errors this run saw, in order (for a failing run's report)."""

    @initialize()
    def fresh_ledger(self) -> None:
        if not self.snapshots.restore(BASE_SNAPSHOT):
            raise RuntimeError("the base consortium snapshot is gone")
        self.block = int(self.c.w3.eth.block_number)

    # -------------------------------------------------------------- helpers

    def _pick(self, data: st.DataObject, legal: Callable[[SlotModel], bool]) -> tuple[bytes, SlotModel]:
        # Slots in the order they were made: their keys are random, the order is not.
        fitting = [key for key, slot in self.model.items() if legal(slot)]
        # Hypothesis leans to False: a claim the step is legal for unless it draws "any claim".
        anyone = data.draw(st.booleans(), label="any claim, legal or not")
        pool = fitting if fitting and not anyone else list(self.model)
        key = data.draw(st.sampled_from(pool), label="claim")
        self.touched = key
        return key, self.model[key]

    def _has_claims(self) -> bool:
        return bool(self.model)

    def _payer(self, slot: SlotModel) -> str:
        return self.c.payer_account(slot.claim)

    def _ok(self, run: Callable[[], TransactionOutcome], events: list[tuple[str, dict[str, Any]]]) -> None:
        assert_events(run(), events)
        self.block += 1
        self.steps.append(events[0][0])

    def _refused(self, run: Callable[[], Any], error: str, args: dict[str, Any]) -> None:
        try:
            run()
        except ContractRevertError as refusal:
            assert (refusal.error, normalise(refusal.error_args)) == (error, normalise(args))
            self.steps.append(error)
        else:
            raise AssertionError(f"expected {error}{args}, the call went through")

    def _illegal(self, key: bytes, to: Status) -> tuple[str, dict[str, Any]]:
        return "ClaimLedgerInvalidTransition", {"exactKey": key, "from": self.model[key].status, "to": to}

    # -------------------------------------------------------------- provider rules

    @precondition(lambda self: sum(slot.live for slot in self.model.values()) < MAX_LIVE)
    @rule(to_y=st.booleans(), lines=st.integers(1, 3))
    def submit(self, to_y: bool, lines: int) -> None:
        c = self.c
        s = c.claim(c.payer_y if to_y else c.payer_x, lines=lines, charge=1_000 * lines)
        self._ok(lambda: c.submit(s), [submitted(s, 1, c.prov_a.index)])
        self.model[s.exact_key] = SlotModel(s, 1, Status.SUBMITTED)
        self.touched = s.exact_key

    @precondition(_has_claims)
    @rule(data=st.data(), step=st.sampled_from(MACHINE_PROVIDER_STEPS))
    def provider_step(self, data: st.DataObject, step: str) -> None:
        """Void, replace or send again a claim the step is legal for, or any claim."""
        if step == "send again":
            key, slot = self._pick(data, lambda slot: not slot.live)
            self._submit_again(key, slot)
        elif step.startswith("void"):
            key, slot = self._pick(data, lambda slot: slot.provider_may_end)
            self._void(key, slot, via_batch=step == "void entry")
        else:
            key, slot = self._pick(data, lambda slot: slot.provider_may_end)
            self._replace(key, slot, same_key=step == "replace (same key)")

    def _submit_again(self, key: bytes, slot: SlotModel) -> None:
        """The same exact key as a new original: refused while live, the next version once ended."""
        c = self.c
        s = c.claim(slot.claim.payer_org, exact_key=key, lines=1, charge=slot.claim.total_charge)
        if slot.live:
            refused = {
                "exactKey": key,
                "existingVersion": slot.version,
                "submitterOrg": c.prov_a.index,
                "documentHash": s.document_hash,
            }
            self._ok(lambda: c.submit(s), [("DuplicateRefused", refused)])
        else:
            self._ok(lambda: c.submit(s), [submitted(s, slot.version + 1, c.prov_a.index)])
            self.model[key] = SlotModel(s, slot.version + 1, Status.SUBMITTED)

    def _void(self, key: bytes, slot: SlotModel, *, via_batch: bool) -> None:
        c = self.c
        if via_batch:
            run = lambda: c.submit(c.void_entry(slot.claim, slot.version))  # noqa: E731
        else:
            run = lambda: c.ledger.void_claim(key, slot.version, sender=c.prov_a.accounts[1])  # noqa: E731
        if slot.provider_may_end:
            self._ok(run, [("ClaimVoided", {"exactKey": key, "version": slot.version, "providerOrg": c.prov_a.index})])
            self.model[key] = replace(slot, status=Status.VOIDED)
        else:
            self._refused(run, *self._illegal(key, Status.VOIDED))

    def _replace(self, key: bytes, slot: SlotModel, *, same_key: bool) -> None:
        c = self.c
        # New line keys: this machine is about the lifecycle; suspect lines are test_contract_duplicates'.
        r = c.replacement(slot.claim, slot.version, exact_key=key if same_key else None, line_keys=[random_key()])
        if not slot.provider_may_end:
            self._refused(lambda: c.submit(r), *self._illegal(key, Status.REPLACED))
            return
        new_version = slot.version + 1 if same_key else 1
        replaced = {
            "exactKey": key,
            "version": slot.version,
            "replacementKey": r.exact_key,
            "replacementVersion": new_version,
        }
        self._ok(lambda: c.submit(r), [("ClaimReplaced", replaced), submitted(r, new_version, c.prov_a.index)])
        if not same_key:
            self.model[key] = replace(slot, status=Status.REPLACED)
        self.model[r.exact_key] = SlotModel(r, new_version, Status.SUBMITTED)
        self.touched = r.exact_key

    # -------------------------------------------------------------- payer rules

    @precondition(_has_claims)
    @rule(data=st.data())
    def payer_step(self, data: st.DataObject) -> None:
        """Mostly the next legal payer step of the claim furthest along (so runs reach paid
        claims); otherwise any payer step on any claim, which the model may expect refused."""
        progress = {Status.ADJUDICATED: 0, Status.ACCEPTED: 1, Status.SUBMITTED: 2}
        movable = sorted(
            (key for key, slot in self.model.items() if slot.status in progress and slot.outcome != Outcome.DENIED),
            key=lambda key: progress[self.model[key].status],
        )
        anything = data.draw(st.booleans(), label="any payer step on any claim")
        if movable and not anything:
            key = data.draw(st.sampled_from(movable), label="claim")
            step = {
                Status.SUBMITTED: st.sampled_from(["accept", "reject"]),
                Status.ACCEPTED: st.sampled_from(["approve", "approve partly", "deny"]),
                Status.ADJUDICATED: st.just("pay"),
            }[self.model[key].status]
        else:
            key = data.draw(st.sampled_from(list(self.model)), label="claim")
            step = st.sampled_from(MACHINE_PAYER_STEPS)
        self.touched = key
        taken = data.draw(step, label="payer step")
        if taken in ("accept", "reject"):
            self._acknowledge(key, taken == "accept")
        elif taken == "pay":
            self._pay(key)
        else:
            self._adjudicate(key, ADJUDICATIONS[taken])

    def _acknowledge(self, key: bytes, accepted: bool) -> None:
        c, slot = self.c, self.model[key]
        reason = ACCEPTED_REASON if accepted else REJECTED_REASON
        run = lambda: c.ledger.acknowledge(key, slot.version, accepted, reason, sender=self._payer(slot))  # noqa: E731
        to = Status.ACCEPTED if accepted else Status.REJECTED
        if slot.status != Status.SUBMITTED:
            self._refused(run, *self._illegal(key, to))
            return
        event = {
            "exactKey": key,
            "version": slot.version,
            "payerOrg": slot.claim.payer_org,
            "accepted": accepted,
            "reasonCode": bytes8(reason),
        }
        self._ok(run, [("ClaimAcknowledged", event)])
        self.model[key] = replace(slot, status=to)

    def _adjudicate(self, key: bytes, outcome: Outcome) -> None:
        c, slot = self.c, self.model[key]
        charge = slot.claim.total_charge
        allowed = {Outcome.APPROVED: charge, Outcome.PARTLY_APPROVED: charge // 3, Outcome.DENIED: 0}[outcome]
        codes = () if outcome == Outcome.APPROVED else ("CO45",)
        run = lambda: c.ledger.adjudicate(  # noqa: E731
            key, slot.version, outcome.label, allowed, codes, sender=self._payer(slot)
        )
        if slot.status != Status.ACCEPTED:
            self._refused(run, *self._illegal(key, Status.ADJUDICATED))
            return
        event = {
            "exactKey": key,
            "version": slot.version,
            "payerOrg": slot.claim.payer_org,
            "outcome": outcome,
            "allowedAmount": allowed,
            "carcCodes": [bytes4(code) for code in codes],
        }
        self._ok(run, [("ClaimAdjudicated", event)])
        self.model[key] = replace(slot, status=Status.ADJUDICATED, outcome=outcome, allowed=allowed)

    def _pay(self, key: bytes) -> None:
        c, slot = self.c, self.model[key]
        remittance = random_key()
        run = lambda: c.ledger.record_payment(  # noqa: E731
            key, slot.version, slot.allowed, remittance, sender=self._payer(slot)
        )
        if slot.status != Status.ADJUDICATED:
            self._refused(run, *self._illegal(key, Status.PAID))
        elif slot.outcome == Outcome.DENIED:
            self._refused(run, "ClaimLedgerNotPayable", {"exactKey": key, "outcome": Outcome.DENIED})
        else:
            event = {
                "exactKey": key,
                "version": slot.version,
                "payerOrg": slot.claim.payer_org,
                "paidAmount": slot.allowed,
                "remittanceHash": remittance,
            }
            self._ok(run, [("ClaimPaid", event)])
            self.model[key] = replace(slot, status=Status.PAID, paid=slot.allowed)

    # -------------------------------------------------------------- the wrong party, a stale version

    @precondition(_has_claims)
    @rule(data=st.data(), mistake=st.sampled_from(MISTAKES))
    def wrong_call(self, data: st.DataObject, mistake: str) -> None:
        """The wrong payer or provider, or a version the slot does not hold now."""
        c = self.c
        key, slot = self._pick(data, lambda slot: True)
        if mistake == "other payer":
            other = c.payer_y if slot.claim.payer_org == c.payer_x.index else c.payer_x
            self._refused(
                lambda: c.ledger.acknowledge(key, slot.version, True, sender=other.account),
                "ClaimLedgerNotClaimPayer",
                {"exactKey": key, "callerOrg": other.index, "payerOrg": slot.claim.payer_org},
            )
        elif mistake == "other provider":
            self._refused(
                lambda: c.ledger.void_claim(key, slot.version, sender=c.prov_b.account),
                "ClaimLedgerNotClaimProvider",
                {"exactKey": key, "callerOrg": c.prov_b.index, "providerOrg": c.prov_a.index},
            )
        else:
            version = slot.version - 1 if mistake.startswith("older") else slot.version + 1
            if mistake.endswith("payer"):
                run = lambda: c.ledger.acknowledge(key, version, True, sender=self._payer(slot))  # noqa: E731
            else:
                run = lambda: c.ledger.void_claim(key, version, sender=c.prov_a.account)  # noqa: E731
            unknown = {"exactKey": key, "version": version, "current": slot.version}
            self._refused(run, "ClaimLedgerUnknownClaim", unknown)

    # -------------------------------------------------------------- the ledger equals the model

    @invariant()
    def ledger_matches_model(self) -> None:
        """Every slot's live version, and the touched slot's record, payer figures and status,
        read in one JSON-RPC batch; no block mined unless a step was legal."""
        if not self.model:
            return
        c, keys = self.c, list(self.model)
        views: list[tuple[str, tuple[Any, ...], str]] = [("liveVersions(bytes32[])", (keys,), "uint32[]")]
        key = self.touched
        assert key is not None
        slot = self.model[key]
        views += [
            ("claimRecord(bytes32)", (key,), RECORD_TYPE),
            ("settlement(bytes32)", (key,), SETTLEMENT_TYPE),
            ("claimStatus(bytes32,uint32)", (key, slot.version), "uint8"),
        ]
        block, (live_versions, record, settled, status) = c.read_views(*views)
        assert block == self.block, "a refused step mined a block, or a legal one did not"
        assert list(live_versions) == [m.version if m.live else 0 for m in self.model.values()]
        s = slot.claim
        assert record[:7] == (
            slot.status,
            s.frequency,
            False,
            len(s.line_keys),
            slot.version,
            c.prov_a.index,
            s.payer_org,
        )
        assert (record[7], record[9]) == (s.key_id, s.total_charge)
        assert (settled[0], settled[4], settled[5]) == (slot.outcome, slot.allowed, slot.paid)
        assert status == slot.status

    def teardown(self) -> None:
        """Once per run: every slot's status, as claimStatus gives it for its current version."""
        if self.model:
            views = [("claimStatus(bytes32,uint32)", (key, slot.version), "uint8") for key, slot in self.model.items()]
            _, statuses = self.c.read_views(*views)
            assert statuses == [slot.status for slot in self.model.values()]


def test_lifecycle_state_machine(deployed_consortium: Consortium, snapshots: Snapshots) -> None:
    run_state_machine_as_test(
        lambda: LifecycleMachine(deployed_consortium, snapshots),  # type: ignore[arg-type]  # a factory works too
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
