"""The chain client: RPC connection, the ClaimLedger contract's calls, errors and events.

Talks to any Ethereum-compatible node by RPC URL (anvil locally, Besu/QBFT in a
consortium). Reverts come back as ``ContractRevertError`` with the contract's custom error
decoded; an unreachable node as ``ChainUnavailableError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.middleware import ExtraDataToPOAMiddleware

from ledger.compiler import load_artifact
from ledger.errors import ChainUnavailableError, ConfigurationError, ContractRevertError, LedgerError

T = TypeVar("T")

DEFAULT_RPC_TIMEOUT_S = 10.0
RECEIPT_POLL_S = 0.005
RECEIPT_TIMEOUT_S = 60.0
ZERO32 = b"\x00" * 32

# Contract enums, in declaration order (contracts/IClaimLedger.sol).
ROLES = ("none", "provider", "payer", "auditor")
STATUSES = ("none", "submitted", "accepted", "rejected", "adjudicated", "paid", "voided", "replaced")
OUTCOMES = ("none", "approved", "partly_approved", "denied")


def connect(rpc_url: str, *, poa: bool | None = None, timeout: float = DEFAULT_RPC_TIMEOUT_S) -> Web3:
    """A Web3 over HTTP. ``poa`` adds the extra-data middleware QBFT/Clique blocks need;
    None detects it from the latest block's extra data."""
    # cache_allowed_requests: eth_chainId and the like are asked once, not on every transaction
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, cache_allowed_requests=True))
    try:
        if poa is None:
            extra = w3.eth.get_block("latest").get("extraData", b"")
            poa = len(extra) > 32
    except (requests.ConnectionError, requests.Timeout, OSError) as exc:
        raise ChainUnavailableError(f"node at {rpc_url} did not answer: {exc}") from exc
    except Exception:  # noqa: BLE001 - a QBFT block that web3 cannot parse without the middleware
        poa = True
    if poa:
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def sign_call(
    account: Any, *, chain_id: int, nonce: int, to: str, data: bytes, gas: int, max_fee: int, tip: int = 0
) -> tuple[str, bytes]:
    """A contract call signed as an EIP-1559 transaction by ``account`` (a LocalAccount): its hash
    (0x hex) and raw bytes, ready to store in the outbox and send."""
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": 0,
        "data": data,
        "gas": gas,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
    }
    signed = account.sign_transaction(tx)
    return "0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction)


def org_id(name: str) -> bytes:
    """The on-chain id of an organisation: its identifier string, right-padded to 32 bytes."""
    raw = name.encode("ascii")
    if not raw or len(raw) > 32:
        raise LedgerError(f"organisation id {name!r} must be 1 to 32 ASCII characters")
    return raw.ljust(32, b"\x00")


@dataclass(frozen=True, slots=True)
class ClaimSubmission:
    """One claim of a ``submitClaims`` batch, as the contract takes it (no PHI: keys only)."""

    exact_key: bytes
    document_hash: bytes
    line_keys: tuple[bytes, ...]
    key_id: int
    payer_org: int
    total_charge: int
    frequency: int = 1
    related_key: bytes = ZERO32
    related_version: int = 0
    line_count: int | None = None

    def terms(self) -> int:
        lines = len(self.line_keys) if self.line_count is None else self.line_count
        return pack_terms(self.total_charge, self.key_id, self.payer_org, self.related_version, lines, self.frequency)

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.exact_key, self.document_hash, self.related_key, self.terms(), list(self.line_keys))


def pack_terms(
    total_charge: int, key_id: int, payer_org: int, related_version: int, line_count: int, frequency: int
) -> int:
    """``ClaimSubmission.terms`` (IClaimLedger.sol): the claim's small fields in one word."""
    for name, value, bits in (
        ("total charge", total_charge, 96),
        ("key id", key_id, 32),
        ("payer org", payer_org, 32),
        ("related version", related_version, 32),
        ("line count", line_count, 16),
        ("frequency", frequency, 8),
    ):
        if not 0 <= value < (1 << bits):
            raise LedgerError(f"{name} {value} does not fit the {bits} bits the contract gives it")
    return (
        total_charge | key_id << 96 | payer_org << 128 | related_version << 160 | line_count << 192 | frequency << 208
    )


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """A decoded contract event with where it sits on the chain."""

    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: bytes
    transaction_hash: bytes
    log_index: int


def _canonical_type(item: dict[str, Any]) -> str:
    t: str = item["type"]
    if t.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t


