"""The consortium the integration tests run against, and the assertions they share.

One anvil runs for the whole session; the consortium is deployed on it once and every test
starts from an anvil snapshot of it (:class:`Snapshots`), so a test pays for the
transactions it makes, not for a fresh deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from ledger.chain import ZERO32, ClaimLedgerContract, ClaimSubmission, TransactionOutcome
from ledger.errors import ContractRevertError

T = TypeVar("T")

KEY_ID = 7
"""The fingerprint key id the test consortium accepts."""
UINT64_MAX = 2**64 - 1
DEFAULT_CHARGE = 25_000
"""A claim's total charge in cents unless a test says otherwise."""
BASE_SNAPSHOT = "consortium"
ORGS_OBSERVED = 9
"""organisation() views a refusal check reads: the 7 registered and 2 beyond, where a new one would go."""

DEFAULT_ADMIN_ROLE = ZERO32
OPERATOR_ROLE = keccak(text="OPERATOR_ROLE")
PROVIDER_ROLE = keccak(text="PROVIDER_ROLE")
PAYER_ROLE = keccak(text="PAYER_ROLE")
AUDITOR_ROLE = keccak(text="AUDITOR_ROLE")
REGISTRY_ROLE = keccak(text="REGISTRY_ROLE")

# 277CA: A2 acknowledged / accepted, A3 returned as unprocessable, with a status code.
ACCEPTED_REASON = b"A2:20"
REJECTED_REASON = b"A3:21"


class Role(IntEnum):
    """IClaimLedger.Role."""

    NONE = 0
    PROVIDER = 1
    PAYER = 2
    AUDITOR = 3


class Status(IntEnum):
    """IClaimLedger.Status; ``label`` is the name ledger.chain gives it."""

    NONE = 0
    SUBMITTED = 1
    ACCEPTED = 2
    REJECTED = 3
    ADJUDICATED = 4
    PAID = 5
    VOIDED = 6
    REPLACED = 7

    @property
    def label(self) -> str:
        return self.name.lower()


class Outcome(IntEnum):
    """IClaimLedger.Outcome; ``label`` is the name ledger.chain gives it."""

    NONE = 0
    APPROVED = 1
    PARTLY_APPROVED = 2
    DENIED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


LIVE = frozenset({Status.SUBMITTED, Status.ACCEPTED, Status.ADJUDICATED, Status.PAID})


def random_key() -> bytes:
    return os.urandom(32)


def bytes8(code: bytes) -> bytes:
    return code.ljust(8, b"\0")


def bytes4(code: str) -> bytes:
    return code.encode("ascii").ljust(4, b"\0")


def normalise(value: Any) -> Any:
    """Event and error values in one comparable form: checksummed addresses, plain ints and bytes, lists."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def events_of(outcome: TransactionOutcome) -> list[tuple[str, dict[str, Any]]]:
    """The contract events of a transaction, in order, as (name, args)."""
    return [(e.name, normalise(e.args)) for e in outcome.events]


def assert_events(outcome: TransactionOutcome, expected: Sequence[tuple[str, dict[str, Any]]]) -> None:
    assert events_of(outcome) == [(name, normalise(args)) for name, args in expected]


def submitted(claim: ClaimSubmission, version: int, provider: int) -> tuple[str, dict[str, Any]]:
    """The ClaimSubmitted event recording ``claim`` as ``version`` for organisation ``provider``."""
    return (
        "ClaimSubmitted",
        {
            "exactKey": claim.exact_key,
            "version": version,
            "providerOrg": provider,
            "payerOrg": claim.payer_org,
            "documentHash": claim.document_hash,
            "keyId": claim.key_id,
            "lineCount": len(claim.line_keys),
            "totalCharge": claim.total_charge,
            "frequency": claim.frequency,
        },
    )


class Snapshots:
    """Named anvil snapshots, oldest first.

    anvil discards a snapshot when it reverts to it, and every later one with it; reverting
    to a discarded id leaves anvil without a latest block, so this tracks which are alive.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self._alive: list[tuple[str, str]] = []
        self._prepared: dict[str, Any] = {}

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method}{params} failed: {response['error']}")
        return response["result"]

    def save(self, name: str) -> None:
        self._alive = [(n, i) for n, i in self._alive if n != name]
        self._alive.append((name, self._rpc("evm_snapshot", [])))

    def restore(self, name: str) -> bool:
        """Back to snapshot ``name`` (and keep it for next time); False if it was discarded."""
        position = next((i for i, (alive, _) in enumerate(self._alive) if alive == name), None)
        if position is None:
            return False
        snapshot_id = self._alive[position][1]
        if self._rpc("evm_revert", [snapshot_id]) is not True:
            raise RuntimeError(f"anvil refused to revert to snapshot {name} ({snapshot_id})")
        del self._alive[position:]
        self.save(name)
        return True

    def prepared(self, name: str, build: Callable[[], T]) -> T:
        """The chain as ``build`` leaves it on top of the base consortium; built once, then restored."""
        if name not in self._prepared or not self.restore(name):
            if not self.restore(BASE_SNAPSHOT):
                raise RuntimeError("the base consortium snapshot is gone")
            self._prepared[name] = build()
            self.save(name)
        return self._prepared[name]


