"""A claim POST waits for the chain as long as CLAIMLEDGER_SUBMIT_TIMEOUT_S says, then answers 503 with the
claim kept: once its block is mined it is on the ledger, listed among the provider's claims."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import LiveGateway, fresh_claim, gateway_settings
from tests.api.helpers import error_of

BLOCK_S = 2
WAIT_S = 0.2


@pytest.fixture
def slow_chain_gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    live = LiveGateway(gateway_settings(tmp_path, node_block_time_s=BLOCK_S, submit_timeout_s=WAIT_S)).start()
    try:
        yield live
    finally:
        live.stop()


def test_past_its_wait_a_claim_is_503_and_kept(slow_chain_gateway: LiveGateway) -> None:
    document = fresh_claim()
    headers = {"Idempotency-Key": "slow-chain-1"}
    with slow_chain_gateway.client("PROV-A") as provider:
        tries = 0
        for _ in range(6):  # a POST that lands just before a block is answered in time: try a few
            tries += 1
            started = time.monotonic()
            answer = provider.post("/v1/claims", json=document, headers=headers)
            if answer.status_code == 503:
                break
            document, headers = fresh_claim(), {"Idempotency-Key": f"slow-chain-{time.monotonic()}"}
        assert answer.status_code == 503, answer.text
        assert time.monotonic() - started < BLOCK_S  # it did not wait for the block
        error = error_of(answer)
        assert error["code"] == "chain_unavailable" and f"within {WAIT_S:g} s" in error["message"]
        assert answer.headers["Retry-After"]
        deadline = time.monotonic() + 3 * BLOCK_S
        while True:  # nothing accepted is lost: the block comes and the claim is on the ledger
            listed = provider.get("/v1/claims", params={"limit": 100}).json()["items"]
            if len(listed) == tries or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        # This gateway is the test's own: its provider's claims are the ones posted here, each kept.
        assert len(listed) == tries and {c["status"] for c in listed} == {"submitted"}, listed