class ContractAbi:
    """Selectors, custom errors and events of the contract, decoded with eth_abi directly."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self.abi = abi
        self.errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        self.events: dict[bytes, tuple[str, list[dict[str, Any]]]] = {}
        self.functions: dict[str, tuple[bytes, list[str]]] = {}
        # per event topic: name, (name, type) of its indexed and its data inputs, whether all data is static words
        self._layouts: dict[bytes, tuple[str, list[tuple[str, str]], list[tuple[str, str]], bool]] = {}
        for item in abi:
            if item["type"] == "function":
                types = [_canonical_type(i) for i in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                # an overloaded name is left out: encode_call refuses it rather than guess
                self.functions[item["name"]] = (b"", []) if item["name"] in self.functions else (selector, types)
            elif item["type"] == "error":
                types = [_canonical_type(i) for i in item["inputs"]]
                selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                self.errors[selector] = (item["name"], [i["name"] for i in item["inputs"]], types)
            elif item["type"] == "event":
                types = [_canonical_type(i) for i in item["inputs"]]
                topic = keccak(text=f"{item['name']}({','.join(types)})")
                self.events[topic] = (item["name"], item["inputs"])
                indexed = [(i["name"], _canonical_type(i)) for i in item["inputs"] if i.get("indexed")]
                plain = [(i["name"], _canonical_type(i)) for i in item["inputs"] if not i.get("indexed")]
                self._layouts[topic] = (
                    item["name"],
                    indexed,
                    plain,
                    all(_is_static_word(t) for _, t in plain),
                )
        self.event_topics = {name: topic for topic, (name, _) in self.events.items()}

    def encode_call(self, function: str, args: Sequence[Any]) -> bytes:
        """Calldata of ``function(*args)``: selector and eth_abi encoding (web3's contract layer costs
        about 40 times as much a call)."""
        selector, types = self.functions.get(function, (b"", []))
        if not selector:
            raise ConfigurationError(f"the contract has no single function named {function!r} to encode")
        return selector + abi_encode(types, list(args))

    def decode_error(self, data: bytes | str) -> tuple[str, dict[str, Any]]:
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
        known = self.errors.get(raw[:4])
        if known is None:
            return "UnknownRevert", {"data": "0x" + raw.hex()}
        name, names, types = known
        values = abi_decode(types, raw[4:])
        return name, dict(zip(names, values, strict=True))

    def decode_log(self, log: dict[str, Any]) -> ChainEvent | None:
        topics = [_bytes(t) for t in log["topics"]]
        layout = self._layouts.get(topics[0]) if topics else None
        if layout is None:
            return None
        name, indexed, plain, static = layout
        args: dict[str, Any] = {}
        for (arg, t), topic in zip(indexed, topics[1:], strict=True):
            if _is_static_word(t):
                args[arg] = _word_value(t, topic)  # a static indexed value is its topic word
            elif t in ("string", "bytes") or t.endswith("]") or t.startswith("("):
                args[arg] = topic  # a dynamic one is only the hash of its encoding
            else:
                args[arg] = abi_decode([t], topic)[0]
        data = log["data"]
        data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        if static and len(data) == 32 * len(plain):
            for k, (arg, t) in enumerate(plain):
                args[arg] = _word_value(t, data[32 * k : 32 * k + 32])
        else:
            values = abi_decode([t for _, t in plain], data)
            for (arg, _), value in zip(plain, values, strict=True):
                args[arg] = value
        return ChainEvent(
            name=name,
            args=args,
            block_number=_int(log["blockNumber"]),
            block_hash=_bytes(log["blockHash"]),
            transaction_hash=_bytes(log["transactionHash"]),
            log_index=_int(log["logIndex"]),
        )


def _is_static_word(t: str) -> bool:
    return t in ("address", "bool") or (t.startswith(("uint", "bytes")) and t[-1].isdigit() and "[" not in t)


def _word_value(t: str, word: bytes) -> Any:
    """One ABI word of a static type, decoded by slicing (eth_abi's generic decoder costs ~20x)."""
    if t.startswith("uint"):
        return int.from_bytes(word, "big")
    if t == "bool":
        return word[-1] == 1
    if t == "address":
        return to_checksum_address(word[12:])
    return word[: int(t[5:])]  # bytesN, left-aligned


def _int(v: int | str) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _bytes(v: bytes | str) -> bytes:
    return bytes.fromhex(v[2:]) if isinstance(v, str) else bytes(v)


@dataclass(frozen=True, slots=True)
class TransactionOutcome:
    """A mined transaction: its receipt figures and the contract events it emitted."""

    transaction_hash: bytes
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...]

    def named(self, name: str) -> list[ChainEvent]:
        return [e for e in self.events if e.name == name]


