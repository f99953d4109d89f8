"""A stateful test of the payer lifecycle: brownie's state machine against a Python model.

Before the state machine starts, a portfolio of claims is built, one or two in each status
(submitted, accepted, rejected, adjudicated as approved, partly approved and denied, paid,
voided); brownie snapshots the chain there and every run starts from it, so even the short
runs have claims for every rule. Rules: submit (a fresh exact key, or one already used:
refused as a duplicate while its claim is live, a new version once it has ended),
acknowledge (accept or reject), adjudicate (approve, partly approve, deny), pay, void
(voidClaim or a frequency-8 submission), and a payer acting on another payer's claim. Rules
mostly pick a claim whose status allows the step; a step the model says is not allowed must
revert with the contract's custom error (checked with eth_call, quicker than mining the
revert; test_claim_ledger.py checks reverting transactions). Invariant: claimStatus(key,
version) equals the model for every claim version ever recorded (a superseded one reads
None), read in one JSON-RPC batch of eth_calls.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import brownie
from brownie import web3
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
from hypothesis import HealthCheck

# Hypothesis spends its first 10 examples on short runs (its small-example phase), the rest
# on longer ones. Health checks are off, as hypothesis itself has them for a state machine
# run without settings: runs of this size overrun its small-example buffer now and then,
# and data_too_large then fails the test at random.
SETTINGS = {"max_examples": 20, "stateful_step_count": 15, "suppress_health_check": list(HealthCheck)}
REASON = "0x" + b"A3:21".ljust(8, b"\0").hex()  # bytes8 reason code of a rejection
CARC_45 = "0x" + b"45".ljust(4, b"\0").hex()  # bytes4 CARC code of an adjustment
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

    def __init__(cls, portfolio):
        # brownie calls __init__ once, on the class; setup() runs before every run, with the
        # chain reverted to the portfolio
        cls.portfolio = portfolio
        cls.ledger, cls.provider, cls.payers = portfolio.ledger, portfolio.provider, portfolio.payers
        cls.payer_orgs, cls.claims = portfolio.payer_orgs, portfolio.claims

    def setup(self):
        self.model: dict[str, ModelClaim] = copy.deepcopy(self.portfolio.model)
        self.keys: list[str] = list(self.model)  # exact keys, in the order first used
        self.recorded: list[tuple[str, int]] = [(k, c.version) for k, c in self.model.items()]

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
        expected = [self.model[k].status if self.model[k].version == v else S_NONE for k, v in self.recorded]
        assert claim_statuses(self.ledger, self.recorded) == expected


def claim_statuses(ledger, claims):
    """claimStatus(key, version) of every (key, version), in one JSON-RPC batch of eth_calls."""
    requests = [
        ("eth_call", [{"to": ledger.address, "data": ledger.claimStatus.encode_input(key, version)}, "latest"])
        for key, version in claims
    ]
    if not requests:
        return []
    responses = sorted(web3.provider.make_batch_request(requests), key=lambda r: r["id"])
    assert all("result" in r for r in responses), responses
    return [int(r["result"], 16) for r in responses]


class Portfolio(PayerLifecycle):
    """The claims every run starts from, built once through the same steps as the rules."""

    def __init__(self, ledger, provider, payers, payer_orgs, claims):
        self.ledger, self.provider, self.payers, self.payer_orgs, self.claims = (
            ledger,
            provider,
            payers,
            payer_orgs,
            claims,
        )
        self.model, self.keys, self.recorded = {}, [], []
        # (payer, charge, steps): steps taken after submission
        plan = [
            (0, 12_000, ()),
            (1, 1, ()),
            (0, 45_000, ("accept",)),
            (1, 8_000, ("reject",)),
            (0, 30_000, ("accept", O_APPROVED)),
            (1, 25_001, ("accept", O_PARTLY_APPROVED)),
            (0, 9_999, ("accept", O_DENIED)),
            (1, 70_000, ("accept", O_APPROVED, "pay")),
            (0, 5_000, ("void",)),
        ]
        batch = [claims.claim(payer_orgs[payer], charge) for payer, charge, _ in plan]
        ledger.submitClaims(batch, {"from": provider})
        for (payer, charge, steps), submission in zip(plan, batch, strict=True):
            key = submission[0]
            self._record(key, 1, payer, charge)
            claim = self.model[key]
            for step in steps:
                if step in ("accept", "reject"):
                    self._acknowledge(key, claim, step == "accept")
                elif step == "pay":
                    self._pay(key, claim)
                elif step == "void":
                    ledger.voidClaim(key, 1, {"from": provider})
                    claim.status = S_VOIDED
                else:
                    self._adjudicate(key, claim, step)
        assert claim_statuses(ledger, self.recorded) == [c.status for c in self.model.values()]
        assert {c.status for c in self.model.values()} == {
            S_SUBMITTED,
            S_ACCEPTED,
            S_REJECTED,
            S_ADJUDICATED,
            S_PAID,
            S_VOIDED,
        }


def test_payer_lifecycle(state_machine, ledger, provider, payers, payer_orgs, claims):
    portfolio = Portfolio(ledger, provider, payers, payer_orgs, claims)
    state_machine(PayerLifecycle, portfolio, settings=SETTINGS)
