"""The gateway's index is followed by a process of its own, which the gateway starts again if it dies."""

from __future__ import annotations

import os
import signal
import time

from tests.api.conftest import LiveGateway, fresh_claim


def test_the_follower_process_indexes_without_any_read_and_comes_back_after_a_kill(gateway: LiveGateway) -> None:
    runtime = gateway.runtime
    follower = runtime.follower
    assert follower is not None and follower.running
    killed = follower.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not (follower.running and follower.pid != killed):
        assert time.monotonic() < deadline, "the gateway did not start its indexer process again"
        time.sleep(0.05)

    with gateway.client("PROV-A") as provider:
        answer = provider.post("/v1/claims", json=fresh_claim())
    assert answer.status_code == 201, answer.text
    block = answer.json()["block_number"]
    # Nothing reads the claim: only the follower can bring the cursor to its block.
    deadline = time.monotonic() + 10
    while (runtime.service.indexer.cursor() or (0, ""))[0] < block:
        assert time.monotonic() < deadline, "the restarted follower did not index the new claim's block"
        time.sleep(0.05)
