"""A stateful test of the payer lifecycle: brownie's state machine against a Python model.

Each run starts (initialize rule) with a batch of claims that are taken through the payer
steps to a drawn stage (submitted, accepted, rejected, adjudicated, paid), so every rule has
claims to act on from the first step. Rules: submit (a fresh exact key, or one already used:
refused as a duplicate while its claim is live, a new version once it has ended),
acknowledge (accept or reject), adjudicate (approve, partly approve, deny), pay, void
(voidClaim or a frequency-8 submission), and a payer acting on another payer's claim. Rules
mostly pick a claim whose status allows the step; a step the model says is not allowed must
revert with the contract's custom error (checked with eth_call, quicker than mining the
revert; test_claim_ledger.py checks reverting transactions). Invariant: claimStatus(key,
version) equals the model for every claim version ever recorded (a superseded one reads None).
"""

from __future__ import annotations

from dataclasses import dataclass

import brownie
from brownie.test import strategy
from conftest import (
    LIVE,
    O_APPROVED,
    O_DENIED,
    O_NONE,
    O_PARTLY_APPROVED,
    S_ACCEPTED,
    S_ADJUDICATED,
    S_NONE,
    S_PAID,
    S_REJECTED,
    S_SUBMITTED,
    S_VOIDED,
    typed_error,
)
from hypothesis import strategies as st

# hypothesis spends its first 10 examples on short runs (its small-example phase), the rest
# on longer ones; the whole test takes about 15-30 s
SETTINGS = {"max_examples": 20, "stateful_step_count": 15}
REASON = "0x" + b"A3:21".ljust(8, b"\0").hex()  # bytes8 reason code of a rejection
CARC_45 = "0x" + b"45".ljust(4, b"\0").hex()  # bytes4 CARC code of an adjustment
REMITTANCE = "0x" + "cd" * 32

# stages a claim of the initial batch is taken to
STAGE_SUBMITTED, STAGE_ACCEPTED, STAGE_REJECTED, STAGE_ADJUDICATED, STAGE_PAID = range(5)


@dataclass
class ModelClaim:
    version: int
    status: int
    payer: int  # 0 or 1: index into payers / payer_orgs
    charge: int
    outcome: int = O_NONE
    allowed: int = 0