class ClaimLedgerContract:
    """The deployed ClaimLedger at ``address``: typed calls, decoded reverts and events.

    ``sender`` is the account that signs: an address the node holds unlocked (a local dev
    node) or an ``eth_account`` LocalAccount (signed here, sent raw).
    """

    def __init__(self, w3: Web3, address: str, artifact: dict[str, Any] | None = None) -> None:
        self.w3 = w3
        self.artifact = artifact or load_artifact()
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=self.artifact["abi"])
        self.abi = ContractAbi(self.artifact["abi"])

    # -------------------------------------------------------------- deployment

    @classmethod
    def deploy(
        cls, w3: Web3, deployer: Any, *, admin: str | None = None, admin_delay: int = 0
    ) -> tuple[ClaimLedgerContract, TransactionOutcome]:
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        admin_address = admin or _address_of(deployer)
        tx = factory.constructor(admin_delay, admin_address)
        receipt = _send(w3, tx, deployer, "deploy ClaimLedger", ContractAbi(artifact["abi"]))
        address = receipt["contractAddress"]
        ledger = cls(w3, address, artifact)
        return ledger, ledger._outcome(receipt)

    # -------------------------------------------------------------- transactions

    def transact(self, function: str, *args: Any, sender: Any) -> TransactionOutcome:
        call = getattr(self.contract.functions, function)(*args)
        receipt = _send(self.w3, call, sender, function, self.abi)
        return self._outcome(receipt)

    def transact_call(self, call: tuple[str, tuple[Any, ...]], *, sender: Any) -> TransactionOutcome:
        """``transact`` for a ``(function, args)`` pair, e.g. from :func:`payer_call`."""
        function, args = call
        return self.transact(function, *args, sender=sender)

    def submit_claims(self, claims: Sequence[ClaimSubmission], *, sender: Any) -> TransactionOutcome:
        return self.transact("submitClaims", [c.as_tuple() for c in claims], sender=sender)

    def void_claim(self, exact_key: bytes, version: int, *, sender: Any) -> TransactionOutcome:
        return self.transact("voidClaim", exact_key, version, sender=sender)

    def acknowledge(
        self, exact_key: bytes, version: int, accepted: bool, reason_code: bytes = b"", *, sender: Any
    ) -> TransactionOutcome:
        return self.transact_call(payer_call("acknowledge", exact_key, version, accepted, reason_code), sender=sender)

    def adjudicate(
        self,
        exact_key: bytes,
        version: int,
        outcome: str,
        allowed_amount: int,
        carc_codes: Iterable[str] = (),
        *,
        sender: Any,
    ) -> TransactionOutcome:
        call = payer_call("adjudicate", exact_key, version, outcome, allowed_amount, carc_codes)
        return self.transact_call(call, sender=sender)

    def record_payment(
        self, exact_key: bytes, version: int, paid_amount: int, remittance_hash: bytes, *, sender: Any
    ) -> TransactionOutcome:
        call = payer_call("record_payment", exact_key, version, paid_amount, remittance_hash)
        return self.transact_call(call, sender=sender)

    def reverse_payment(
        self, exact_key: bytes, version: int, remittance_hash: bytes, *, sender: Any
    ) -> TransactionOutcome:
        return self.transact_call(payer_call("reverse_payment", exact_key, version, remittance_hash), sender=sender)

    def multicall(self, calls: Sequence[tuple[str, tuple[Any, ...]]], *, sender: Any) -> TransactionOutcome:
        """Several calls (``(function, args)``, e.g. from :func:`payer_call`) in one transaction, each with
        ``sender``'s rights, in order; all or nothing: one refusal reverts them all with its error."""
        data = [self.abi.encode_call(name, args) for name, args in calls]
        return self.transact("multicall", data, sender=sender)

    def register_organisation(self, org_name: str, role: str, *, sender: Any) -> int:
        outcome = self.transact("registerOrganisation", org_id(org_name), ROLES.index(role), sender=sender)
        registered = outcome.named("OrganisationRegistered")
        return int(registered[0].args["org"])

    def add_account(self, org: int, account: str, *, sender: Any) -> TransactionOutcome:
        return self.transact("addAccount", org, to_checksum_address(account), sender=sender)

    def set_fingerprint_key(self, key_id: int, accepted: bool, *, sender: Any) -> TransactionOutcome:
        return self.transact("setFingerprintKey", key_id, accepted, sender=sender)

    # -------------------------------------------------------------- views

    def call(self, function: str, *args: Any) -> Any:
        return self._guard(function, lambda: getattr(self.contract.functions, function)(*args).call())

    def claim_record(self, exact_key: bytes) -> dict[str, Any]:
        r = self.call("claimRecord", exact_key)
        return {
            "status": STATUSES[r[0]],
            "frequency": r[1],
            "suspect": r[2],
            "line_count": r[3],
            "version": r[4],
            "provider_org": r[5],
            "payer_org": r[6],
            "key_id": r[7],
            "submitted_at": r[8],
            "total_charge": r[9],
        }

    def settlement(self, exact_key: bytes) -> dict[str, Any]:
        s = self.call("settlement", exact_key)
        return {
            "outcome": OUTCOMES[s[0]],
            "acknowledged_at": s[1],
            "adjudicated_at": s[2],
            "paid_at": s[3],
            "allowed_amount": s[4],
            "paid_amount": s[5],
        }

    def claim_status(self, exact_key: bytes, version: int) -> str:
        return STATUSES[self.call("claimStatus", exact_key, version)]

    def live_version(self, exact_key: bytes) -> int:
        return int(self.call("liveVersion", exact_key))

    def line_holder(self, line_key: bytes) -> tuple[bytes, int]:
        key, version = self.call("lineHolder", line_key)
        return bytes(key), int(version)

    def events(self, from_block: int = 0, to_block: Any = "latest") -> list[ChainEvent]:
        logs = self._guard(
            "eth_getLogs",
            lambda: self.w3.eth.get_logs({"address": self.address, "fromBlock": from_block, "toBlock": to_block}),
        )
        decoded = (self.abi.decode_log(dict(log)) for log in logs)
        return [e for e in decoded if e is not None]

    # -------------------------------------------------------------- internal

    def _outcome(self, receipt: Any) -> TransactionOutcome:
        return outcome_of(receipt, self.address, self.abi)

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        return _guarded(what, self.abi, fn)


