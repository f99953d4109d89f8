"""How long a local node is given to start: longer the more saved state it has to read first."""

from __future__ import annotations

from pathlib import Path

from ledger.node import (
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STATE_INTERVAL_S,
    START_S_PER_STATE_GB,
    STATE_BYTES_PER_INTERVAL_S,
    LocalNode,
    NodeConfig,
    state_interval_for,
)


def test_a_node_with_more_saved_state_is_given_longer_to_start(tmp_path: Path) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path))
    assert node.start_timeout() == DEFAULT_START_TIMEOUT_S  # a new node: nothing to load
    with open(node.state_file, "wb") as f:
        f.truncate(3_500_000_000)  # sparse: the size of a 1,200,000-claim state, no disk
    assert node.start_timeout() == DEFAULT_START_TIMEOUT_S + 3.5 * START_S_PER_STATE_GB


def test_a_node_with_more_saved_state_saves_it_less_often(tmp_path: Path) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path))

    def interval() -> str:
        command = node.command()
        return command[command.index("--state-interval") + 1]

    assert interval() == str(DEFAULT_STATE_INTERVAL_S)  # a new node
    with open(node.state_file, "wb") as f:
        f.truncate(3_000_000_000)  # sparse: a million claims' state
    assert interval() == "60" == str(state_interval_for(3_000_000_000))
    assert state_interval_for(207_000_000) == DEFAULT_STATE_INTERVAL_S  # 100,000 claims: the floor
    assert state_interval_for(STATE_BYTES_PER_INTERVAL_S * 30 + 1) == 31
    configured = LocalNode(NodeConfig(data_dir=tmp_path, state_interval=5))
    assert configured.command()[configured.command().index("--state-interval") + 1] == "5"  # as configured
