"""Payer steps go through the outbox: a step the service answered is not lost when the node
comes back from an older state (kill -9 before its periodic save, restart from the state file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.errors import ContractRevertError
from ledger.service import ClaimLedgerService, Member
from ledger.steps import STEP_CLAIM_COUNT
from ledger.store import outbox
from tests.factories import make_claim_data
from tests.integration.pipeline_fixtures import (
    PAYER_X_INDEX,
    Ledger,
    dev_account,
    gateway_service,
    start_node,
)
from tests.integration.test_pipeline_crash import saved_nonce, wait_saved_through


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Ledger, ClaimLedgerService, Any]]:
    node = start_node(tmp_path / "node", state_interval=1)
    ledger, service, _, engine = gateway_service(node, tmp_path)
    try:
        yield ledger, service, engine
    finally:
        service.close()
        node.kill()


def step_rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.nonce, outbox.c.tx_hash, outbox.c.status, outbox.c.block_number)
            .where(outbox.c.claim_count == STEP_CLAIM_COUNT)
            .order_by(outbox.c.nonce)
        ).mappings()
        return [dict(r) for r in rows]


def recorded_claim(ledger: Ledger, service: ClaimLedgerService) -> tuple[Member, bytes, int]:
    provider = Member("PROV-A", "provider", ledger.prov_org, ledger.provider)
    payer = Member("PAYER-X", "payer", ledger.payer_x, dev_account(PAYER_X_INDEX))
    [outcome] = service.submit(provider, [make_claim_data(payer_id="PAYER-X", member_id="M-STEP-1")])
    assert outcome.status == "recorded" and outcome.block_number is not None
    wait_saved_through(ledger.node, outcome.block_number)
    return payer, bytes.fromhex(outcome.exact_key[2:]), outcome.version


def lose_last_step(ledger: Ledger, service: ClaimLedgerService, payer: Member, key: bytes, version: int) -> None:
    """Acknowledge, then kill the node before it saves that block, and start it from its state file."""
    answer = service.acknowledge(payer, key, version, True)
    ledger.node.kill()
    assert answer["block_number"] > 0
    assert saved_nonce(ledger.node, payer.account.address) == 0, "the node saved the step: the test proves nothing"
    ledger.node.start()
    ledger.reconnect()
    assert ledger.rpc().receipt(answer["tx_hash"]) is None
    assert ledger.contract.claim_record(key)["status"] == "submitted"


def test_a_lost_step_is_sent_again_by_the_background_check(world) -> None:
    ledger, service, engine = world
    payer, key, version = recorded_claim(ledger, service)
    lose_last_step(ledger, service, payer, key, version)
    [row] = step_rows(engine)

    assert service.resend_lost_steps() == 1
    assert ledger.contract.claim_record(key)["status"] == "accepted"
    assert ledger.rpc().receipt(row["tx_hash"]) is not None  # the same signed bytes, the same hash
    assert service.resend_lost_steps() == 0  # nothing twice
    assert [r["status"] for r in step_rows(engine)] == ["mined"]


def test_the_next_step_sends_a_lost_one_first(world) -> None:
    ledger, service, engine = world
    payer, key, version = recorded_claim(ledger, service)
    lose_last_step(ledger, service, payer, key, version)

    answer = service.adjudicate(payer, key, version, "approved", 10_000, [])
    assert answer["block_number"] > 0
    assert ledger.contract.claim_record(key)["status"] == "adjudicated"
    rows = step_rows(engine)
    assert [(r["nonce"], r["status"]) for r in rows] == [(0, "mined"), (1, "mined")]
    assert ledger.rpc().nonce(payer.account.address, "latest") == 2


def test_a_refused_step_stores_nothing(world) -> None:
    ledger, service, engine = world
    payer, key, version = recorded_claim(ledger, service)
    with pytest.raises(ContractRevertError) as refused:
        service.record_payment(payer, key, version, 5_000, b"\x01" * 32)  # not adjudicated yet
    assert refused.value.error.startswith("ClaimLedger")
    assert step_rows(engine) == []
    assert ledger.contract.claim_record(key)["status"] == "submitted"
