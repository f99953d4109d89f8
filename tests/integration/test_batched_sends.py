"""The pipeline sends the transactions that wait together in one JSON-RPC batch request (ledger.rpc
``send_raw_many``) and reads receipts in one (``receipts``), against a real anvil: every one lands, a refusal
is its own, and a batch the node refuses whole (anvil takes no request body past 2 MiB) is sent one by one.
Each test runs its own anvil."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import connect, sign_call
from ledger.errors import ChainUnavailableError
from ledger.node import DEV_MNEMONIC, LocalNode, NodeConfig
from ledger.pipeline import MAX_SEND_BATCH, MAX_SEND_BYTES, _InFlight, _send_batch
from ledger.rpc import RpcClient, RpcError
from ledger.service import WatchedRpcClient

Account.enable_unaudited_hdwallet_features()
SENDER: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path="m/44'/60'/0'/0/3")
RECEIVER = "0x000000000000000000000000000000000000dEaD"


def signed(rpc: RpcClient, nonce: int, data: bytes = b"") -> tuple[str, bytes]:
    gas = 21_000 + 16 * len(data) + 10_000
    return sign_call(
        SENDER, chain_id=rpc.chain_id(), nonce=nonce, to=RECEIVER, data=data, gas=gas, max_fee=10 * rpc.gas_price()
    )


def test_signed_transactions_go_in_one_request_and_each_answer_is_its_own(
    nodes: list[LocalNode], tmp_path: Path
) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path)).start()
    nodes.append(node)
    rpc = RpcClient(node.rpc_url)
    txs = [signed(rpc, n) for n in range(3)]
    answers = rpc.send_raw_many([raw for _, raw in txs])
    assert answers == [tx_hash for tx_hash, _ in txs]
    w3 = connect(node.rpc_url)
    for tx_hash, _ in txs:
        assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=5, poll_latency=0.01)["status"] == 1

    again = [signed(rpc, 3), txs[0]]  # a new one, and one the chain has used the nonce of
    new, used = rpc.send_raw_many([raw for _, raw in again])
    assert new == again[0][0]
    assert isinstance(used, RpcError) and used.already_known(nonce_used=True)

    too_big = [signed(rpc, 4, data=b"\x01" * 600_000), signed(rpc, 5, data=b"\x01" * 600_000)]
    with pytest.raises(RpcError):  # a 2.4 MB body: refused whole, as the pipeline's sender expects
        rpc.send_raw_many([raw for _, raw in too_big])

    node.kill()
    with pytest.raises(ChainUnavailableError):
        rpc.send_raw_many([signed_raw for _, signed_raw in too_big])


def test_receipts_come_in_one_request_in_order_none_for_one_not_mined(nodes: list[LocalNode], tmp_path: Path) -> None:
    node = LocalNode(NodeConfig(data_dir=tmp_path)).start()
    nodes.append(node)
    rpc = RpcClient(node.rpc_url)
    txs = [signed(rpc, n) for n in range(3)]
    assert rpc.send_raw_many([raw for _, raw in txs]) == [tx_hash for tx_hash, _ in txs]
    w3 = connect(node.rpc_url)
    w3.eth.wait_for_transaction_receipt(txs[-1][0], timeout=5, poll_latency=0.01)
    unknown = "0x" + "ab" * 32
    asked = [txs[2][0], unknown, txs[0][0], txs[1][0]]
    receipts = rpc.receipts(asked)
    assert receipts[1] is None
    assert [r["transactionHash"] for r in receipts if r is not None] == [txs[2][0], txs[0][0], txs[1][0]]
    assert all(r is not None and r == rpc.receipt(h) for h, r in zip(asked, receipts, strict=True) if h != unknown)
    with pytest.raises(RpcError):  # not a hash: the node refuses that one, and the batch says so
        rpc.receipts([txs[0][0], "0x1234"])
    # The gateway's client notes the newest block its receipts came from, read in a batch as one by one
    # (a read then indexes at least that far: Indexer.catch_up).
    watched = WatchedRpcClient(node.rpc_url)
    watched.receipts([txs[0][0], unknown])
    mined = receipts[2]
    assert mined is not None and watched.newest_receipt_block == int(mined["blockNumber"], 16)
    assert watched.newest_receipt_at > float("-inf")
    node.kill()
    with pytest.raises(ChainUnavailableError):
        rpc.receipts([tx_hash for tx_hash, _ in txs])


def flight(raw_bytes: int) -> _InFlight:
    return cast(_InFlight, SimpleNamespace(raw=b"\x00" * raw_bytes))


def test_a_send_request_takes_what_fits_and_always_one() -> None:
    small: deque[Any] = deque(flight(100) for _ in range(MAX_SEND_BATCH + 5))
    assert len(_send_batch(small)) == MAX_SEND_BATCH
    thousand_claims = 200_000  # a 1,000-claim transaction's raw bytes, about
    batch = _send_batch(deque(flight(thousand_claims) for _ in range(10)))
    assert 1 < len(batch) <= MAX_SEND_BYTES // (2 * thousand_claims)
    huge = _send_batch(deque([flight(MAX_SEND_BYTES), flight(10)]))
    assert len(huge) == 1  # one goes alone, however large (the node says if it takes it)


class NoBatchesNode:
    """An RPC client whose node refuses batch requests whole (as a proxy that takes no batches would)."""

    def __init__(self) -> None:
        self.single: list[bytes] = []

    def send_raw_many(self, raws: list[bytes]) -> list[str | RpcError]:
        raise RpcError("eth_sendRawTransaction", {"code": -32600, "message": "Invalid request"})

    def send_raw(self, raw: bytes) -> str:
        self.single.append(raw)
        if raw == b"refused":
            raise RpcError("eth_sendRawTransaction", {"code": -32000, "message": "insufficient funds"})
        return "0x" + raw.hex()


def test_a_node_that_takes_no_batches_gets_the_sends_one_by_one(tmp_path: Path) -> None:
    from ledger.pipeline import SubmissionPipeline
    from ledger.store import create_tables, make_engine, sqlite_url

    engine = make_engine(sqlite_url(tmp_path / "ledger.db"))
    create_tables(engine)
    rpc = NoBatchesNode()
    pipeline = SubmissionPipeline(cast(RpcClient, rpc), RECEIVER, SENDER, engine)
    flights = [
        cast(_InFlight, SimpleNamespace(raw=raw, tx_hash=f"0x{i}")) for i, raw in enumerate([b"a", b"refused", b"c"])
    ]
    refused = pipeline._send(flights)
    assert rpc.single == [b"a", b"refused", b"c"]  # in nonce order, each once
    assert list(refused) == ["0x1"] and "insufficient funds" in str(refused["0x1"])
