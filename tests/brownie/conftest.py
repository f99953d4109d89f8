"""Fixtures of the brownie tests (run with `bash scripts/brownie.sh test`, never plain pytest).

brownie's pytest plugin provides `accounts`, `chain`, the `ClaimLedger` container and the
isolation fixtures; the consortium is deployed once per module by scripts/deploy.py's
`deploy_consortium` and every test runs against a snapshot of it (fn_isolation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from scripts.deploy import DEMO_KEY_ID, deploy_consortium

FREQUENCY_ORIGINAL, FREQUENCY_REPLACEMENT, FREQUENCY_VOID = 1, 7, 8

# IClaimLedger.Status / Outcome
STATUS = ("None", "Submitted", "Accepted", "Rejected", "Adjudicated", "Paid", "Voided", "Replaced")
S_NONE, S_SUBMITTED, S_ACCEPTED, S_REJECTED, S_ADJUDICATED, S_PAID, S_VOIDED, S_REPLACED = range(8)
O_NONE, O_APPROVED, O_PARTLY, O_DENIED = range(4)


def pack_terms(
    total_charge: int,
    key_id: int,
    payer_org: int,
    *,
    line_count: int = 1,
    frequency: int = FREQUENCY_ORIGINAL,
    related_version: int = 0,
) -> int:
    """`ClaimSubmission.terms`, packed as IClaimLedger.sol documents (checked against packTerms)."""
    return (
        total_charge
        | key_id << 96
        | payer_org << 128
        | related_version << 160
        | line_count << 192
        | frequency << 208
    )


def b32(n: int, tag: int) -> str:
    """A distinct non-zero bytes32 per (tag, n)."""
    return "0x" + (tag.to_bytes(1, "big") + n.to_bytes(31, "big")).hex()


@dataclass
class ClaimFactory:
    """Makes claim submissions with fresh keys: (exactKey, documentHash, relatedKey, terms, lineKeys)."""

    key_id: int
    counter: Any = None

    def __post_init__(self) -> None:
        self.counter = itertools.count(1)

    def new_key(self) -> str:
        return b32(next(self.counter), 0xE1)

    def claim(
        self, payer_org: int, charge: int = 12_500, lines: int = 1, exact_key: str | None = None, **terms: int
    ) -> tuple:
        key = exact_key or self.new_key()
        n = next(self.counter)
        line_keys = [b32(n * 16 + j, 0x11) for j in range(lines)]
        return (key, b32(n, 0xD0), terms.pop("related_key", "0x" + "00" * 32),
                pack_terms(charge, self.key_id, payer_org, line_count=lines, **terms), line_keys)


@pytest.fixture(scope="module")
def consortium(ClaimLedger, accounts):
    return deploy_consortium(ClaimLedger, accounts, quiet=True)


@pytest.fixture(scope="module")
def ledger(consortium):
    return consortium.ledger


@pytest.fixture(scope="module")
def provider(consortium):
    return consortium.provider


@pytest.fixture(scope="module")
def payers(consortium):
    return consortium.payers


@pytest.fixture(scope="module")
def payer_orgs(consortium):
    return [consortium.orgs["demo-payer-a"], consortium.orgs["demo-payer-b"]]


@pytest.fixture
def claims():
    return ClaimFactory(DEMO_KEY_ID)


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the freshly deployed consortium."""