@dataclass(frozen=True)
class Org:
    """A consortium member as the tests know it."""

    name: str
    index: int
    role: Role
    accounts: tuple[str, ...]
    active: bool = True

    @property
    def account(self) -> str:
        return self.accounts[0]


@dataclass
class Consortium:
    """The deployed ledger and its members.

    Accounts are anvil's unlocked dev accounts: 0 admin and operator, 1-2 PROV-A, 3 PROV-B,
    4 PAYER-X, 5 PAYER-Y, 6 AUD-1, 7 PROV-OFF and 8 PAYER-OFF (both deactivated), 9 a
    stranger, 10 a newcomer in no organisation, the rest spare.
    """

    w3: Web3
    ledger: ClaimLedgerContract
    admin: str
    prov_a: Org
    prov_b: Org
    payer_x: Org
    payer_y: Org
    auditor: Org
    prov_off: Org
    payer_off: Org
    stranger: str
    newcomer: str
    spare: tuple[str, ...]

    @property
    def orgs(self) -> tuple[Org, ...]:
        return (self.prov_a, self.prov_b, self.payer_x, self.payer_y, self.auditor, self.prov_off, self.payer_off)

    def org(self, index: int) -> Org:
        return next(o for o in self.orgs if o.index == index)

    def rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method}{params} failed: {response['error']}")
        return response["result"]

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    # ---------------------------------------------------------------- claims

    def claim(
        self,
        payer: Org | int | None = None,
        *,
        lines: int = 2,
        line_keys: Sequence[bytes] | None = None,
        exact_key: bytes | None = None,
        document_hash: bytes | None = None,
        charge: int = DEFAULT_CHARGE,
        key_id: int = KEY_ID,
        **fields: Any,
    ) -> ClaimSubmission:
        """An original claim with random keys, addressed to PAYER-X unless told."""
        payer = self.payer_x if payer is None else payer
        return ClaimSubmission(
            exact_key=exact_key or random_key(),
            document_hash=document_hash or random_key(),
            line_keys=tuple(line_keys) if line_keys is not None else tuple(random_key() for _ in range(lines)),
            key_id=key_id,
            payer_org=payer.index if isinstance(payer, Org) else payer,
            total_charge=charge,
            **fields,
        )

    def replacement(
        self,
        original: ClaimSubmission,
        version: int = 1,
        *,
        exact_key: bytes | None = None,
        line_keys: Sequence[bytes] | None = None,
        **fields: Any,
    ) -> ClaimSubmission:
        """A replacement (frequency 7) of ``(original, version)``: a new exact key unless told."""
        return self.claim(
            fields.pop("payer", original.payer_org),
            exact_key=exact_key,
            line_keys=line_keys if line_keys is not None else original.line_keys,
            charge=fields.pop("charge", original.total_charge),
            frequency=7,
            related_key=original.exact_key,
            related_version=version,
            **fields,
        )

    def void_entry(self, original: ClaimSubmission, version: int = 1) -> ClaimSubmission:
        """A void (frequency 8) of ``(original, version)``, sent through submitClaims."""
        return self.claim(
            original.payer_org,
            exact_key=original.exact_key,
            line_keys=original.line_keys,
            charge=original.total_charge,
            frequency=8,
            related_key=original.exact_key,
            related_version=version,
        )

    def submit(self, *claims: ClaimSubmission, sender: str | None = None) -> TransactionOutcome:
        return self.ledger.submit_claims(list(claims), sender=sender or self.prov_a.account)

    def simulate_submit(self, *claims: ClaimSubmission, sender: str | None = None) -> list[int]:
        """What submitClaims would return (the versions recorded), without sending it."""
        batch = [c.as_tuple() for c in claims]
        return list(self.ledger.contract.functions.submitClaims(batch).call({"from": sender or self.prov_a.account}))

    def submit_new(self, payer: Org | None = None, *, sender: str | None = None, **kw: Any) -> ClaimSubmission:
        """A new original claim, recorded as version 1."""
        claim = self.claim(payer, **kw)
        self.submit(claim, sender=sender)
        return claim

    def payer_account(self, claim: ClaimSubmission) -> str:
        return self.org(claim.payer_org).account

    def provider_account(self, exact_key: bytes) -> str:
        return self.org(self.ledger.claim_record(exact_key)["provider_org"]).account

    def advance(
        self,
        claim: ClaimSubmission,
        to: Status,
        *,
        version: int = 1,
        outcome: Outcome = Outcome.APPROVED,
    ) -> ClaimSubmission | None:
        """Moves a submitted claim along its legal path to ``to``; returns the replacement for REPLACED."""
        payer = self.payer_account(claim)
        key = claim.exact_key
        if to in (Status.ACCEPTED, Status.ADJUDICATED, Status.PAID):
            self.ledger.acknowledge(key, version, True, ACCEPTED_REASON, sender=payer)
        if to in (Status.ADJUDICATED, Status.PAID):
            allowed = {
                Outcome.APPROVED: claim.total_charge,
                Outcome.PARTLY_APPROVED: claim.total_charge // 2,
                Outcome.DENIED: 0,
            }[outcome]
            codes = () if outcome == Outcome.APPROVED else ("CO45" if allowed else "CO50",)
            self.ledger.adjudicate(key, version, outcome.label, allowed, codes, sender=payer)
        if to == Status.PAID:
            self.ledger.record_payment(key, version, claim.total_charge // 2, random_key(), sender=payer)
        if to == Status.REJECTED:
            self.ledger.acknowledge(key, version, False, REJECTED_REASON, sender=payer)
        if to == Status.VOIDED:
            self.ledger.void_claim(key, version, sender=self.provider_account(key))
        if to == Status.REPLACED:
            replacement = self.replacement(claim, version)
            self.submit(replacement, sender=self.provider_account(key))
            return replacement
        return None

    # ---------------------------------------------------------------- refusals

    def _view_request(self, signature: str, *args: Any) -> tuple[str, list[Any]]:
        _, _, types = signature.partition("(")
        arg_types = [t for t in types.rstrip(")").split(",") if t]
        data = keccak(text=signature)[:4] + abi_encode(arg_types, list(args))
        return "eth_call", [{"to": self.ledger.address, "data": "0x" + data.hex()}, "latest"]

    def _batch(self, requests: list[tuple[str, list[Any]]]) -> list[Any]:
        responses = self.w3.provider.make_batch_request(requests)  # type: ignore[attr-defined]
        failed = [r for r in responses if "error" in r]
        if failed:
            raise RuntimeError(f"observing the chain failed: {failed}")
        return [r["result"] for r in responses]

    def read_views(self, *views: tuple[str, tuple[Any, ...], str]) -> tuple[int, list[Any]]:
        """The block number and several views, read in one JSON-RPC batch and decoded.

        Each view is (signature, args, return type), e.g. ("liveVersion(bytes32)", (key,), "uint32").
        """
        requests = [("eth_blockNumber", []), *(self._view_request(sig, *args) for sig, args, _ in views)]
        block, *results = self._batch(requests)
        decoded = [
            abi_decode([returns], bytes.fromhex(r[2:]))[0] for (_, _, returns), r in zip(views, results, strict=True)
        ]
        return int(block, 16), decoded

    def observe(
        self,
        keys: Iterable[bytes] = (),
        line_keys: Iterable[bytes] = (),
        accounts: Iterable[str] = (),
        orgs: bool = False,
    ) -> dict[str, Any]:
        """What a refused call must leave as it was: the block number, the contract's storage
        root, the named records and line holders as raw view data, the senders' pending nonces.
        One JSON-RPC batch, so a refusal check costs one round trip."""
        requests: dict[str, tuple[str, list[Any]]] = {
            "block": ("eth_blockNumber", []),
            "storage root": ("eth_getProof", [self.ledger.address, [], "latest"]),
            "organisation count": self._view_request("organisationCount()"),
        }
        for k in keys:
            requests[f"claimRecord {k.hex()}"] = self._view_request("claimRecord(bytes32)", k)
            requests[f"settlement {k.hex()}"] = self._view_request("settlement(bytes32)", k)
        for k in line_keys:
            requests[f"lineHolder {k.hex()}"] = self._view_request("lineHolder(bytes32)", k)
        for a in accounts:
            requests[f"pending nonce {a}"] = ("eth_getTransactionCount", [a, "pending"])
        if orgs:
            for i in range(1, ORGS_OBSERVED + 1):
                requests[f"organisation {i}"] = self._view_request("organisation(uint32)", i)
        seen = dict(zip(requests, self._batch(list(requests.values())), strict=True))
        seen["storage root"] = seen["storage root"]["storageHash"]
        return seen

    def assert_refused(
        self,
        action: Callable[[], Any],
        error: str,
        args: dict[str, Any] | None = None,
        *,
        keys: Iterable[bytes] = (),
        line_keys: Iterable[bytes] = (),
        sender: str | None = None,
        orgs: bool = False,
    ) -> ContractRevertError:
        """``action`` raises ContractRevertError ``error(args)`` and changes nothing on the chain."""
        keys, line_keys = list(keys), list(line_keys)
        accounts = [sender] if sender else []
        before = self.observe(keys, line_keys, accounts, orgs)
        with pytest.raises(ContractRevertError) as refused:
            action()
        assert (refused.value.error, normalise(refused.value.error_args)) == (error, normalise(args or {}))
        assert self.observe(keys, line_keys, accounts, orgs) == before, "a refused call changed the chain"
        return refused.value


def build_consortium(w3: Web3) -> Consortium:
    """Deploys a ClaimLedger and registers the test consortium (see :class:`Consortium`)."""
    accounts = [to_checksum_address(a) for a in w3.eth.accounts]
    admin = accounts[0]
    ledger, _ = ClaimLedgerContract.deploy(w3, admin)

    def register(name: str, role: Role, members: Sequence[str], active: bool = True) -> Org:
        index = ledger.register_organisation(name, role.name.lower(), sender=admin)
        for account in members:
            ledger.add_account(index, account, sender=admin)
        if not active:
            ledger.transact("setOrganisationActive", index, False, sender=admin)
        return Org(name, index, role, tuple(members), active)

    consortium = Consortium(
        w3=w3,
        ledger=ledger,
        admin=admin,
        prov_a=register("PROV-A", Role.PROVIDER, accounts[1:3]),
        prov_b=register("PROV-B", Role.PROVIDER, accounts[3:4]),
        payer_x=register("PAYER-X", Role.PAYER, accounts[4:5]),
        payer_y=register("PAYER-Y", Role.PAYER, accounts[5:6]),
        auditor=register("AUD-1", Role.AUDITOR, accounts[6:7]),
        prov_off=register("PROV-OFF", Role.PROVIDER, accounts[7:8], active=False),
        payer_off=register("PAYER-OFF", Role.PAYER, accounts[8:9], active=False),
        stranger=accounts[9],
        newcomer=accounts[10],
        spare=tuple(accounts[11:]),
    )
    ledger.set_fingerprint_key(KEY_ID, True, sender=admin)
    return consortium
