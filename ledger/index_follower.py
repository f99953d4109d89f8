"""The indexer as a process of its own, beside the gateway.

A gateway under load spends its one interpreter (one GIL) on HTTP, checks and the submission pipeline;
following the chain into the index there took a quarter of it. Here the indexer runs in a child
process: it reads the chain's events and writes the index (on SQLite, a file of its own), while the
gateway's reads still bring the index up to date themselves when they find it behind. Both can: the
indexer moves its cursor by compare-and-set (ledger.indexer), so a range is applied once.

The child ends when the gateway closes its stdin or dies (the pipe's end reads empty), or on SIGTERM. It
runs in a session of its own, so Ctrl-C at the gateway's terminal reaches the gateway only.
Run by hand: ``CLAIMLEDGER_INDEX_DATABASE_URL=sqlite:///... python -m ledger.index_follower --rpc-url
URL --contract 0x... --start-block N``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from ledger.child_process import end_helper, every, watch_owner
from ledger.indexer import Indexer
from ledger.rpc import RpcClient
from ledger.store import make_engine

log = logging.getLogger("claimledger.indexer")

DATABASE_URL_ENV = "CLAIMLEDGER_INDEX_DATABASE_URL"
"""The database URL goes to the child in its environment, not its command line (which ``ps`` shows)."""
STOP_TIMEOUT_S = 10.0


def follow(indexer: Indexer, stop: threading.Event, interval_s: float) -> None:
    """Index what is new every ``interval_s`` until ``stop``."""
    every(interval_s, stop, indexer.run_once, "indexer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.index_follower", description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--contract", required=True)
    parser.add_argument("--start-block", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between looks at the chain")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s", stream=sys.stderr)
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        parser.error(f"{DATABASE_URL_ENV} names no database")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    watch_owner(lambda _said: stop.set())  # the gateway closes the pipe, or dies
    engine = make_engine(url)
    try:
        indexer = Indexer(RpcClient(args.rpc_url), args.contract, engine, start_block=args.start_block)
        follow(indexer, stop, args.interval)
    finally:
        engine.dispose()
    return 0


@dataclass
class IndexFollower:
    """The gateway's handle on its indexer process."""

    rpc_url: str
    contract: str
    database_url: str
    start_block: int
    interval_s: float
    log_level: str = "info"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self) -> IndexFollower:
        if self.running:
            return self
        command = [
            sys.executable,
            "-m",
            "ledger.index_follower",
            "--rpc-url",
            self.rpc_url,
            "--contract",
            self.contract,
            "--start-block",
            str(self.start_block),
            "--interval",
            str(self.interval_s),
            "--log-level",
            self.log_level,
        ]
        env = {**os.environ, DATABASE_URL_ENV: self.database_url}
        # A session of its own, as the node has: Ctrl-C at the gateway's terminal is the gateway's to handle,
        # and the gateway ends this process by closing its stdin.
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, env=env, start_new_session=True)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        process, self._process = self._process, None
        if process is not None:
            end_helper(process, timeout)  # it finishes its range and leaves


if __name__ == "__main__":
    sys.exit(main())
