"""The embedded node keeps the ledger across restarts: a clean stop, a crash after the
periodic save, and a deployment record whose chain state is gone. Each test runs its own
anvil in its own data folder."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from web3 import Web3

from ledger.chain import ClaimLedgerContract, ClaimSubmission, connect
from ledger.deploy import DEPLOYMENT_FILE, Deployment, ensure_deployed
from ledger.errors import ConfigurationError
from ledger.node import LocalNode, NodeConfig
from tests.integration.support import ACCEPTED_REASON, KEY_ID, random_key

STATE_SAVE_TIMEOUT_S = 10.0
"""Generous next to the 1 s save interval: a loaded machine may be slow, never this slow."""


def start(nodes: list[LocalNode], data_dir: Path) -> tuple[LocalNode, Web3]:
    node = LocalNode(NodeConfig(data_dir=data_dir)).start()
    nodes.append(node)
    return node, connect(node.rpc_url)


@dataclass
class Ledger:
    """A deployed ledger with one provider (dev account 1) and one payer (dev account 2)."""

    w3: Web3
    deployment: Deployment
    contract: ClaimLedgerContract
    admin: str
    provider: str
    payer: str
    payer_org: int


def deploy_and_register(w3: Web3, data_dir: Path) -> Ledger:
    accounts = [to_checksum_address(a) for a in w3.eth.accounts]
    admin, provider, payer = accounts[:3]
    deployment = ensure_deployed(w3, data_dir, admin)
    contract = ClaimLedgerContract(w3, deployment.address)
    provider_org = contract.register_organisation("PROV-A", "provider", sender=admin)
    payer_org = contract.register_organisation("PAYER-X", "payer", sender=admin)
    contract.add_account(provider_org, provider, sender=admin)
    contract.add_account(payer_org, payer, sender=admin)
    contract.set_fingerprint_key(KEY_ID, True, sender=admin)
    return Ledger(w3, deployment, contract, admin, provider, payer, payer_org)


def new_claim(ledger: Ledger) -> ClaimSubmission:
    return ClaimSubmission(
        exact_key=random_key(),
        document_hash=random_key(),
        line_keys=(random_key(), random_key()),
        key_id=KEY_ID,
        payer_org=ledger.payer_org,
        total_charge=31_400,
    )


def record_some_claims(ledger: Ledger) -> list[ClaimSubmission]:
    """Five claims in two batches; one accepted, one voided."""
    claims = [new_claim(ledger) for _ in range(5)]
    ledger.contract.submit_claims(claims[:3], sender=ledger.provider)
    ledger.contract.submit_claims(claims[3:], sender=ledger.provider)
    ledger.contract.acknowledge(claims[0].exact_key, 1, True, ACCEPTED_REASON, sender=ledger.payer)
    ledger.contract.void_claim(claims[1].exact_key, 1, sender=ledger.provider)
    return claims


def wait_for_state_save(node: LocalNode, block: int, after: float) -> None:
    """Until anvil's periodic save holds ``block``: the state file is newer than ``after`` and
    its best block number has reached ``block`` (a save that began before the transaction
    can end after it). Bounded; polls the file, never sleeps blindly."""
    deadline = time.monotonic() + STATE_SAVE_TIMEOUT_S
    while True:
        try:
            if node.state_file.stat().st_mtime > after:
                saved = json.loads(node.state_file.read_text())
                if int(saved["best_block_number"]) >= block:
                    return
        except (FileNotFoundError, ValueError, KeyError):
            pass  # not written yet, or caught mid-write
        if time.monotonic() > deadline:
            raise AssertionError(
                f"anvil did not save block {block} to {node.state_file} within {STATE_SAVE_TIMEOUT_S} s"
            )
        time.sleep(0.05)


def test_a_clean_stop_and_start_keeps_every_claim_event_and_the_deployment(
    tmp_path: Path, nodes: list[LocalNode]
) -> None:
    data = tmp_path / "data"
    node, w3 = start(nodes, data)
    ledger = deploy_and_register(w3, data)
    claims = record_some_claims(ledger)
    records = {c.exact_key: ledger.contract.claim_record(c.exact_key) for c in claims}
    events = ledger.contract.events(0)
    block = w3.eth.block_number
    admin_nonce = w3.eth.get_transaction_count(to_checksum_address(ledger.admin))
    assert [e.name for e in events].count("ClaimSubmitted") == 5

    node.stop()
    assert not node.running
    node, w3 = start(nodes, data)
    assert w3.eth.block_number == block

    again = ensure_deployed(w3, data, ledger.admin)
    assert again == ledger.deployment
    assert w3.eth.block_number == block, "ensure_deployed deployed again"
    assert w3.eth.get_transaction_count(to_checksum_address(ledger.admin)) == admin_nonce
    contract = ClaimLedgerContract(w3, again.address)
    assert {c.exact_key: contract.claim_record(c.exact_key) for c in claims} == records
    assert contract.events(0) == events
    assert contract.claim_status(claims[1].exact_key, 1) == "voided"
    assert contract.line_holder(claims[2].line_keys[0]) == (claims[2].exact_key, 1)

    # The restarted ledger goes on: the duplicate keys survived with the records.
    resent = replace(claims[2], document_hash=random_key())
    outcome = contract.submit_claims([resent, new_claim(ledger)], sender=ledger.provider)
    assert [e.name for e in outcome.events] == ["DuplicateRefused", "ClaimSubmitted"]
    assert outcome.block_number == block + 1


def test_a_crash_after_the_periodic_save_loses_nothing(tmp_path: Path, nodes: list[LocalNode]) -> None:
    data = tmp_path / "data"
    node, w3 = start(nodes, data)
    ledger = deploy_and_register(w3, data)
    claims = record_some_claims(ledger)
    written_at = time.time()
    block = w3.eth.block_number
    records = {c.exact_key: ledger.contract.claim_record(c.exact_key) for c in claims}
    events = ledger.contract.events(0)

    wait_for_state_save(node, block, written_at)
    node.kill()  # SIGKILL: no save on the way out
    node, w3 = start(nodes, data)

    assert w3.eth.block_number == block
    assert ensure_deployed(w3, data, ledger.admin) == ledger.deployment
    contract = ClaimLedgerContract(w3, ledger.deployment.address)
    assert {c.exact_key: contract.claim_record(c.exact_key) for c in claims} == records
    assert contract.events(0) == events


@pytest.mark.parametrize("lost", ["a new data folder", "the state file deleted"])
def test_a_deployment_record_without_its_chain_state_is_a_configuration_error(
    tmp_path: Path, nodes: list[LocalNode], lost: str
) -> None:
    data = tmp_path / "data"
    node, w3 = start(nodes, data)
    ensure_deployed(w3, data, w3.eth.accounts[0])
    node.stop()
    if lost == "a new data folder":
        moved = tmp_path / "moved"
        moved.mkdir()
        shutil.copy(data / DEPLOYMENT_FILE, moved / DEPLOYMENT_FILE)
        data = moved
    else:
        node.state_file.unlink()
    node, w3 = start(nodes, data)

    with pytest.raises(ConfigurationError, match="the node's state was lost"):
        ensure_deployed(w3, data, w3.eth.accounts[0])
    assert w3.eth.block_number == 0, "ensure_deployed deployed a new ledger over the record"
    assert (data / DEPLOYMENT_FILE).exists()


def test_a_restarted_node_takes_the_block_gas_limit_it_is_given(nodes: list[LocalNode], tmp_path: Path) -> None:
    # anvil's --gas-limit applies to a new chain only; a saved state brought back the limit it was saved with.
    first = LocalNode(NodeConfig(data_dir=tmp_path, gas_limit=40_000_000)).start()
    nodes.append(first)
    w3 = connect(first.rpc_url)
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert w3.eth.get_block("latest")["gasLimit"] == 40_000_000
    first.stop()
    again = LocalNode(NodeConfig(data_dir=tmp_path, gas_limit=90_000_000)).start()
    nodes.append(again)
    w3 = connect(again.rpc_url)
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert w3.eth.get_block("latest")["gasLimit"] == 90_000_000
