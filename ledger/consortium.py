"""Consortium members as a gateway holds them: organisations, their chain accounts, API keys.

Each organisation gets a fresh chain account whose private key is kept only in an Ethereum
keystore (``eth_account`` ``Account.encrypt``, PBKDF2-HMAC-SHA256) under the gateway's
passphrase; the key is decrypted once, on first use, and kept in memory. Creating an
organisation is a resumable flow of steps, each skipped when the chain already shows it done:

    1. make the account and store its keystore (status ``pending``)
    2. fund it with gas money from the operator account
    3. register the organisation on chain (``registerOrganisation``)
    4. add the account to it (``addAccount``)            -> status ``active``

API keys (``clk_`` and 32 random bytes, URL-safe) are shown once; only their SHA-256 and a
short prefix (to find and revoke them) are stored. A key maps to one organisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ledger.chain import ROLES, ClaimLedgerContract, org_id
from ledger.errors import ChainUnavailableError, ConfigurationError, KeyringError, LedgerError
from ledger.node import DEV_MNEMONIC
from ledger.service import Member
from ledger.store import metadata

MEMBER_ROLES = ("provider", "payer", "auditor")
OPERATOR_ROLE = "operator"
OPERATOR_NAME = "OPERATOR"
"""The operator's pseudo-organisation: it holds API keys for the admin endpoints, nothing on chain."""
KEY_PREFIX = "clk_"
KEY_RANDOM_BYTES = 32
KEY_LOOKUP_CHARS = 12  # "clk_" and 8 characters of the random part: enough to find, not to guess
NAME_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
TRANSFER_GAS = 21_000
FUNDING_RECEIPT_TIMEOUT_S = 60.0
DEV_CHAIN_IDS = frozenset({31337, 1337})