class PayerLifecycle:
    st_pick = strategy("uint16")
    st_payer = strategy("uint8", max_value=1)
    st_flag = strategy("bool")
    st_outcome = strategy("uint8", min_value=O_APPROVED, max_value=O_DENIED)
    st_charge = strategy("uint64", min_value=1, max_value=10**9)
    st_batch = st.lists(
        st.tuples(st.integers(0, 1), st.integers(1, 10**9), st.integers(STAGE_SUBMITTED, STAGE_PAID)),
        min_size=2,
        max_size=4,
    )

    def __init__(cls, ledger, provider, payers, payer_orgs, claims):
        # brownie calls __init__ once, on the class; setup() runs before every run
        cls.ledger, cls.provider, cls.payers, cls.payer_orgs, cls.claims = ledger, provider, payers, payer_orgs, claims

    def setup(self):
        self.model: dict[str, ModelClaim] = {}
        self.keys: list[str] = []  # exact keys, in the order first used
        self.recorded: list[tuple[str, int]] = []  # every (key, version) ever recorded

    # -------------------------------------------------------------- helpers

    def _pick(self, st_pick, *eligible):
        """A claim: mostly (3 in 4) one whose status allows the step, if there is one; else any."""
        if not self.keys:
            return None, None
        keys = [k for k in self.keys if self.model[k].status in eligible]
        if not keys or st_pick % 4 == 3:
            keys = self.keys
        key = keys[(st_pick // 4) % len(keys)]
        return key, self.model[key]

    def _record(self, key, version, payer, charge):
        if key not in self.model:
            self.keys.append(key)
        self.model[key] = ModelClaim(version, S_SUBMITTED, payer, charge)
        self.recorded.append((key, version))

    def _acknowledge(self, key, claim, accepted):
        tx = self.ledger.acknowledge(key, claim.version, accepted, REASON, {"from": self.payers[claim.payer]})
        assert tx.events["ClaimAcknowledged"]["accepted"] is accepted
        claim.status = S_ACCEPTED if accepted else S_REJECTED

    def _adjudication(self, key, claim, outcome):
        allowed = {O_APPROVED: claim.charge, O_PARTLY_APPROVED: max(1, claim.charge // 2), O_DENIED: 0}[outcome]
        carc = [] if outcome == O_APPROVED else [CARC_45]
        return allowed, (key, claim.version, outcome, allowed, carc, {"from": self.payers[claim.payer]})

    def _adjudicate(self, key, claim, outcome):
        allowed, args = self._adjudication(key, claim, outcome)
        tx = self.ledger.adjudicate(*args)
        assert tx.events["ClaimAdjudicated"]["allowedAmount"] == allowed
        claim.status, claim.outcome, claim.allowed = S_ADJUDICATED, outcome, allowed

    def _pay(self, key, claim):
        tx = self.ledger.recordPayment(
            key, claim.version, claim.allowed, REMITTANCE, {"from": self.payers[claim.payer]}
        )
        assert tx.events["ClaimPaid"]["paidAmount"] == claim.allowed
        claim.status = S_PAID

    # -------------------------------------------------------------- rules

    def initialize_claims(self, st_batch):
        """A first batch of fresh claims to both payers, each taken to its drawn stage."""
        batch = [self.claims.claim(self.payer_orgs[payer], charge) for payer, charge, _ in st_batch]
        tx = self.ledger.submitClaims(batch, {"from": self.provider})
        assert [e["version"] for e in tx.events["ClaimSubmitted"]] == [1] * len(batch)
        for i, ((payer, charge, stage), submission) in enumerate(zip(st_batch, batch, strict=True)):
            key = submission[0]
            self._record(key, 1, payer, charge)
            claim = self.model[key]
            if stage == STAGE_SUBMITTED:
                continue
            self._acknowledge(key, claim, stage != STAGE_REJECTED)
            if stage in (STAGE_ADJUDICATED, STAGE_PAID):
                # a claim to be paid is approved or partly approved; otherwise any outcome
                outcomes = (O_APPROVED, O_PARTLY_APPROVED) + (() if stage == STAGE_PAID else (O_DENIED,))
                self._adjudicate(key, claim, outcomes[(charge + i) % len(outcomes)])
            if stage == STAGE_PAID:
                self._pay(key, claim)

    def rule_submit(self, st_payer, st_charge, st_pick, st_flag):
        reuse = st_flag and bool(self.keys)
        key = self.keys[st_pick % len(self.keys)] if reuse else None
        submission = self.claims.claim(self.payer_orgs[st_payer], st_charge, exact_key=key)
        key = submission[0]
        tx = self.ledger.submitClaims([submission], {"from": self.provider})
        held = self.model.get(key)
        if held is not None and held.status in LIVE:
            assert "ClaimSubmitted" not in tx.events
            assert tx.events["DuplicateRefused"]["existingVersion"] == held.version
            return
        version = held.version + 1 if held else 1
        assert tx.events["ClaimSubmitted"]["version"] == version
        self._record(key, version, st_payer, st_charge)

    def rule_acknowledge(self, st_pick, st_flag):
        key, claim = self._pick(st_pick, S_SUBMITTED)
        if claim is None:
            return
        if claim.status != S_SUBMITTED:
            to = S_ACCEPTED if st_flag else S_REJECTED
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, to)):
                self.ledger.acknowledge.call(key, claim.version, st_flag, REASON, {"from": self.payers[claim.payer]})
            return
        self._acknowledge(key, claim, st_flag)

    def rule_adjudicate(self, st_pick, st_outcome):
        key, claim = self._pick(st_pick, S_ACCEPTED)
        if claim is None:
            return
        if claim.status != S_ACCEPTED:
            _, args = self._adjudication(key, claim, st_outcome)
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_ADJUDICATED)):
                self.ledger.adjudicate.call(*args)
            return
        self._adjudicate(key, claim, st_outcome)

    def rule_pay(self, st_pick):
        key, claim = self._pick(st_pick, S_ADJUDICATED)
        if claim is None:
            return
        if claim.status != S_ADJUDICATED or claim.outcome == O_DENIED:
            args = (key, claim.version, claim.allowed, REMITTANCE, {"from": self.payers[claim.payer]})
            if claim.status != S_ADJUDICATED:
                expected = typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_PAID)
            else:
                expected = typed_error("ClaimLedgerNotPayable", key, O_DENIED)
            with brownie.reverts(expected):
                self.ledger.recordPayment.call(*args)
            return
        self._pay(key, claim)

    def rule_void(self, st_pick, st_flag):
        """The provider voids a claim: voidClaim, or (st_flag) a frequency-8 submission."""
        key, claim = self._pick(st_pick, S_SUBMITTED, S_ACCEPTED, S_ADJUDICATED)
        if claim is None:
            return
        if st_flag:
            void, args = self.ledger.submitClaims, ([self.claims.void(key, claim.version)], {"from": self.provider})
        else:
            void, args = self.ledger.voidClaim, (key, claim.version, {"from": self.provider})
        if claim.status == S_PAID or claim.status not in LIVE:
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_VOIDED)):
                void.call(*args)
            return
        tx = void(*args)
        assert tx.events["ClaimVoided"]["version"] == claim.version
        claim.status = S_VOIDED

    def rule_other_payer(self, st_pick):
        """The payer a claim is not addressed to cannot acknowledge it, whatever its status."""
        key, claim = self._pick(st_pick)
        if claim is None:
            return
        other = 1 - claim.payer
        expected = typed_error("ClaimLedgerNotClaimPayer", key, self.payer_orgs[other], self.payer_orgs[claim.payer])
        with brownie.reverts(expected):
            self.ledger.acknowledge.call(key, claim.version, True, REASON, {"from": self.payers[other]})

    # -------------------------------------------------------------- invariant

    def invariant_status_matches_model(self):
        for key, version in self.recorded:
            claim = self.model[key]
            expected = claim.status if claim.version == version else S_NONE
            assert self.ledger.claimStatus(key, version) == expected, (key, version)


def test_payer_lifecycle(state_machine, ledger, provider, payers, payer_orgs, claims):
    state_machine(PayerLifecycle, ledger, provider, payers, payer_orgs, claims, settings=SETTINGS)
