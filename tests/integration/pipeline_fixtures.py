"""Shared set-up for the pipeline, crash, indexer and no-PHI integration tests.

A real anvil per test (``LocalNode`` in ``tmp_path``), the ClaimLedger deployed on it with
PROV-A (provider, dev account 1), PAYER-X (dev account 2) and PAYER-Y (dev account 3)
registered and a fresh fingerprint key accepted. Claims are real synthetic claims
(:class:`ledger.claim.Claim`) fingerprinted with :func:`ledger.fingerprint.fingerprint`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, select
from web3 import Web3

from ledger.chain import ZERO32, ClaimLedgerContract, ClaimSubmission, connect
from ledger.claim import Claim
from ledger.documents import DocumentKey, DocumentVault
from ledger.fingerprint import FingerprintKey, Keyring, fingerprint
from ledger.node import DEV_MNEMONIC, LocalNode, NodeConfig
from ledger.pipeline import SubmissionPipeline
from ledger.rpc import RpcClient
from ledger.service import ClaimLedgerService
from ledger.store import make_engine, outbox, sqlite_url, submissions

BIG_GAS_LIMIT = 1_000_000_000
PIPELINE_MAX_TX_GAS = 200_000_000
PROVIDER_INDEX = 1
PAYER_X_INDEX = 2
PAYER_Y_INDEX = 3
SECOND_PROVIDER_INDEX = 4  # a second PROV-A account, for direct contract calls beside a running pipeline

Account.enable_unaudited_hdwallet_features()


def dev_account(i: int) -> LocalAccount:
    """Anvil's dev account ``i`` as a LocalAccount (the same key anvil unlocks as accounts[i])."""
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------- claims

_PROCEDURES = ("99213", "99214", "99203", "93000", "80053", "85025", "J1100", "G0439", "71046", "36415")
_DIAGNOSES = ("E119", "I10", "J069", "M545", "R51", "Z0000")


def npi_with_check_digit(first_nine: str) -> str:
    """A ten-digit NPI: nine digits and their Luhn check digit (with the 80840 prefix)."""
    digits = [int(d) for d in "80840" + first_nine]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:  # the check digit goes to the right: double every other digit from the right
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return first_nine + str((10 - total % 10) % 10)


BILLING_NPI = npi_with_check_digit("123456789")
OTHER_BILLING_NPI = npi_with_check_digit("198765432")
RENDERING_NPI = npi_with_check_digit("112233445")


def make_test_claim(
    *,
    member_id: str = "W100000001",
    birth_date: date = date(1970, 1, 1),
    service_dates: tuple[date, ...] = (date(2025, 3, 3),),
    procedures: tuple[str, ...] | None = None,
    charge_cents: int = 12_500,
    billing_npi: str = BILLING_NPI,
    claim_id: str = "CLM-1",
    payer_id: str = "PAYER-X",
    frequency: str = "1",
    original_claim_id: str | None = None,
) -> Claim:
    """A structurally valid synthetic professional claim, one service line per service date."""
    procedures = procedures or tuple(_PROCEDURES[i % len(_PROCEDURES)] for i in range(len(service_dates)))
    lines = [
        {
            "service_date_from": d.isoformat(),
            "procedure_code": p,
            "charge_cents": charge_cents,
            "diagnosis_pointers": [1],
        }
        for d, p in zip(service_dates, procedures, strict=True)
    ]
    return Claim.model_validate(
        {
            "claim_id": claim_id,
            "frequency": frequency,
            "original_claim_id": original_claim_id,
            "billing_npi": billing_npi,
            "rendering_npi": RENDERING_NPI,
            "payer_id": payer_id,
            "responsibility": "P",
            "member_id": member_id,
            "patient_birth_date": birth_date.isoformat(),
            "place_of_service": "11",
            "diagnoses": [_DIAGNOSES[0], _DIAGNOSES[1]],
            "service_lines": lines,
            "total_charge_cents": charge_cents * len(lines),
        }
    )


def synthetic_claim(n: int, *, seed: int = 0, lines: int | None = None, **overrides: Any) -> Claim:
    """Claim number ``n`` of a deterministic corpus: a distinct member, birth date and service dates."""
    rng = random.Random(seed * 1_000_003 + n)
    count = lines or rng.randint(1, 3)
    first = date(2024, 1, 2) + timedelta(days=rng.randint(0, 400))
    args: dict[str, Any] = {
        "member_id": f"M{seed:02d}{n:07d}X",
        "birth_date": date(1940, 1, 1) + timedelta(days=rng.randint(0, 60 * 365)),
        "service_dates": tuple(first + timedelta(days=3 * k) for k in range(count)),
        "procedures": tuple(rng.choice(_PROCEDURES) for _ in range(count)),
        "charge_cents": rng.randint(1_000, 90_000),
        "claim_id": f"C{seed}-{n}",
    }
    args.update(overrides)
    return make_test_claim(**args)