organisations = Table(
    "organisations",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("chain_index", Integer),
    Column("address", String(42), nullable=False, unique=True),
    Column("keystore", Text),  # None only for the operator, whose key comes from settings
    Column("status", String(16), nullable=False),  # pending | active
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("organisation", String(32), ForeignKey("organisations.name"), nullable=False, index=True),
    Column("label", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)


class ConsortiumError(LedgerError):
    code = "consortium_error"


class OrganisationExistsError(ConsortiumError):
    code = "organisation_exists"


class OrganisationNotFoundError(ConsortiumError, LookupError):
    code = "organisation_not_found"


class ApiKeyNotFoundError(ConsortiumError, LookupError):
    code = "api_key_not_found"


class FundingError(ConsortiumError):
    """The operator account cannot pay a new organisation's gas money."""

    code = "operator_cannot_fund"


@dataclass(frozen=True)
class Organisation:
    name: str
    role: str
    chain_index: int | None
    address: str
    status: str
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "chain_index": self.chain_index,
            "address": self.address,
            "status": self.status,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class IssuedKey:
    """An API key as issued: ``key`` is shown this once and never stored."""

    key: str
    prefix: str
    organisation: str
    created_at: int


@dataclass(frozen=True)
class ApiKeyInfo:
    prefix: str
    organisation: str
    label: str | None
    created_at: int
    revoked_at: int | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def dev_operator_account() -> LocalAccount:
    """Account 0 of anvil's well-known development mnemonic (a local node's deployer)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC)
    return account


def _row_org(row: Any) -> Organisation:
    return Organisation(
        name=row.name,
        role=row.role,
        chain_index=row.chain_index,
        address=row.address,
        status=row.status,
        created_at=row.created_at,
    )


class Consortium:
    """The organisations and API keys this gateway knows, and the operator who creates them."""

    def __init__(
        self,
        engine: Engine,
        contract: ClaimLedgerContract | None,
        operator: LocalAccount | None,
        *,
        passphrase: str,
        kdf_iterations: int,
        funding_wei: int,
    ) -> None:
        self.engine = engine
        self.contract = contract
        self.operator = operator
        self.funding_wei = funding_wei
        self._passphrase = passphrase
        self._kdf_iterations = kdf_iterations
        self._members: dict[str, Member] = {}
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()
        self._operator_lock = threading.Lock()
        if operator is not None:
            self._ensure_operator_row()

    # ------------------------------------------------------------------ organisations

    def _chain(self) -> tuple[ClaimLedgerContract, LocalAccount]:
        if self.contract is None or self.operator is None:
            raise ConfigurationError("this consortium was opened without the chain: open the gateway's runtime")
        return self.contract, self.operator

    def _ensure_operator_row(self) -> None:
        assert self.operator is not None
        with self.engine.begin() as conn:
            row = conn.execute(select(organisations).where(organisations.c.name == OPERATOR_NAME)).first()
            if row is None:
                with contextlib.suppress(IntegrityError):  # another process made it first
                    conn.execute(
                        insert(organisations).values(
                            name=OPERATOR_NAME,
                            role=OPERATOR_ROLE,
                            chain_index=0,
                            address=self.operator.address,
                            keystore=None,
                            status="active",
                            created_at=int(time.time()),
                        )
                    )
            elif row.address != self.operator.address:
                raise ConfigurationError(
                    f"this gateway's database belongs to operator {row.address}, but the operator key in the "
                    f"settings is {self.operator.address}: set CLAIMLEDGER_OPERATOR_PRIVATE_KEY to the key this "
                    "data folder was made with"
                )

    def organisations(self, *, include_operator: bool = False) -> list[Organisation]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(organisations).order_by(organisations.c.created_at, organisations.c.name)).all()
        return [_row_org(r) for r in rows if include_operator or r.role != OPERATOR_ROLE]

    def organisation(self, name: str) -> Organisation:
        with self.engine.connect() as conn:
            row = conn.execute(select(organisations).where(organisations.c.name == name)).first()
        if row is None:
            raise OrganisationNotFoundError(
                f"no organisation {name!r} on this gateway: list them with `claimledger status`",
                details={"organisation": name},
            )
        return _row_org(row)

    def create_organisation(self, name: str, role: str) -> Organisation:
        """Create (or finish creating) organisation ``name`` with a new funded, registered account."""
        name = name.strip().upper()
        if not NAME_PATTERN.fullmatch(name) or name == OPERATOR_NAME:
            raise ConsortiumError(
                f"organisation name {name!r} must be 1 to 32 letters, digits and dashes (e.g. PROV-A), "
                f"not {OPERATOR_NAME}",
                details={"name": name},
            )
        if role not in MEMBER_ROLES:
            raise ConsortiumError(f"role {role!r} must be one of {', '.join(MEMBER_ROLES)}", details={"role": role})
        self._chain()
        with self._operator_lock:
            org = self._pending_account(name, role)
            self._fund(org.address)
            index = self._register(name, role)
            self._add_account(index, org.address)
            with self.engine.begin() as conn:
                conn.execute(
                    update(organisations).where(organisations.c.name == name).values(chain_index=index, status="active")
                )
        return self.organisation(name)

    def _pending_account(self, name: str, role: str) -> Organisation:
        with self.engine.connect() as conn:
            row = conn.execute(select(organisations).where(organisations.c.name == name)).first()
        if row is not None:
            if row.status == "active":
                raise OrganisationExistsError(
                    f"organisation {name} already exists ({row.role}, on-chain index {row.chain_index}): "
                    "issue it another key instead",
                    details={"organisation": name, "role": row.role},
                )
            if row.role != role:
                raise OrganisationExistsError(
                    f"organisation {name} is half-created as a {row.role}, not a {role}: finish it as a {row.role}",
                    details={"organisation": name, "role": row.role},
                )
            return _row_org(row)
        account: LocalAccount = Account.create()
        keystore = Account.encrypt(account.key, self._passphrase, kdf="pbkdf2", iterations=self._kdf_iterations)
        now = int(time.time())
        with self.engine.begin() as conn:
            conn.execute(
                insert(organisations).values(
                    name=name,
                    role=role,
                    chain_index=None,
                    address=account.address,
                    keystore=json.dumps(keystore),
                    status="pending",
                    created_at=now,
                )
            )
        return Organisation(name, role, None, account.address, "pending", now)

    def _fund(self, address: str) -> None:
        """Step 2: the operator sends the new account its gas money (skipped if it has it already)."""
        if self.funding_wei <= 0:
            return
        contract, operator = self._chain()
        w3 = contract.w3
        try:
            if w3.eth.get_balance(to_checksum_address(address)) >= self.funding_wei:
                return
            operator_balance = w3.eth.get_balance(operator.address)
            gas_price = int(w3.eth.gas_price)
            needed = self.funding_wei + TRANSFER_GAS * gas_price
            if operator_balance < needed:
                raise FundingError(
                    f"the operator account {operator.address} holds {operator_balance} wei but funding a new "
                    f"organisation needs {needed}: send it funds, or set CLAIMLEDGER_ORG_FUNDING_WEI lower "
                    "(0 on a zero-gas network)",
                    details={"operator": operator.address, "balance": operator_balance, "needed": needed},
                )
            tx: dict[str, Any] = {
                "to": to_checksum_address(address),
                "value": self.funding_wei,
                "gas": TRANSFER_GAS,
                "gasPrice": gas_price,
                "nonce": w3.eth.get_transaction_count(operator.address, "pending"),
                "chainId": int(w3.eth.chain_id),
            }
            tx_hash = w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=FUNDING_RECEIPT_TIMEOUT_S, poll_latency=0.01)
        except LedgerError:
            raise
        except (ConnectionError, OSError) as exc:
            raise ChainUnavailableError(f"node did not answer while funding {address}: {exc}") from exc
        except Exception as exc:  # web3 raises many shapes for a refused transfer
            raise FundingError(
                f"the operator account {operator.address} could not fund {address}: {exc}",
                details={"operator": operator.address},
            ) from exc
        if receipt["status"] != 1:
            raise FundingError(
                f"the funding transfer to {address} failed on chain", details={"operator": operator.address}
            )

    def _register(self, name: str, role: str) -> int:
        """Step 3: the organisation on chain (an existing one of the same role is joined, not refused)."""
        contract, operator = self._chain()
        index = int(contract.call("organisationIndex", org_id(name)))
        if index:
            on_chain = contract.call("organisation", index)
            on_chain_role = ROLES[on_chain[1]]
            if on_chain_role != role:
                raise OrganisationExistsError(
                    f"organisation {name} is registered on chain as a {on_chain_role}, not a {role}",
                    details={"organisation": name, "role": on_chain_role},
                )
            return index
        return contract.register_organisation(name, role, sender=operator)

    def _add_account(self, index: int, address: str) -> None:
        """Step 4: the new account joins its organisation (skipped if it already has)."""
        contract, operator = self._chain()
        if int(contract.call("organisationOf", to_checksum_address(address))) == index:
            return
        contract.add_account(index, address, sender=operator)

    def name_of(self, chain_index: int) -> str | None:
        """The name of on-chain organisation ``chain_index`` (this gateway's or any other member's)."""
        if not chain_index:
            return None
        cached = self._names.get(chain_index)
        if cached is None:
            with self.engine.connect() as conn:
                cached = conn.execute(
                    select(organisations.c.name).where(organisations.c.chain_index == chain_index)
                ).scalar()
            if cached is None:
                if self.contract is None:
                    return None
                try:
                    raw = bytes(self.contract.call("organisation", chain_index)[0])
                except LedgerError:
                    return None
                cached = raw.rstrip(b"\x00").decode("ascii", "replace") or None
            if cached:
                self._names[chain_index] = cached
        return cached

    # ------------------------------------------------------------------ API keys

    def issue_key(self, organisation: str, *, label: str | None = None) -> IssuedKey:
        org = self.organisation(organisation)
        if org.status != "active":
            raise ConsortiumError(
                f"organisation {org.name} is not active yet: finish creating it first",
                details={"organisation": org.name},
            )
        now = int(time.time())
        for _ in range(3):  # a prefix collision (1 in 2**48) just draws again
            key = new_api_key()
            prefix = key[:KEY_LOOKUP_CHARS]
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(api_keys).values(
                            prefix=prefix,
                            key_hash=hash_key(key),
                            organisation=org.name,
                            label=label,
                            created_at=now,
                        )
                    )
            except IntegrityError:
                continue
            return IssuedKey(key, prefix, org.name, now)
        raise ConsortiumError("could not draw a unique API key prefix: try again")

    def revoke_key(self, prefix: str, *, organisation: str | None = None) -> ApiKeyInfo:
        with self.engine.begin() as conn:
            query = select(api_keys).where(api_keys.c.prefix == prefix)
            if organisation is not None:
                query = query.where(api_keys.c.organisation == organisation)
            row = conn.execute(query).first()
            if row is None:
                raise ApiKeyNotFoundError(f"no API key with prefix {prefix!r}", details={"prefix": prefix})
            revoked_at = row.revoked_at or int(time.time())
            conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=revoked_at))
        return ApiKeyInfo(row.prefix, row.organisation, row.label, row.created_at, revoked_at)

    def api_keys(self, organisation: str | None = None) -> list[ApiKeyInfo]:
        query = select(api_keys).order_by(api_keys.c.id)
        if organisation is not None:
            query = query.where(api_keys.c.organisation == organisation)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ApiKeyInfo(r.prefix, r.organisation, r.label, r.created_at, r.revoked_at) for r in rows]

    def authenticate(self, key: str) -> Member | None:
        """The member an API key acts for, or None for an unknown or revoked key."""
        if not key.startswith(KEY_PREFIX) or len(key) < KEY_LOOKUP_CHARS + 8 or len(key) > 128:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.key_hash, api_keys.c.organisation, api_keys.c.revoked_at).where(
                    api_keys.c.prefix == key[:KEY_LOOKUP_CHARS]
                )
            ).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key)):
            return None
        return self.member(row.organisation)

    def member(self, name: str) -> Member:
        """The organisation as a signing member; its keystore is decrypted on first use only."""
        with self._lock:
            cached = self._members.get(name)
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(select(organisations).where(organisations.c.name == name)).first()
        if row is None or row.status != "active":
            raise OrganisationNotFoundError(f"no active organisation {name!r}", details={"organisation": name})
        if row.role == OPERATOR_ROLE:
            if self.operator is None:
                raise ConfigurationError("the operator's key is not loaded in this process")
            account = self.operator
        else:
            try:
                account = Account.from_key(Account.decrypt(json.loads(row.keystore), self._passphrase))
            except ValueError as exc:
                raise KeyringError(
                    f"the keystore of {name} does not open with this gateway's passphrase: set "
                    "CLAIMLEDGER_KEYSTORE_PASSPHRASE to the one it was made with"
                ) from exc
        member = Member(name=row.name, role=row.role, org=row.chain_index or 0, account=account)
        with self._lock:
            self._members.setdefault(name, member)
            return self._members[name]
