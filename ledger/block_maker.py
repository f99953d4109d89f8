"""The embedded node's block maker: mines a block once transactions wait, gathering those that come together.

anvil's automine makes a block of every transaction the moment it arrives, and anvil answers no call
while it mines: the next transaction waits, and becomes a block of its own as well. Each block costs
anvil a rebuild of its state trie, which grows with the ledger (about 2.5 us a claim on chain: 250 ms a
block at 100,000 claims, 2.5 s at a million), so one block a transaction costs the most there is.

The block maker runs anvil without mining (``--no-mining``) and mines on demand instead: it watches the
pool (``txpool_status``), and once transactions wait and no more have come for a short while it mines
them into one block (``evm_mine``). The while is a tenth of the last block's mining time, at most
:data:`MAX_GATHER_S`: next to nothing when blocks are cheap (an empty ledger answers about as soon as
automine would), and on a large ledger (3.5 s a block at a million claims) a third of a second or more, in
which the receipts of the last block are read, its claims answered, and the transactions that were held up
by it and those of the next batches sent: they go into the next block together. Under a steady stream the
pool grows all the while (at a million claims three 1,000-claim transactions came every 0.1-0.4 s between
two blocks, anvil taking nothing while it mines), and :data:`MAX_HOLD_S` ends the gathering. Measured with
32 clients sending batches of 1,000: 1,307 claims/s with a gather of at most 50 ms (from 1.1 to 1.2 million
claims), 1,728 with at most 500 ms (from 1.2 to 1.3 million); with 128 clients at a million claims and the
receipts read eight to a request, 3,170-3,247 claims/s with at most 1 s and a hold of 2 s, against
2,994-3,152 with 0.5 s and 1 s (3 and 4 runs; 3 s held: 3,152).

It is a process of its own (``python -m ledger.block_maker <rpc_url> [<node_pid>]``, started by
:class:`ledger.node.LocalNode`), so that its polling takes nothing from the gateway's interpreter. It ends
on SIGTERM, or when its standard input closes. Its owner writes STOP first on a clean stop; a standard
input that closes without it means the owner died (killed, crashed), and the block maker then stops the
node too (SIGTERM: anvil saves its state and exits), which would otherwise run on over the data folder and
keep the next start from starting one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from urllib.parse import urlsplit

import orjson

from ledger.child_process import watch_owner

log = logging.getLogger("claimledger.block_maker")

BUSY_POLL_S = 0.001
"""How often the pool is looked at while transactions come or wait."""
IDLE_POLL_S = 0.002
IDLE_POLL_MAX_S = 0.02
"""With nothing waiting, the look-ups slow down from IDLE_POLL_S to this (the first transaction after a quiet
spell waits at most this long for its block)."""
GATHER_SHARE = 0.1
"""Waiting transactions wait for more this share of the last block's mining time ..."""
MAX_GATHER_S = 1.0
"""... and at most this long after the last one came, ..."""
MAX_HOLD_S = 2.0
"""... and no transaction waits longer than this for its block to start, however many keep coming."""
RETRY_S = 0.1
"""After a failed call (the node restarting, or gone)."""


class BlockMaker:
    """Mines the node at ``rpc_url`` on demand (see the module's doc). :meth:`run` until :meth:`stop`."""

    def __init__(self, rpc_url: str) -> None:
        parts = urlsplit(rpc_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the block maker needs an http:// RPC URL, not {rpc_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.blocks = 0
        self.last_mine_s = 0.0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    def stop(self) -> None:
        self._stop.set()

    def call(self, method: str) -> object:
        """One JSON-RPC call without parameters over a kept connection; OSError if the node does not answer.

        HTTP/1.1 by hand over a socket: the pool is looked at up to a thousand times a second, and
        http.client's header parsing made each look cost about 0.5 ms of CPU (2.7% of a core idle, more
        under load); the node answers JSON with a Content-Length."""
        body = b'{"jsonrpc":"2.0","id":1,"method":"' + method.encode() + b'","params":[]}'
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        try:
            if self._sock is None:
                self._sock = socket.create_connection((self.host, self.port), timeout=600)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.sendall(request)
            answer = orjson.loads(self._read_response())
        except (OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            if self._sock is not None:
                self._sock.close()
            self._sock = None
            raise OSError(f"{method}: {exc}") from exc
        if "error" in answer:
            raise OSError(f"{method}: {answer['error']}")
        return answer.get("result")

    def _read_response(self) -> bytes:
        assert self._sock is not None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("the node closed the connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 200"):
            raise OSError(f"the node answered {lines[0].decode('latin-1')!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise OSError("the node's answer has no Content-Length")
        while len(body) < length:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("the node closed the connection mid-answer")
            body += chunk
        return body[:length]

    def waiting(self) -> int:
        """Transactions the node holds ready for a block."""
        status = self.call("txpool_status")
        pending = status.get("pending") if isinstance(status, dict) else None
        return int(pending, 16) if isinstance(pending, str) else int(pending or 0)

    def gather_s(self) -> float:
        """How long after the last transaction came the waiting ones wait for more."""
        return min(GATHER_SHARE * self.last_mine_s, MAX_GATHER_S)

    def mine(self) -> None:
        started = time.monotonic()
        self.call("evm_mine")
        self.last_mine_s = time.monotonic() - started
        self.blocks += 1

    def run(self) -> None:
        seen = 0  # transactions waiting at the last look
        first_at = grew_at = 0.0
        idle_poll = IDLE_POLL_S
        while not self._stop.is_set():
            try:
                waiting = self.waiting()
                now = time.monotonic()
                if waiting == 0:
                    seen = 0
                    self._stop.wait(idle_poll)
                    idle_poll = min(idle_poll * 1.25, IDLE_POLL_MAX_S)
                    continue
                idle_poll = IDLE_POLL_S
                if seen == 0:
                    first_at = now
                if waiting > seen:
                    seen, grew_at = waiting, now
                if now - grew_at < self.gather_s() and now - first_at < MAX_HOLD_S:
                    self._stop.wait(BUSY_POLL_S)
                    continue
                self.mine()
                seen = 0
            except OSError as exc:
                log.debug("block maker: %s; trying again", exc)
                seen = 0
                self._stop.wait(RETRY_S)
        self.finish()

    def finish(self) -> None:
        """Mine what waits (a clean stop leaves no transaction in the pool, which the node does not save)."""
        try:
            if self.waiting():
                self.mine()
        except OSError as exc:
            log.warning("block maker: at the end, %s", exc)


STOP = b"stop\n"
"""What the owner writes to the block maker's standard input before it closes it on a clean stop."""


def stop_orphaned_node(pid: int) -> bool:
    """SIGTERM the node process ``pid`` if it is still an anvil (not a process that took its pid since)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")[0]
    except OSError:
        return False
    if not command.endswith(b"anvil"):
        return False
    log.warning("block maker: its owner is gone; stopping the node (pid %d), which saves its state", pid)
    os.kill(pid, signal.SIGTERM)
    return True


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and not argv[1].isdigit()):
        print("usage: python -m ledger.block_maker <rpc_url> [<node_pid>]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    maker = BlockMaker(argv[0])
    owner_gone = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        maker.stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the owner, which ends this by closing stdin

    def on_owner_end(said: bytes) -> None:
        if STOP not in said:  # the owner died without a clean stop
            owner_gone.set()
        maker.stop()

    watch_owner(on_owner_end)
    maker.run()
    if owner_gone.is_set() and len(argv) == 2:
        stop_orphaned_node(int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
