"""Who may call what: every contract function against every kind of caller, on a real chain.

The table below is the permission model written down once. A refused cell names the exact
custom error with its arguments and shows the call changed nothing; an allowed cell shows
the events a user (an indexer, an auditor) would see.
"""

# ruff: noqa: E501 - the permission table is one row per function, one column per caller

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ledger.chain import ClaimSubmission, TransactionOutcome, org_id, payer_call
from tests.integration.support import (
    ACCEPTED_REASON,
    AUDITOR_ROLE,
    DEFAULT_ADMIN_ROLE,
    OPERATOR_ROLE,
    PAYER_ROLE,
    PROVIDER_ROLE,
    REGISTRY_ROLE,
    Consortium,
    Org,
    Outcome,
    Role,
    Snapshots,
    Status,
    assert_events,
    bytes4,
    bytes8,
    random_key,
    submitted,
)

# ------------------------------------------------------------------ the claims the cells act on


@dataclass(frozen=True)
class RoleClaims:
    """Claims of PROV-A (account 1) to PAYER-X, one per status a function needs."""

    submitted: ClaimSubmission
    accepted: ClaimSubmission
    adjudicated: ClaimSubmission
    paid: ClaimSubmission


@pytest.fixture
def claims(deployed_consortium: Consortium, snapshots: Snapshots) -> RoleClaims:
    c = deployed_consortium

    def build() -> RoleClaims:
        submitted_claim, accepted, adjudicated, paid = c.claim(), c.claim(), c.claim(), c.claim()
        c.submit(submitted_claim, accepted, adjudicated, paid)
        c.advance(accepted, Status.ACCEPTED)
        c.advance(adjudicated, Status.ADJUDICATED)
        c.advance(paid, Status.PAID)
        return RoleClaims(submitted_claim, accepted, adjudicated, paid)

    return snapshots.prepared("roles", build)


# ------------------------------------------------------------------ callers

CALLERS = (
    "operator",
    "own_provider_1",
    "own_provider_2",
    "other_provider",
    "claim_payer",
    "other_payer",
    "auditor",
    "inactive_provider",
    "inactive_payer",
    "stranger",
)


def resolve(c: Consortium, caller: str) -> tuple[str, Org | None]:
    """The caller's account and organisation (None: in no organisation)."""
    return {
        "operator": (c.admin, None),
        "own_provider_1": (c.prov_a.accounts[0], c.prov_a),
        "own_provider_2": (c.prov_a.accounts[1], c.prov_a),
        "other_provider": (c.prov_b.account, c.prov_b),
        "claim_payer": (c.payer_x.account, c.payer_x),
        "other_payer": (c.payer_y.account, c.payer_y),
        "auditor": (c.auditor.account, c.auditor),
        "inactive_provider": (c.prov_off.account, c.prov_off),
        "inactive_payer": (c.payer_off.account, c.payer_off),
        "stranger": (c.stranger, None),
    }[caller]


# ------------------------------------------------------------------ what each cell expects


@dataclass(frozen=True)
class Lacks:
    """AccessControlUnauthorizedAccount(caller, role)."""

    role: bytes
    label: str

    def __repr__(self) -> str:
        return f"lacks {self.label}"


OK = "allowed"
INACTIVE = "ClaimLedgerOrganisationInactive(caller's org)"
UNKNOWN_ACCOUNT = "ClaimLedgerUnknownAccount(caller)"
NOT_PROVIDER = "ClaimLedgerNotClaimProvider(key, caller's org, PROV-A)"
NOT_PAYER = "ClaimLedgerNotClaimPayer(key, caller's org, PAYER-X)"
NOT_PENDING_ADMIN = "AccessControlInvalidDefaultAdmin(caller)"

P = Lacks(PROVIDER_ROLE, "PROVIDER_ROLE")
Y = Lacks(PAYER_ROLE, "PAYER_ROLE")
O = Lacks(OPERATOR_ROLE, "OPERATOR_ROLE")  # noqa: E741 - a column of the table
R = Lacks(REGISTRY_ROLE, "REGISTRY_ROLE")
D = Lacks(DEFAULT_ADMIN_ROLE, "DEFAULT_ADMIN_ROLE")

