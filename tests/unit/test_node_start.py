"""How long a local node is given to start: longer the more saved state it has to read first."""

from __future__ import annotations

from pathlib import Path

from ledger.node import DEFAULT_START_TIMEOUT_S, START_S_PER_STATE_GB, LocalNode, NodeConfig


def test_a_node_with_more_saved_state_is_given_longer_to_start(tmp_path: Path) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path))
    assert node.start_timeout() == DEFAULT_START_TIMEOUT_S  # a new node: nothing to load
    with open(node.state_file, "wb") as f:
        f.truncate(3_500_000_000)  # sparse: the size of a 1,200,000-claim state, no disk
    assert node.start_timeout() == DEFAULT_START_TIMEOUT_S + 3.5 * START_S_PER_STATE_GB