def outcome_of(receipt: Mapping[str, Any], address: str, abi: ContractAbi) -> TransactionOutcome:
    """A mined transaction's outcome and the events ``address`` emitted in it, from web3's receipt or
    the node's own JSON one."""
    ours = address.lower()
    decoded = (abi.decode_log(dict(log)) for log in receipt["logs"] if str(log["address"]).lower() == ours)
    return TransactionOutcome(
        transaction_hash=_bytes(receipt["transactionHash"]),
        block_number=_quantity(receipt["blockNumber"]),
        gas_used=_quantity(receipt["gasUsed"]),
        events=tuple(e for e in decoded if e is not None),
    )


def _quantity(v: int | str) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _address_of(sender: Any) -> str:
    return to_checksum_address(sender if isinstance(sender, str) else sender.address)


def _guarded(what: str, abi: ContractAbi, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
        data = exc.data if isinstance(exc.data, str) else None
        if data and len(data) >= 10:
            name, args = abi.decode_error(data)
            raise ContractRevertError(name, args, call=what) from None
        raise ContractRevertError("Revert", {"reason": str(exc)}, call=what) from None
    except (requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
        raise ChainUnavailableError(f"node did not answer {what}: {exc}") from exc


def payer_call(step: str, exact_key: bytes, version: int, *args: Any) -> tuple[str, tuple[Any, ...]]:
    """A payer step as the contract function and the arguments it takes:
    ``acknowledge`` (accepted, reason code), ``adjudicate`` (outcome, allowed, CARC codes),
    ``record_payment`` (paid, remittance hash), ``reverse_payment`` (remittance hash)."""
    if step == "acknowledge":
        accepted, *rest = args
        reason: bytes = rest[0] if rest else b""
        return "acknowledge", (exact_key, version, accepted, reason.ljust(8, b"\0"))
    if step == "adjudicate":
        outcome, allowed, *rest = args
        codes = [c.encode("ascii").ljust(4, b"\0") for c in (rest[0] if rest else ())]
        return "adjudicate", (exact_key, version, OUTCOMES.index(outcome), allowed, codes)
    if step == "record_payment":
        return "recordPayment", (exact_key, version, *args)
    if step == "reverse_payment":
        return "reversePayment", (exact_key, version, *args)
    raise ValueError(f"{step!r} is not a payer step")


def code_text(value: Any) -> str:
    """A fixed-size code argument (bytes4 CARC code, bytes8 reason) as bytes or as the index keeps it
    (``0x``-hex, NUL padded) -> its text; anything else as text."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str) and value[:2].lower() == "0x":
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            return value
    else:
        return str(value or "")
    return raw.rstrip(b"\0").decode("ascii", "replace")


def _send(w3: Web3, call: Any, sender: Any, what: str, abi: ContractAbi) -> Any:
    """Estimate (which surfaces a revert with its custom error), send, wait for the receipt."""

    def run() -> Any:
        address = _address_of(sender)
        tx = call.build_transaction(
            {"from": address, "nonce": w3.eth.get_transaction_count(to_checksum_address(address), "pending")}
        )
        if isinstance(sender, str):
            tx_hash = w3.eth.send_transaction(tx)
        else:
            tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=RECEIPT_POLL_S)
        if receipt["status"] != 1:
            # Mined but reverted (state moved between estimate and mining): replay it for the reason.
            w3.eth.call(
                cast(Any, {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}), receipt["blockNumber"]
            )
            raise ContractRevertError("Revert", {"transaction": "0x" + bytes(tx_hash).hex()}, call=what)
        return receipt

    return _guarded(what, abi, run)
