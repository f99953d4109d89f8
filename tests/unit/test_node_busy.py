"""The gateway tells a busy node (a call under way, as while anvil mines a block) from one that is gone (a call
failed), so that a request does not wait on a probe of its own for the block to be made."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ledger.errors import ChainUnavailableError
from ledger.service import WatchedRpcClient


class SlowNode(BaseHTTPRequestHandler):
    """Answers eth_chainId; while ``held`` is clear, only once it is set (a node that is mining). Any other
    method gets HTTP 502, as from a proxy whose node is gone."""

    held = threading.Event()

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["method"] != "eth_chainId":
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.held.wait(10)
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x7a69"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[ThreadingHTTPServer]:
    SlowNode.held.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    SlowNode.held.set()
    server.shutdown()
    server.server_close()


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def test_a_call_under_way_after_an_answer_is_a_busy_node(node: ThreadingHTTPServer) -> None:
    rpc = WatchedRpcClient(url(node))
    assert not rpc.busy_within(10) and not rpc.answered_within(10)  # nothing known yet
    assert rpc.chain_id() == 31337
    assert rpc.answered_within(10) and not rpc.busy_within(10)  # up, and nothing under way

    SlowNode.held.clear()  # the node starts mining
    waiting = threading.Thread(target=rpc.chain_id)
    waiting.start()
    time.sleep(0.1)
    assert not rpc.answered_within(0.05)  # no recent answer ...
    assert rpc.busy_within(10)  # ... but a call waits on a node that answered last
    assert not rpc.busy_within(0.05)  # not if the call started longer ago than asked
    SlowNode.held.set()  # the block is made
    waiting.join(5)
    assert not rpc.busy_within(10) and rpc.answered_within(10)


def test_a_failed_call_is_a_node_gone_even_with_calls_under_way(node: ThreadingHTTPServer) -> None:
    rpc = WatchedRpcClient(url(node))
    assert rpc.chain_id() == 31337
    SlowNode.held.clear()
    waiting = threading.Thread(target=rpc.chain_id)
    waiting.start()
    time.sleep(0.1)
    assert rpc.busy_within(10)
    with pytest.raises(ChainUnavailableError, match="HTTP 502"):
        rpc.block_number()  # a call that ends in "unreachable"
    assert not rpc.busy_within(10) and not rpc.answered_within(10)
    SlowNode.held.set()
    waiting.join(5)
