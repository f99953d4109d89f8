"""The gateway's one configuration: environment variables (``CLAIMLEDGER_*``) and ``.env``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.service import DEFAULT_SUBMIT_TIMEOUT_S
from ledger.store import sqlite_url

DEFAULT_DATA_DIR = Path("data")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # a batch of 1,000 claims is about 700 KB
DEFAULT_MAX_IMPORT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_BATCH_CLAIMS = 1000
DEFAULT_DEV_FUNDING_WEI = 10 * 10**18
DEFAULT_KDF_ITERATIONS = 200_000
DEV_KDF_ITERATIONS = 20_000
DATABASE_FILE = "claimledger.db"
KEYRING_FILE = "fingerprint-keys.json"
DOCUMENT_KEY_FILE = "document.key"
# Passphrases that must never protect real keys: refused outside development.
PLACEHOLDER_PASSPHRASES = frozenset({"", "changethis", "change-me", "changeme", "development", "dev-only-passphrase"})
DEV_PASSPHRASE = "dev-only-passphrase"


class Settings(BaseSettings):
    """Everything the gateway, its CLI and its embedded node read; one object, built once."""

    model_config = SettingsConfigDict(
        env_prefix="CLAIMLEDGER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    rpc_url: str | None = None
    """An existing node's JSON-RPC URL; None starts the embedded anvil with its state in ``data_dir``."""
    node_port: int | None = None
    """The embedded node's port (None: a free loopback port)."""
    poa: Literal["auto", "on", "off"] = "auto"
    """web3's extra-data middleware for QBFT/Clique blocks: detect it, or force it on or off."""
    database_url: str | None = None
    """SQLAlchemy URL (``postgresql+psycopg://...``); None is a SQLite file in ``data_dir``."""
    contract_address: str | None = None
    """Join an existing deployment (a second gateway of the consortium) instead of deploying one."""
    keyring_path: Path | None = None
    """The consortium's fingerprint keyring; None is ``data_dir/fingerprint-keys.json`` (made on first run)."""
    keystore_passphrase: SecretStr = SecretStr(DEV_PASSPHRASE)
    """Encrypts every organisation's chain key (an Ethereum keystore, PBKDF2-SHA256)."""
    keystore_kdf_iterations: int | None = Field(default=None, ge=1)
    """PBKDF2 iterations for new keystores; None: 200,000 in production, 20,000 in development."""
    operator_private_key: SecretStr | None = None
    """The consortium operator's chain key; None on a development chain is anvil's dev account 0."""
    org_funding_wei: int | None = Field(default=None, ge=0)
    """Gas money the operator sends each new organisation account; None: 10 ETH on a dev chain, else 0."""
    demo_consortium: bool = True
    """On first run, create a demo provider, two payers and an auditor and print their API keys."""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_import_bytes: int = Field(default=DEFAULT_MAX_IMPORT_BYTES, ge=1024)
    """The largest X12 or FHIR file /v1/imports/ takes (a 10,000-claim 837P is about 8 MB)."""
    max_batch_claims: int = Field(default=DEFAULT_MAX_BATCH_CLAIMS, ge=1, le=2000)
    node_gas_limit: int = Field(default=4_000_000_000, ge=30_000_000)
    """The embedded node's block gas limit: room for about 70 transactions of 1,000 claims (55M gas each) in a
    block. On a large ledger the block maker gathers many in one block; 1,000,000,000 held it to 17."""
    node_block_time_s: int | None = Field(default=None, ge=1)
    """The embedded node mines a block every this many seconds instead of as soon as transactions wait
    (node_gather_blocks). That answers soonest; on a large ledger, where anvil rebuilds its state trie at
    every block, long blocks of many transactions keep the rate up (README, Figures)."""
    node_gather_blocks: bool = True
    """Without a block time, the embedded node mines on demand (``ledger.block_maker``): the transactions that
    come together go in one block, where automine (false) makes a block of each. A block costs anvil a rebuild
    of its state trie, which grows with the ledger, so on a large ledger fewer blocks are more claims a second."""
    node_state_interval_s: int | None = Field(default=None, ge=1)
    """The embedded node saves its state this often (and on a clean stop). A save writes the whole state,
    about 2 KB a claim; a crash of the node loses at most this many seconds of blocks, and each gateway's
    outbox sends its own transactions of that window again. Unset: 10 s, and a second more for every 50 MB
    of state saved when the node starts (60 s at a million claims; ``ledger.node.state_interval_for``)."""
    max_tx_gas: int = Field(default=100_000_000, ge=1_000_000)
    """The most gas one submission transaction may use (a 1,000-claim batch needs about 55M)."""
    pipeline_max_wait_ms: float = Field(default=5.0, ge=0)
    """How long a claim waits in the submission pipeline for others to share its transaction."""
    pipeline_max_in_flight: int = Field(default=96, ge=1)
    """Submission transactions a signing account has signed and not yet seen the receipt of. On a large ledger
    they are what the next block gathers: at 1.2-1.4 million claims, 32 clients, 16 gave 1,728 claims/s and 32
    gave 1,976; at a million claims, 128 clients, 32 gave 2,472-2,548 and 64 gave 2,889-3,095 (96: 2,987);
    once receipts were read eight to a request and the block maker held blocks up to 2 s, 64 gave 3,170-3,247,
    96 gave 3,285-3,493 and 128 gave 3,276-3,442. On an empty ledger 4, 32 and 64 measure the same (a few are
    in flight there). A block takes at most NODE_GAS_LIMIT: about 70 of 1,000 claims."""
    submit_timeout_s: float = Field(default=DEFAULT_SUBMIT_TIMEOUT_S, gt=0)
    """How long a claim POST waits for the chain before it is answered 503 (the claims are kept and may
    still be recorded). With long blocks on a large ledger (8 s blocks at a million claims) raise it."""
    index_interval_s: float = Field(default=0.25, gt=0)
    index_process: bool = True
    """Follow the chain into the index in a process of its own (ledger.index_follower), so that the
    gateway's interpreter is left to HTTP and the pipeline; off: a thread of the gateway does it."""
    auth_cache_s: float = Field(default=5.0, ge=0)
    """How long an API key found good is taken without asking the store again (0: every request asks).
    A revocation through this gateway, or with the CLI over its data folder, takes effect at once."""
    node_check_s: float = Field(default=0.05, ge=0)
    """A single-claim or batch POST takes the node to be up if a call to it started this recently found it
    up (0: probe it every request); a claim waiting for a node found gone since is answered 503 at once."""
    retry_after_s: int = Field(default=2, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    idempotency_in_flight_timeout_s: int = Field(default=300, ge=1)
    """An in-flight Idempotency-Key older than this belongs to a request that died: it may be taken over."""
    audit_anchor_interval_s: float = Field(default=300, gt=0)
    """How often the access log's head hash is anchored on chain."""
    log_level: str = "info"

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment != "development":
            if self.keystore_passphrase.get_secret_value().strip().lower() in PLACEHOLDER_PASSPHRASES:
                raise ValueError(
                    "CLAIMLEDGER_KEYSTORE_PASSPHRASE is a placeholder: set a real passphrase outside development"
                )
            if len(self.keystore_passphrase.get_secret_value()) < 12:
                raise ValueError("CLAIMLEDGER_KEYSTORE_PASSPHRASE must be at least 12 characters in production")
        return self

    # ------------------------------------------------------------------ derived

    @cached_property
    def embedded(self) -> bool:
        return self.rpc_url is None

    @cached_property
    def poa_flag(self) -> bool | None:
        return {"auto": None, "on": True, "off": False}[self.poa]

    @cached_property
    def sql_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / DATABASE_FILE)

    @cached_property
    def keyring_file(self) -> Path:
        return self.keyring_path or self.data_dir / KEYRING_FILE

    @cached_property
    def document_key_file(self) -> Path:
        return self.data_dir / DOCUMENT_KEY_FILE

    @cached_property
    def kdf_iterations(self) -> int:
        if self.keystore_kdf_iterations is not None:
            return self.keystore_kdf_iterations
        return DEV_KDF_ITERATIONS if self.environment == "development" else DEFAULT_KDF_ITERATIONS
