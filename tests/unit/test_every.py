"""index_follower.every: the loop of the indexer process and of the gateway's background work."""

from __future__ import annotations

import logging
import threading

import pytest

from ledger.child_process import every
from ledger.errors import ChainUnavailableError


def test_a_failure_is_logged_once_while_it_lasts_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    outcomes: list[BaseException | None] = [
        ChainUnavailableError("node down"),
        ChainUnavailableError("node down"),
        None,
        RuntimeError("a bug"),
        None,
    ]
    runs = 0

    def work() -> None:
        nonlocal runs
        outcome = outcomes[runs]
        runs += 1
        if runs == len(outcomes):
            stop.set()
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.INFO, logger="claimledger.helpers"):
        every(0.001, stop, work, "indexer")
    assert runs == len(outcomes)  # it went on after every failure, and ended on stop
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "node down" in m] == ["indexer: node down (retrying every 0.00 s)"]
    assert messages.count("indexer: the node answers again") == 1
    assert any("unexpected failure" in m for m in messages)
