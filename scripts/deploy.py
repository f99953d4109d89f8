"""Deploys ClaimLedger on brownie's development network with a demo consortium.

    bash scripts/brownie.sh run scripts/deploy.py

accounts[0] deploys (admin delay 0) and is the default admin and operator; accounts[1..4]
become the accounts of a provider, two payers and an auditor; one fingerprint key id is
accepted. This is a brownie script (brownie's own environment, .venv-brownie): the runtime
deploys with ledger/deploy.py instead. tests/brownie reuses `deploy_consortium`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLE_PROVIDER, ROLE_PAYER, ROLE_AUDITOR = 1, 2, 3
DEMO_KEY_ID = 1
# (organisation id, role); organisation i+1 gets accounts[i+1]
DEMO_ORGANISATIONS = (
    ("demo-provider", ROLE_PROVIDER),
    ("demo-payer-a", ROLE_PAYER),
    ("demo-payer-b", ROLE_PAYER),
    ("demo-auditor", ROLE_AUDITOR),
)


def org_id(name: str) -> str:
    """The bytes32 organisation id of `name`: its ASCII bytes, right-padded with zeros."""
    raw = name.encode("ascii")
    if not raw or len(raw) > 32:
        raise ValueError(f"organisation name must be 1 to 32 ASCII bytes: {name!r}")
    return "0x" + raw.ljust(32, b"\0").hex()


@dataclass
class Consortium:
    """The deployed ledger and who is who in the demo consortium."""

    ledger: Any
    admin: Any
    key_id: int
    orgs: dict[str, int] = field(default_factory=dict)  # organisation id -> index
    accounts: dict[str, Any] = field(default_factory=dict)  # organisation id -> account

    @property
    def provider(self) -> Any:
        return self.accounts["demo-provider"]

    @property
    def payers(self) -> list[Any]:
        return [self.accounts["demo-payer-a"], self.accounts["demo-payer-b"]]

    @property
    def auditor(self) -> Any:
        return self.accounts["demo-auditor"]


def deploy_consortium(container: Any, accounts: Any, *, key_id: int = DEMO_KEY_ID) -> Consortium:
    """Deploy `container` (brownie's ClaimLedger) from accounts[0] and register the demo consortium."""
    admin = accounts[0]
    opts = {"from": admin}
    ledger = container.deploy(0, admin, opts)
    consortium = Consortium(ledger=ledger, admin=admin, key_id=key_id)
    for i, (name, role) in enumerate(DEMO_ORGANISATIONS, start=1):
        tx = ledger.registerOrganisation(org_id(name), role, opts)
        org = tx.events["OrganisationRegistered"]["org"]
        ledger.addAccount(org, accounts[i], opts)
        consortium.orgs[name] = org
        consortium.accounts[name] = accounts[i]
    ledger.setFingerprintKey(key_id, True, opts)
    return consortium


def main() -> Consortium:
    from brownie import ClaimLedger, accounts, network

    consortium = deploy_consortium(ClaimLedger, accounts)
    ledger = consortium.ledger
    print()
    print(f"network:   {network.show_active()} (chain id {network.chain.id})")
    print(f"ClaimLedger: {ledger.address}")
    print(f"admin/operator: {consortium.admin.address}")
    roles = {ROLE_PROVIDER: "provider", ROLE_PAYER: "payer", ROLE_AUDITOR: "auditor"}
    for name, role in DEMO_ORGANISATIONS:
        org = consortium.orgs[name]
        assert ledger.organisationOf(consortium.accounts[name]) == org
        print(f"org {org}: {name:<14} {roles[role]:<8} account {consortium.accounts[name].address}")
    assert ledger.isFingerprintKeyAccepted(consortium.key_id)
    print(f"fingerprint key id accepted: {consortium.key_id}")
    return consortium
