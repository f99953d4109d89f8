"""A stateful test of the payer lifecycle: brownie's state machine against a Python model.

Rules: submit (a fresh exact key, or one already used: refused as a duplicate while its claim
is live, a new version once it has ended), acknowledge (accept or reject), adjudicate
(approve, partly approve, deny), pay, void (voidClaim or a frequency-8 submission), and a
payer acting on another payer's claim. A step the model says is not allowed must revert with
the contract's custom error. Invariant: claimStatus(key, version) equals the model for every
claim version ever recorded (a superseded version reads None).
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

SETTINGS = {"max_examples": 15, "stateful_step_count": 12}
REASON = "0x" + b"A3:21".ljust(8, b"\0").hex()
CARC_45 = "0x" + b"45".ljust(4, b"\0").hex()
REMITTANCE = "0x" + "cd" * 32


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

    def __init__(cls, ledger, provider, payers, payer_orgs, claims):
        # brownie calls __init__ once on the class; setup() runs before every example
        cls.ledger, cls.provider, cls.payers, cls.payer_orgs, cls.claims = ledger, provider, payers, payer_orgs, claims

    def setup(self):
        self.model: dict[str, ModelClaim] = {}
        self.keys: list[str] = []  # exact keys in the order first used
        self.recorded: list[tuple[str, int]] = []  # every (key, version) ever recorded

    # -------------------------------------------------------------- helpers

    def _pick(self, st_pick):
        if not self.keys:
            return None, None
        key = self.keys[st_pick % len(self.keys)]
        return key, self.model[key]

    def _payer(self, claim):
        return self.payers[claim.payer]

    # -------------------------------------------------------------- rules

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
        if held is None:
            self.keys.append(key)
        self.model[key] = ModelClaim(version, S_SUBMITTED, st_payer, st_charge)
        self.recorded.append((key, version))

    def rule_acknowledge(self, st_pick, st_flag):
        key, claim = self._pick(st_pick)
        if claim is None:
            return
        to = S_ACCEPTED if st_flag else S_REJECTED
        if claim.status != S_SUBMITTED:
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, to)):
                self.ledger.acknowledge(key, claim.version, st_flag, REASON, {"from": self._payer(claim)})
            return
        tx = self.ledger.acknowledge(key, claim.version, st_flag, REASON, {"from": self._payer(claim)})
        assert tx.events["ClaimAcknowledged"]["accepted"] is st_flag
        claim.status = to

    def rule_adjudicate(self, st_pick, st_outcome):
        key, claim = self._pick(st_pick)
        if claim is None:
            return
        allowed = {O_APPROVED: claim.charge, O_PARTLY_APPROVED: max(1, claim.charge // 2), O_DENIED: 0}[st_outcome]
        carc = [] if st_outcome == O_APPROVED else [CARC_45]
        args = (key, claim.version, st_outcome, allowed, carc, {"from": self._payer(claim)})
        if claim.status != S_ACCEPTED:
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_ADJUDICATED)):
                self.ledger.adjudicate(*args)
            return
        tx = self.ledger.adjudicate(*args)
        assert tx.events["ClaimAdjudicated"]["allowedAmount"] == allowed
        claim.status, claim.outcome, claim.allowed = S_ADJUDICATED, st_outcome, allowed

    def rule_pay(self, st_pick):
        key, claim = self._pick(st_pick)
        if claim is None:
            return
        args = (key, claim.version, claim.allowed, REMITTANCE, {"from": self._payer(claim)})
        if claim.status != S_ADJUDICATED:
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_PAID)):
                self.ledger.recordPayment(*args)
            return
        if claim.outcome == O_DENIED:
            with brownie.reverts(typed_error("ClaimLedgerNotPayable", key, O_DENIED)):
                self.ledger.recordPayment(*args)
            return
        self.ledger.recordPayment(*args)
        claim.status = S_PAID

    def rule_void(self, st_pick, st_flag):
        """The provider voids a claim: voidClaim, or (st_flag) a frequency-8 submission."""
        key, claim = self._pick(st_pick)
        if claim is None:
            return

        def void():
            if st_flag:
                return self.ledger.submitClaims([self.claims.void(key, claim.version)], {"from": self.provider})
            return self.ledger.voidClaim(key, claim.version, {"from": self.provider})

        if claim.status == S_PAID or claim.status not in LIVE:
            with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", key, claim.status, S_VOIDED)):
                void()
            return
        tx = void()
        assert tx.events["ClaimVoided"]["version"] == claim.version
        claim.status = S_VOIDED

    def rule_other_payer(self, st_pick):
        """The payer a claim is not addressed to cannot acknowledge it, whatever its status."""
        key, claim = self._pick(st_pick)
        if claim is None:
            return
        other = 1 - claim.payer
        with brownie.reverts(
            typed_error("ClaimLedgerNotClaimPayer", key, self.payer_orgs[other], self.payer_orgs[claim.payer])
        ):
            self.ledger.acknowledge(key, claim.version, True, REASON, {"from": self.payers[other]})

    # -------------------------------------------------------------- invariant

    def invariant_status_matches_model(self):
        for key, version in self.recorded:
            claim = self.model[key]
            expected = claim.status if claim.version == version else S_NONE
            assert self.ledger.claimStatus(key, version) == expected, (key, version)


def test_payer_lifecycle(state_machine, ledger, provider, payers, payer_orgs, claims):
    state_machine(PayerLifecycle, ledger, provider, payers, payer_orgs, claims, settings=SETTINGS)