# fmt: off
#                              operator         own_prov_1 own_prov_2 other_prov    claim_payer other_payer auditor inactive_prov inactive_payer stranger
TABLE: dict[str, tuple[Any, ...]] = {
    "submitClaims original":    (P,               OK,        OK,        OK,           P,          P,          P,      INACTIVE,     P,             P),
    "submitClaims replacement": (P,               OK,        OK,        NOT_PROVIDER, P,          P,          P,      INACTIVE,     P,             P),
    "submitClaims void":        (P,               OK,        OK,        NOT_PROVIDER, P,          P,          P,      INACTIVE,     P,             P),
    "voidClaim":                (P,               OK,        OK,        NOT_PROVIDER, P,          P,          P,      INACTIVE,     P,             P),
    "acknowledge":              (Y,               Y,         Y,         Y,            OK,         NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "adjudicate":               (Y,               Y,         Y,         Y,            OK,         NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "recordPayment":            (Y,               Y,         Y,         Y,            OK,         NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "reversePayment":           (Y,               Y,         Y,         Y,            OK,         NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "multicall acknowledge":    (Y,               Y,         Y,         Y,            OK,         NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "multicall acknowledge+void": (Y,             Y,         Y,         Y,            P,          NOT_PAYER,  Y,      Y,            INACTIVE,      Y),
    "anchorAuditLog":           (UNKNOWN_ACCOUNT, OK,        OK,        OK,           OK,         OK,         OK,     INACTIVE,     INACTIVE,      UNKNOWN_ACCOUNT),
    "registerOrganisation":     (OK,              O,         O,         O,            O,          O,          O,      O,            O,             O),
    "setOrganisationActive":    (OK,              O,         O,         O,            O,          O,          O,      O,            O,             O),
    "addAccount":               (OK,              O,         O,         O,            O,          O,          O,      O,            O,             O),
    "removeAccount":            (OK,              O,         O,         O,            O,          O,          O,      O,            O,             O),
    "setFingerprintKey":        (OK,              O,         O,         O,            O,          O,          O,      O,            O,             O),
    "grantRole PROVIDER_ROLE":  (R,               R,         R,         R,            R,          R,          R,      R,            R,             R),
    "beginDefaultAdminTransfer": (OK,             D,         D,         D,            D,          D,          D,      D,            D,             D),
    "acceptDefaultAdminTransfer": (NOT_PENDING_ADMIN,) * len(CALLERS),
}
# fmt: on

Events = list[tuple[str, dict[str, Any]]]


@dataclass
class Cell:
    """One function, ready to be called by any caller."""

    call: Callable[[str], TransactionOutcome]
    events: Callable[[str, Org | None, TransactionOutcome], Events]
    claim_key: bytes | None = None
    watch_keys: list[bytes] = field(default_factory=list)
    watch_orgs: bool = False
    check: Callable[[Org | None], None] | None = None


def _block_time(c: Consortium, outcome: TransactionOutcome) -> int:
    return int(c.w3.eth.get_block(outcome.block_number)["timestamp"])


def make_cell(function: str, c: Consortium, claims: RoleClaims) -> Cell:
    ledger = c.ledger
    s = claims.submitted
    key = s.exact_key

    def org_index(org: Org | None) -> int:
        assert org is not None
        return org.index

    if function == "submitClaims original":
        new = c.claim()

        def check_original(org: Org | None) -> None:
            record = ledger.claim_record(new.exact_key)
            assert (record["status"], record["version"], record["provider_org"]) == ("submitted", 1, org_index(org))

        return Cell(
            call=lambda a: c.submit(new, sender=a),
            events=lambda a, org, out: [submitted(new, 1, org_index(org))],
            watch_keys=[new.exact_key],
            check=check_original,
        )
    if function == "submitClaims replacement":
        replacement = c.replacement(s)

        def check_replaced(org: Org | None) -> None:
            assert ledger.claim_status(key, 1) == "replaced"
            assert ledger.claim_status(replacement.exact_key, 1) == "submitted"

        return Cell(
            call=lambda a: c.submit(replacement, sender=a),
            events=lambda a, org, out: [
                (
                    "ClaimReplaced",
                    {"exactKey": key, "version": 1, "replacementKey": replacement.exact_key, "replacementVersion": 1},
                ),
                submitted(replacement, 1, org_index(org)),
            ],
            claim_key=key,
            watch_keys=[key, replacement.exact_key],
            check=check_replaced,
        )
    if function in ("submitClaims void", "voidClaim"):
        entry = c.void_entry(s)

        def void(a: str) -> TransactionOutcome:
            if function == "voidClaim":
                return ledger.void_claim(key, 1, sender=a)
            return c.submit(entry, sender=a)

        return Cell(
            call=void,
            events=lambda a, org, out: [
                ("ClaimVoided", {"exactKey": key, "version": 1, "providerOrg": org_index(org)})
            ],
            claim_key=key,
            watch_keys=[key],
            check=lambda org: _assert_status(c, key, Status.VOIDED),
        )
    if function == "multicall acknowledge":
        alone = make_cell("acknowledge", c, claims)
        call = payer_call("acknowledge", key, 1, True, ACCEPTED_REASON)
        return dataclasses.replace(alone, call=lambda a: ledger.multicall([call], sender=a))
    if function == "multicall acknowledge+void":
        # Each inner call runs with the caller's own rights: a payer's void and a provider's
        # acknowledgement are refused inside, and the whole multicall with them (all or nothing).
        calls = [payer_call("acknowledge", key, 1, True, ACCEPTED_REASON), ("voidClaim", (key, 1))]
        return Cell(
            call=lambda a: ledger.multicall(calls, sender=a),
            events=lambda a, org, out: [],
            claim_key=key,
            watch_keys=[key],
        )
    if function == "acknowledge":
        return Cell(
            call=lambda a: ledger.acknowledge(key, 1, True, ACCEPTED_REASON, sender=a),
            events=lambda a, org, out: [
                (
                    "ClaimAcknowledged",
                    {
                        "exactKey": key,
                        "version": 1,
                        "payerOrg": org_index(org),
                        "accepted": True,
                        "reasonCode": bytes8(ACCEPTED_REASON),
                    },
                )
            ],
            claim_key=key,
            watch_keys=[key],
            check=lambda org: _assert_status(c, key, Status.ACCEPTED),
        )
    if function == "adjudicate":
        accepted = claims.accepted
        allowed = accepted.total_charge // 2
        return Cell(
            call=lambda a: ledger.adjudicate(accepted.exact_key, 1, "partly_approved", allowed, ["CO45"], sender=a),
            events=lambda a, org, out: [
                (
                    "ClaimAdjudicated",
                    {
                        "exactKey": accepted.exact_key,
                        "version": 1,
                        "payerOrg": org_index(org),
                        "outcome": Outcome.PARTLY_APPROVED,
                        "allowedAmount": allowed,
                        "carcCodes": [bytes4("CO45")],
                    },
                )
            ],
            claim_key=accepted.exact_key,
            watch_keys=[accepted.exact_key],
            check=lambda org: _assert_status(c, accepted.exact_key, Status.ADJUDICATED),
        )
    if function == "recordPayment":
        adjudicated = claims.adjudicated
        remittance = random_key()
        return Cell(
            call=lambda a: ledger.record_payment(
                adjudicated.exact_key, 1, adjudicated.total_charge, remittance, sender=a
            ),
            events=lambda a, org, out: [
                (
                    "ClaimPaid",
                    {
                        "exactKey": adjudicated.exact_key,
                        "version": 1,
                        "payerOrg": org_index(org),
                        "paidAmount": adjudicated.total_charge,
                        "remittanceHash": remittance,
                    },
                )
            ],
            claim_key=adjudicated.exact_key,
            watch_keys=[adjudicated.exact_key],
            check=lambda org: _assert_status(c, adjudicated.exact_key, Status.PAID),
        )
    if function == "reversePayment":
        paid = claims.paid
        remittance = random_key()
        return Cell(
            call=lambda a: ledger.reverse_payment(paid.exact_key, 1, remittance, sender=a),
            events=lambda a, org, out: [
                (
                    "ClaimPaymentReversed",
                    {
                        "exactKey": paid.exact_key,
                        "version": 1,
                        "payerOrg": org_index(org),
                        "reversedAmount": paid.total_charge // 2,
                        "remittanceHash": remittance,
                    },
                )
            ],
            claim_key=paid.exact_key,
            watch_keys=[paid.exact_key],
            check=lambda org: _assert_status(c, paid.exact_key, Status.ACCEPTED),
        )
    if function == "anchorAuditLog":
        head = random_key()
        return Cell(
            call=lambda a: ledger.transact("anchorAuditLog", head, 42, sender=a),
            events=lambda a, org, out: [("AuditLogAnchored", {"org": org_index(org), "head": head, "entries": 42})],
        )
    if function == "registerOrganisation":
        new_id = org_id("CLEARINGHOUSE-1")

        def check_registered(org: Org | None) -> None:
            assert ledger.call("organisationIndex", new_id) == 8
            assert tuple(ledger.call("organisation", 8)) == (new_id, Role.PROVIDER, True, 0)

        return Cell(
            call=lambda a: ledger.transact("registerOrganisation", new_id, Role.PROVIDER, sender=a),
            events=lambda a, org, out: [("OrganisationRegistered", {"org": 8, "orgId": new_id, "role": Role.PROVIDER})],
            watch_orgs=True,
            check=check_registered,
        )
    if function == "setOrganisationActive":
        return Cell(
            call=lambda a: ledger.transact("setOrganisationActive", c.prov_b.index, False, sender=a),
            events=lambda a, org, out: [("OrganisationActivationChanged", {"org": c.prov_b.index, "active": False})],
            watch_orgs=True,
            check=lambda org: _assert_org_active(c, c.prov_b, False),
        )
    if function == "addAccount":

        def check_added(org: Org | None) -> None:
            assert ledger.call("organisationOf", c.newcomer) == c.prov_b.index
            assert ledger.call("hasRole", PROVIDER_ROLE, c.newcomer)

        return Cell(
            call=lambda a: ledger.add_account(c.prov_b.index, c.newcomer, sender=a),
            events=lambda a, org, out: [
                ("RoleGranted", {"role": PROVIDER_ROLE, "account": c.newcomer, "sender": a}),
                ("AccountAdded", {"org": c.prov_b.index, "account": c.newcomer}),
            ],
            watch_orgs=True,
            check=check_added,
        )
    if function == "removeAccount":
        leaving = c.prov_a.accounts[1]

        def check_removed(org: Org | None) -> None:
            assert ledger.call("organisationOf", leaving) == 0
            assert not ledger.call("hasRole", PROVIDER_ROLE, leaving)

        return Cell(
            call=lambda a: ledger.transact("removeAccount", leaving, sender=a),
            events=lambda a, org, out: [
                ("RoleRevoked", {"role": PROVIDER_ROLE, "account": leaving, "sender": a}),
                ("AccountRemoved", {"org": c.prov_a.index, "account": leaving}),
            ],
            watch_orgs=True,
            check=check_removed,
        )
    if function == "setFingerprintKey":
        return Cell(
            call=lambda a: ledger.set_fingerprint_key(8, True, sender=a),
            events=lambda a, org, out: [("FingerprintKeyChanged", {"keyId": 8, "accepted": True})],
            check=lambda org: _assert_true(ledger.call("isFingerprintKeyAccepted", 8)),
        )
    if function == "grantRole PROVIDER_ROLE":
        return Cell(
            call=lambda a: ledger.transact("grantRole", PROVIDER_ROLE, c.newcomer, sender=a),
            events=lambda a, org, out: [],
        )
    if function == "beginDefaultAdminTransfer":
        return Cell(
            call=lambda a: ledger.transact("beginDefaultAdminTransfer", c.newcomer, sender=a),
            events=lambda a, org, out: [
                ("DefaultAdminTransferScheduled", {"newAdmin": c.newcomer, "acceptSchedule": _block_time(c, out)})
            ],
            check=lambda org: _assert_true(ledger.call("pendingDefaultAdmin")[0] == c.newcomer),
        )
    if function == "acceptDefaultAdminTransfer":
        # The newcomer is the pending admin and the schedule has passed: only the caller is wrong.
        begun = ledger.transact("beginDefaultAdminTransfer", c.newcomer, sender=c.admin)
        c.rpc("evm_mine", [_block_time(c, begun) + 1])
        return Cell(call=lambda a: ledger.transact("acceptDefaultAdminTransfer", sender=a), events=lambda *_: [])
    raise AssertionError(f"no cell for {function}")


def _assert_true(value: Any) -> None:
    assert value


def _assert_status(c: Consortium, key: bytes, status: Status) -> None:
    assert c.ledger.claim_status(key, 1) == status.label


def _assert_org_active(c: Consortium, org: Org, active: bool) -> None:
    assert c.ledger.call("organisation", org.index)[2] is active


def expected_refusal(
    symbol: Any, c: Consortium, cell: Cell, account: str, org: Org | None
) -> tuple[str, dict[str, Any]]:
    if isinstance(symbol, Lacks):
        return "AccessControlUnauthorizedAccount", {"account": account, "neededRole": symbol.role}
    if symbol == UNKNOWN_ACCOUNT:
        return "ClaimLedgerUnknownAccount", {"account": account}
    if symbol == NOT_PENDING_ADMIN:
        return "AccessControlInvalidDefaultAdmin", {"defaultAdmin": account}
    assert org is not None, f"{symbol} needs a caller in an organisation"
    if symbol == INACTIVE:
        return "ClaimLedgerOrganisationInactive", {"org": org.index}
    if symbol == NOT_PROVIDER:
        return "ClaimLedgerNotClaimProvider", {
            "exactKey": cell.claim_key,
            "callerOrg": org.index,
            "providerOrg": c.prov_a.index,
        }
    if symbol == NOT_PAYER:
        return "ClaimLedgerNotClaimPayer", {
            "exactKey": cell.claim_key,
            "callerOrg": org.index,
            "payerOrg": c.payer_x.index,
        }
    raise AssertionError(f"unknown table symbol {symbol!r}")


CELLS = [
    pytest.param(function, caller, expected, id=f"{function}-{caller}")
    for function, row in TABLE.items()
    for caller, expected in zip(CALLERS, row, strict=True)
]


@pytest.mark.parametrize(("function", "caller", "expected"), CELLS)
def test_role_table(
    function: str, caller: str, expected: Any, deployed_consortium: Consortium, claims: RoleClaims
) -> None:
    c = deployed_consortium
    cell = make_cell(function, c, claims)
    account, org = resolve(c, caller)
    if expected == OK:
        outcome = cell.call(account)
        assert_events(outcome, cell.events(account, org, outcome))
        if cell.check is not None:
            cell.check(org)
    else:
        error, args = expected_refusal(expected, c, cell, account, org)
        c.assert_refused(
            lambda: cell.call(account), error, args, keys=cell.watch_keys, sender=account, orgs=cell.watch_orgs
        )


def test_table_covers_every_state_changing_function(deployed_consortium: Consortium) -> None:
    """Every external function that is not a view is in the table (or is OZ's admin plumbing)."""
    abi = deployed_consortium.ledger.artifact["abi"]
    writes = {i["name"] for i in abi if i["type"] == "function" and i["stateMutability"] not in ("view", "pure")}
    in_table = {name.split()[0] for name in TABLE}
    admin_plumbing = {
        "grantRole",
        "revokeRole",
        "renounceRole",
        "cancelDefaultAdminTransfer",
        "changeDefaultAdminDelay",
        "rollbackDefaultAdminDelay",
    }
    assert writes - in_table <= admin_plumbing, writes - in_table - admin_plumbing


# ------------------------------------------------------------------ the admin and the registry, step by step


def test_admin_handover_takes_two_steps_and_a_block(consortium: Consortium) -> None:
    c = consortium
    ledger = c.ledger
    begun = ledger.transact("beginDefaultAdminTransfer", c.newcomer, sender=c.admin)
    schedule = _block_time(c, begun)  # delay 0: the schedule is the block's own time
    assert_events(begun, [("DefaultAdminTransferScheduled", {"newAdmin": c.newcomer, "acceptSchedule": schedule})])
    assert tuple(ledger.call("pendingDefaultAdmin")) == (c.newcomer, schedule)

    # OZ accepts only once the schedule is strictly in the past: not in the block it was set.
    c.assert_refused(
        lambda: ledger.transact("acceptDefaultAdminTransfer", sender=c.newcomer),
        "AccessControlEnforcedDefaultAdminDelay",
        {"schedule": schedule},
        sender=c.newcomer,
    )
    assert ledger.call("defaultAdmin") == c.admin

    c.rpc("evm_mine", [schedule + 1])
    accepted = ledger.transact("acceptDefaultAdminTransfer", sender=c.newcomer)
    assert_events(
        accepted,
        [
            ("RoleRevoked", {"role": DEFAULT_ADMIN_ROLE, "account": c.admin, "sender": c.newcomer}),
            ("RoleGranted", {"role": DEFAULT_ADMIN_ROLE, "account": c.newcomer, "sender": c.newcomer}),
        ],
    )
    assert ledger.call("defaultAdmin") == c.newcomer
    assert tuple(ledger.call("pendingDefaultAdmin")) == ("0x" + "0" * 40, 0)
    c.assert_refused(
        lambda: ledger.transact("beginDefaultAdminTransfer", c.stranger, sender=c.admin),
        "AccessControlUnauthorizedAccount",
        {"account": c.admin, "neededRole": DEFAULT_ADMIN_ROLE},
        sender=c.admin,
    )
    # The new admin administers OPERATOR_ROLE; the old admin keeps its operator grant until revoked.
    assert ledger.call("hasRole", OPERATOR_ROLE, c.admin)
    revoked = ledger.transact("revokeRole", OPERATOR_ROLE, c.admin, sender=c.newcomer)
    assert_events(revoked, [("RoleRevoked", {"role": OPERATOR_ROLE, "account": c.admin, "sender": c.newcomer})])
    c.assert_refused(
        lambda: ledger.register_organisation("PROV-C", "provider", sender=c.admin),
        "AccessControlUnauthorizedAccount",
        {"account": c.admin, "neededRole": OPERATOR_ROLE},
        sender=c.admin,
        orgs=True,
    )


def test_default_admin_role_cannot_be_granted_directly(consortium: Consortium) -> None:
    c = consortium
    c.assert_refused(
        lambda: c.ledger.transact("grantRole", DEFAULT_ADMIN_ROLE, c.newcomer, sender=c.admin),
        "AccessControlEnforcedDefaultAdminRules",
        {},
        sender=c.admin,
    )


@pytest.mark.parametrize("role", [PROVIDER_ROLE, PAYER_ROLE, AUDITOR_ROLE], ids=["provider", "payer", "auditor"])
def test_member_roles_are_administered_by_the_registry_role_nobody_holds(consortium: Consortium, role: bytes) -> None:
    c = consortium
    assert c.ledger.call("getRoleAdmin", role) == REGISTRY_ROLE
    for function in ("grantRole", "revokeRole"):

        def change_role(function: str = function) -> TransactionOutcome:
            return c.ledger.transact(function, role, c.prov_a.account, sender=c.admin)

        c.assert_refused(
            change_role,
            "AccessControlUnauthorizedAccount",
            {"account": c.admin, "neededRole": REGISTRY_ROLE},
            sender=c.admin,
        )


def test_operator_role_is_granted_by_the_default_admin(consortium: Consortium) -> None:
    c = consortium
    granted = c.ledger.transact("grantRole", OPERATOR_ROLE, c.newcomer, sender=c.admin)
    assert_events(granted, [("RoleGranted", {"role": OPERATOR_ROLE, "account": c.newcomer, "sender": c.admin})])
    assert c.ledger.register_organisation("PROV-C", "provider", sender=c.newcomer) == 8


def test_a_removed_account_loses_its_role_and_its_organisation_keeps_working(consortium: Consortium) -> None:
    c = consortium
    leaving = c.prov_a.accounts[1]
    c.ledger.transact("removeAccount", leaving, sender=c.admin)
    assert c.ledger.call("organisation", c.prov_a.index)[3] == 1
    claim = c.claim()
    c.assert_refused(
        lambda: c.submit(claim, sender=leaving),
        "AccessControlUnauthorizedAccount",
        {"account": leaving, "neededRole": PROVIDER_ROLE},
        keys=[claim.exact_key],
        sender=leaving,
    )
    assert_events(c.submit(claim, sender=c.prov_a.accounts[0]), [submitted(claim, 1, c.prov_a.index)])
    c.assert_refused(
        lambda: c.ledger.transact("removeAccount", leaving, sender=c.admin),
        "ClaimLedgerUnknownAccount",
        {"account": leaving},
        orgs=True,
    )


def test_a_deactivated_payer_can_neither_act_nor_receive_claims(consortium: Consortium) -> None:
    c = consortium
    claim = c.submit_new(c.payer_x)
    c.ledger.transact("setOrganisationActive", c.payer_x.index, False, sender=c.admin)
    c.assert_refused(
        lambda: c.ledger.acknowledge(claim.exact_key, 1, True, sender=c.payer_x.account),
        "ClaimLedgerOrganisationInactive",
        {"org": c.payer_x.index},
        keys=[claim.exact_key],
    )
    another = c.claim(c.payer_x)
    c.assert_refused(
        lambda: c.submit(another),
        "ClaimLedgerUnknownPayer",
        {"index": 0, "payerOrg": c.payer_x.index},
        keys=[another.exact_key],
    )
    # Its provider may still void the claim addressed to it.
    voided = c.ledger.void_claim(claim.exact_key, 1, sender=c.prov_a.account)
    assert_events(voided, [("ClaimVoided", {"exactKey": claim.exact_key, "version": 1, "providerOrg": c.prov_a.index})])
    reactivated = c.ledger.transact("setOrganisationActive", c.payer_x.index, True, sender=c.admin)
    assert_events(reactivated, [("OrganisationActivationChanged", {"org": c.payer_x.index, "active": True})])
    assert_events(c.submit(another), [submitted(another, 1, c.prov_a.index)])


def test_a_deactivated_provider_cannot_void_its_claims(consortium: Consortium) -> None:
    c = consortium
    claim = c.submit_new()
    c.ledger.transact("setOrganisationActive", c.prov_a.index, False, sender=c.admin)
    c.assert_refused(
        lambda: c.ledger.void_claim(claim.exact_key, 1, sender=c.prov_a.account),
        "ClaimLedgerOrganisationInactive",
        {"org": c.prov_a.index},
        keys=[claim.exact_key],
    )


@pytest.mark.parametrize(
    ("call", "error", "args"),
    [
        (
            lambda c: c.ledger.transact("registerOrganisation", b"\0" * 32, Role.PROVIDER, sender=c.admin),
            "ClaimLedgerZeroOrganisationId",
            lambda c: {},
        ),
        (
            lambda c: c.ledger.transact("registerOrganisation", org_id("PROV-C"), Role.NONE, sender=c.admin),
            "ClaimLedgerInvalidRole",
            lambda c: {"role": Role.NONE},
        ),
        (
            lambda c: c.ledger.transact("registerOrganisation", org_id("PROV-A"), Role.PAYER, sender=c.admin),
            "ClaimLedgerOrganisationExists",
            lambda c: {"orgId": org_id("PROV-A"), "org": c.prov_a.index},
        ),
        (
            lambda c: c.ledger.transact("setOrganisationActive", 99, True, sender=c.admin),
            "ClaimLedgerUnknownOrganisation",
            lambda c: {"org": 99},
        ),
        (
            lambda c: c.ledger.add_account(99, c.newcomer, sender=c.admin),
            "ClaimLedgerUnknownOrganisation",
            lambda c: {"org": 99},
        ),
        (
            lambda c: c.ledger.add_account(c.prov_b.index, "0x" + "00" * 20, sender=c.admin),
            "ClaimLedgerZeroAddress",
            lambda c: {},
        ),
        (
            lambda c: c.ledger.add_account(c.payer_y.index, c.prov_a.account, sender=c.admin),
            "ClaimLedgerAccountAlreadyMember",
            lambda c: {"account": c.prov_a.account, "org": c.prov_a.index},
        ),
        (
            lambda c: c.ledger.transact("removeAccount", c.stranger, sender=c.admin),
            "ClaimLedgerUnknownAccount",
            lambda c: {"account": c.stranger},
        ),
        (lambda c: c.ledger.set_fingerprint_key(0, True, sender=c.admin), "ClaimLedgerZeroKeyId", lambda c: {}),
        (
            lambda c: c.ledger.transact("anchorAuditLog", b"\0" * 32, 1, sender=c.auditor.account),
            "ClaimLedgerZeroAuditHead",
            lambda c: {},
        ),
    ],
    ids=[
        "zero org id",
        "role none",
        "org id taken",
        "activate unknown org",
        "account to unknown org",
        "zero account",
        "account already member",
        "remove non-member",
        "zero key id",
        "zero audit head",
    ],
)
def test_registry_input_refused(consortium: Consortium, call: Any, error: str, args: Any) -> None:
    consortium.assert_refused(lambda: call(consortium), error, args(consortium), orgs=True)
