"""Fixtures of the integration tests: one real anvil per session, the consortium deployed on
it once, and an anvil snapshot per test so each starts from the same chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from ledger.chain import connect
from ledger.node import LocalNode, NodeConfig
from tests.integration.support import BASE_SNAPSHOT, Consortium, Snapshots, build_consortium

# The session's node is thrown away at the end: a long save interval keeps anvil from
# serialising the whole chain every second while the tests run (test_node_restart runs its
# own nodes with the default interval).
SESSION_STATE_INTERVAL_S = 3600


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    config = NodeConfig(data_dir=tmp_path_factory.mktemp("anvil"), state_interval=SESSION_STATE_INTERVAL_S)
    local = LocalNode(config).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def nodes() -> Iterator[list[LocalNode]]:
    """Nodes a test starts (each its own anvil); whatever is still running at the end is killed."""
    started: list[LocalNode] = []
    yield started
    for started_node in started:
        started_node.kill()


@pytest.fixture(scope="session")
def w3(node: LocalNode) -> Web3:
    w3 = connect(node.rpc_url)
    # web3 asks eth_chainId again for every call it validates: about a third of the requests
    # a transaction makes. The chain id never changes; nothing else may be cached, since the
    # tests revert anvil to snapshots and the same block numbers are mined again.
    w3.provider.cacheable_requests = {RPCEndpoint("eth_chainId")}
    w3.provider.cache_allowed_requests = True
    return w3


@pytest.fixture(scope="session")
def snapshots(w3: Web3) -> Snapshots:
    return Snapshots(w3)


@pytest.fixture(scope="session")
def deployed_consortium(w3: Web3, snapshots: Snapshots) -> Consortium:
    consortium = build_consortium(w3)
    snapshots.save(BASE_SNAPSHOT)
    return consortium


@pytest.fixture
def consortium(deployed_consortium: Consortium, snapshots: Snapshots) -> Consortium:
    """The freshly registered consortium, no claims yet (restored from its snapshot)."""
    if not snapshots.restore(BASE_SNAPSHOT):
        raise RuntimeError("the base consortium snapshot is gone")
    return deployed_consortium
