"""Deploys the ClaimLedger once per chain and remembers where, in the data folder.

On a restart the recorded address is checked against the node (same chain, same code) and
reused; the contract is never deployed twice over the same data folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from ledger.chain import ClaimLedgerContract
from ledger.compiler import load_artifact
from ledger.errors import ConfigurationError

DEPLOYMENT_FILE = "deployment.json"


@dataclass(frozen=True)
class Deployment:
    """Where the ledger lives on a chain."""

    chain_id: int
    address: str
    block_number: int
    transaction_hash: str
    source_hash: str


def load_deployment(data_dir: Path) -> Deployment | None:
    path = Path(data_dir) / DEPLOYMENT_FILE
    if not path.exists():
        return None
    try:
        return Deployment(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"deployment record {path} is unreadable ({exc}): restore it from a backup") from exc


def ensure_deployed(w3: Web3, data_dir: Path, deployer: Any, *, admin_delay: int = 0) -> Deployment:
    """The deployment recorded in ``data_dir``, checked against the node; deployed if none."""
    data_dir = Path(data_dir)
    chain_id = int(w3.eth.chain_id)
    existing = load_deployment(data_dir)
    if existing is not None:
        if existing.chain_id != chain_id:
            raise ConfigurationError(
                f"{data_dir / DEPLOYMENT_FILE} is for chain {existing.chain_id} but the node is chain {chain_id}"
            )
        code = w3.eth.get_code(Web3.to_checksum_address(existing.address))
        if not code:
            raise ConfigurationError(
                f"no contract at {existing.address} on chain {chain_id}, though {data_dir / DEPLOYMENT_FILE} "
                "records one: the node's state was lost. Restore the node's state file, or move the data "
                "folder aside to start a new ledger."
            )
        return existing
    ledger, outcome = ClaimLedgerContract.deploy(w3, deployer, admin_delay=admin_delay)
    deployment = Deployment(
        chain_id=chain_id,
        address=ledger.address,
        block_number=outcome.block_number,
        transaction_hash="0x" + outcome.transaction_hash.hex(),
        source_hash=str(load_artifact().get("sourceHash", "")),
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (DEPLOYMENT_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(deployment), indent=1) + "\n")
    tmp.replace(data_dir / DEPLOYMENT_FILE)
    return deployment