# ---------------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """A deployed, configured ClaimLedger on a running local node."""

    node: LocalNode
    w3: Web3
    contract: ClaimLedgerContract
    key: FingerprintKey
    provider: LocalAccount
    payer_x_account: str
    payer_y_account: str
    second_provider_account: str
    prov_org: int
    payer_x: int
    payer_y: int
    deploy_block: int
    pipelines: list[SubmissionPipeline] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.contract.address

    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url

    def rpc(self) -> RpcClient:
        return RpcClient(self.node.rpc_url, timeout=10.0)

    def reconnect(self) -> None:
        """A fresh Web3 after a node restart (same URL)."""
        self.w3 = connect(self.node.rpc_url, poa=False)
        self.contract = ClaimLedgerContract(self.w3, self.contract.address)

    def submission(
        self,
        claim: Claim,
        *,
        payer_org: int | None = None,
        frequency: int = 1,
        related_key: bytes = ZERO32,
        related_version: int = 0,
    ) -> ClaimSubmission:
        fp = fingerprint(claim, self.key)
        return ClaimSubmission(
            exact_key=fp.exact_key,
            document_hash=fp.document_hash,
            line_keys=fp.line_keys,
            key_id=fp.key_id,
            payer_org=self.payer_x if payer_org is None else payer_org,
            total_charge=claim.total_charge_cents,
            frequency=frequency,
            related_key=related_key,
            related_version=related_version,
        )

    def pipeline(self, engine: Engine, **kwargs: Any) -> SubmissionPipeline:
        """A pipeline (not started) signing as PROV-A's account 1; stopped at teardown."""
        kwargs.setdefault("max_tx_gas", PIPELINE_MAX_TX_GAS)
        p = SubmissionPipeline(self.rpc(), self.address, self.provider, engine, **kwargs)
        self.pipelines.append(p)
        return p

    # ------------------------------------------------------------------ chain checks

    def submitted_events(self, exact_key: bytes | str) -> list[dict[str, Any]]:
        """The ClaimSubmitted logs of ``exact_key`` over the whole chain."""
        from ledger.calldata import TOPIC_SUBMITTED

        key = exact_key if isinstance(exact_key, str) else "0x" + exact_key.hex()
        logs: list[dict[str, Any]] = self.rpc().call(
            "eth_getLogs",
            {"address": self.address, "fromBlock": "0x0", "toBlock": "latest", "topics": [TOPIC_SUBMITTED, key]},
        )
        return logs

    def all_logs(self) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = self.rpc().call(
            "eth_getLogs", {"address": self.address, "fromBlock": "0x0", "toBlock": "latest"}
        )
        return logs


def start_node(data_dir: Path, **config: Any) -> LocalNode:
    config.setdefault("gas_limit", BIG_GAS_LIMIT)
    return LocalNode(NodeConfig(data_dir=data_dir, **config)).start()


def setup_ledger(node: LocalNode, key: FingerprintKey | None = None) -> Ledger:
    """Deploy and configure the ledger on ``node`` (admin: dev account 0, unlocked)."""
    w3 = connect(node.rpc_url, poa=False)
    admin = w3.eth.accounts[0]
    contract, deployed = ClaimLedgerContract.deploy(w3, admin)
    prov = contract.register_organisation("PROV-A", "provider", sender=admin)
    payer_x = contract.register_organisation("PAYER-X", "payer", sender=admin)
    payer_y = contract.register_organisation("PAYER-Y", "payer", sender=admin)
    provider = dev_account(PROVIDER_INDEX)
    assert provider.address == w3.eth.accounts[PROVIDER_INDEX]
    contract.add_account(prov, provider.address, sender=admin)
    contract.add_account(prov, w3.eth.accounts[SECOND_PROVIDER_INDEX], sender=admin)
    contract.add_account(payer_x, w3.eth.accounts[PAYER_X_INDEX], sender=admin)
    contract.add_account(payer_y, w3.eth.accounts[PAYER_Y_INDEX], sender=admin)
    key = key or FingerprintKey.generate()
    contract.set_fingerprint_key(key.key_id, True, sender=admin)
    return Ledger(
        node=node,
        w3=w3,
        contract=contract,
        key=key,
        provider=provider,
        payer_x_account=w3.eth.accounts[PAYER_X_INDEX],
        payer_y_account=w3.eth.accounts[PAYER_Y_INDEX],
        second_provider_account=w3.eth.accounts[SECOND_PROVIDER_INDEX],
        prov_org=prov,
        payer_x=payer_x,
        payer_y=payer_y,
        deploy_block=deployed.block_number,
    )


def ledger_on_new_node(tmp_path: Path, **config: Any) -> Iterator[Ledger]:
    """Generator body of a ``ledger`` fixture: node started, ledger set up, all torn down."""
    node = start_node(tmp_path / "node", **config)
    ledger: Ledger | None = None
    try:
        block_time = config.get("block_time")
        if block_time is not None:
            # Set the ledger up with automine (eight transactions, each would wait a block), then go
            # back to the interval mining the node was started with.
            RpcClient(node.rpc_url).call("evm_setAutomine", True)
        ledger = setup_ledger(node)
        if block_time is not None:
            rpc = ledger.rpc()
            rpc.call("evm_setIntervalMining", int(block_time))
            first = rpc.block_number()
            wait_until(lambda: rpc.block_number() > first, 5 * block_time, "an interval-mined block")
        yield ledger
    finally:
        for p in ledger.pipelines if ledger else ():
            if p._threads:
                p.stop(timeout=10)
        node.kill()


def new_engine(path: Path) -> Engine:
    return make_engine(sqlite_url(path))


# ---------------------------------------------------------------------------------- SQL checks


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.nonce)).mappings()]


def submission_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(submissions).order_by(submissions.c.id)).mappings()]


def gateway_service(node: LocalNode, tmp_path: Path) -> tuple[Ledger, ClaimLedgerService, Keyring, Engine]:
    """A deployed ledger on ``node`` and a gateway's service over it (SQLite, document vault, keyring in
    ``tmp_path``); close the service when done."""
    keyring = Keyring.generate(tmp_path / "keyring.json")
    ledger = setup_ledger(node, keyring.current)
    engine = new_engine(tmp_path / "gateway.sqlite")
    service = ClaimLedgerService(
        rpc_url=node.rpc_url,
        contract=ledger.contract,
        engine=engine,
        keyring=keyring,
        vault=DocumentVault(engine, DocumentKey.load_or_create(tmp_path / "document.key")),
        max_tx_gas=PIPELINE_MAX_TX_GAS,
    )
    return ledger, service, keyring, engine
