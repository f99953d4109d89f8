"""The local node launcher (embedded default only): anvil with its state in a data folder.

Nothing else in the ledger knows the node is anvil: everything talks to an RPC URL. The
launcher starts anvil on a chosen or free loopback port, waits until it answers, saves its
state on a clean stop and every ``state_interval`` seconds (so a crash loses at most that
window; by default longer the larger the state), keeps no per-block snapshots on disk, and stops it cleanly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ledger.block_maker import STOP
from ledger.child_process import end_helper
from ledger.errors import NodeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ANVIL = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CHAIN_ID = 31337
DEFAULT_ACCOUNTS = 20
DEFAULT_STATE_INTERVAL_S = 10
# Each save writes the whole state, transactions included: about 2 KB a claim (207 MB at 100,000 claims,
# measured), so a save every second takes the node's time and the disk's from the claims. A crash loses at
# most the last interval's blocks; the outboxes send again what the chain lacks (ledger.pipeline, steps).
STATE_BYTES_PER_INTERVAL_S = 50_000_000
"""With no interval configured, a second between saves for every 50 MB of saved state, and at least
DEFAULT_STATE_INTERVAL_S: at a million claims (3 GB) a save every 60 s. Saved every 10 s there, batches
went at 1,836 claims/s against 2,223-2,385 every 60 s: anvil writes the whole state each time."""
DEFAULT_GAS_LIMIT = 30_000_000
DEFAULT_PRUNE_HISTORY = 16
DEFAULT_START_TIMEOUT_S = 20.0
START_S_PER_STATE_GB = 30.0
"""More time to start a node a gigabyte of saved state (anvil reads its whole state file before it answers:
a 3.5 GB file, about 1,200,000 claims, took longer than 20 s)."""
DEFAULT_STOP_TIMEOUT_S = 30.0
STATE_FILE = "chain-state.json"
LOG_FILE = "anvil.log"
# anvil's well-known development mnemonic: local, throwaway accounts only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def state_interval_for(state_bytes: int) -> int:
    """Seconds between saves of a state of ``state_bytes``, so that writing it takes a bounded share of the
    node's time (STATE_BYTES_PER_INTERVAL_S)."""
    return max(DEFAULT_STATE_INTERVAL_S, math.ceil(state_bytes / STATE_BYTES_PER_INTERVAL_S))


def find_anvil() -> Path:
    """The anvil binary: $CLAIMLEDGER_ANVIL, the project's npm package, or PATH."""
    configured = os.environ.get("CLAIMLEDGER_ANVIL")
    if configured:
        return Path(configured)
    if BUNDLED_ANVIL.exists():
        return BUNDLED_ANVIL
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise NodeError("anvil not found: run `npm ci` in the project root (it brings @foundry-rs/anvil-linux-amd64)")


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _rpc(url: str, method: str, params: list[object], timeout: float) -> dict[str, object]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def rpc_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a JSON-RPC node answers eth_chainId at `url`."""
    try:
        return "result" in _rpc(url, "eth_chainId", [], timeout)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class NodeConfig:
    """How to run the local node. ``block_time`` None means a block as soon as transactions wait: automine (a
    block per transaction), or with ``gather_blocks`` the block maker (``ledger.block_maker``: the transactions
    that come together in one block)."""

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int | None = None
    block_time: float | None = None
    gas_limit: int = DEFAULT_GAS_LIMIT
    state_interval: int | None = None  # seconds between saves; None: state_interval_for(the saved state's size)
    chain_id: int = DEFAULT_CHAIN_ID
    accounts: int = DEFAULT_ACCOUNTS
    mnemonic: str = DEV_MNEMONIC
    # Historical states kept in memory (anvil keeps one per block by default, which grows with
    # blocks x state: 24 GB at 500,000 claims in 1 s blocks). Blocks, receipts and logs are kept.
    prune_history: int | None = DEFAULT_PRUNE_HISTORY
    extra_args: list[str] = field(default_factory=list)
    gather_blocks: bool = False


class LocalNode:
    """A running anvil process over a data folder. Use as a context manager or start()/stop()."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.port = config.port
        self._process: subprocess.Popen[bytes] | None = None
        self._block_maker: subprocess.Popen[bytes] | None = None

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise NodeError("the node has no port yet: start() it first")
        return f"http://{self.config.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def block_maker(self) -> subprocess.Popen[bytes] | None:
        """The block maker's process, while this node has one."""
        return self._block_maker

    @property
    def gathers_blocks(self) -> bool:
        """Whether the block maker mines this node (no interval, gather_blocks)."""
        return self.config.block_time is None and self.config.gather_blocks

    def command(self) -> list[str]:
        c = self.config
        cmd = [
            str(find_anvil()),
            "--host",
            c.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(c.chain_id),
            "--accounts",
            str(c.accounts),
            "--mnemonic",
            c.mnemonic,
            "--gas-limit",
            str(c.gas_limit),
            "--state",
            str(self.state_file),
            "--state-interval",
            str(self.state_interval()),
        ]
        # No per-block snapshots under ~/.foundry (never deleted: GBs per 1,000 blocks): pruning
        # history keeps none on disk and a few in memory; without it, none on disk at least.
        if c.prune_history is not None:
            cmd += ["--prune-history", str(c.prune_history)]
        else:
            cmd += ["--max-persisted-states", "0"]
        if c.block_time is not None:
            cmd += ["--block-time", str(c.block_time)]
        elif c.gather_blocks:
            cmd += ["--no-mining"]  # the block maker mines
        return cmd + list(c.extra_args)

    def state_interval(self) -> int:
        """Seconds between saves of the state: as configured, else :func:`state_interval_for` the state
        saved so far (anvil takes one interval for its run; the next start sizes it again)."""
        if self.config.state_interval is not None:
            return self.config.state_interval
        return state_interval_for(self.state_file.stat().st_size if self.state_file.exists() else 0)

    def start_timeout(self) -> float:
        """How long to wait for the node to answer: DEFAULT_START_TIMEOUT_S, and START_S_PER_STATE_GB more a
        gigabyte of state it has to load first."""
        size = self.state_file.stat().st_size if self.state_file.exists() else 0
        return DEFAULT_START_TIMEOUT_S + START_S_PER_STATE_GB * size / 1e9

    def start(self, timeout: float | None = None) -> LocalNode:
        if self.running:
            return self
        if timeout is None:
            timeout = self.start_timeout()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.config.host)
        with open(self.data_dir / LOG_FILE, "ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not rpc_answers(self.rpc_url):
            if self._process.poll() is not None:
                raise NodeError(
                    f"anvil exited with code {self._process.returncode} before answering on {self.rpc_url}: "
                    f"see {self.data_dir / LOG_FILE}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise NodeError(f"anvil did not answer on {self.rpc_url} within {timeout:.0f} s")
            time.sleep(0.02)
        # anvil takes --gas-limit for a new chain only: a saved state brings the limit it was saved with.
        answer = _rpc(self.rpc_url, "anvil_setBlockGasLimit", [hex(self.config.gas_limit)], timeout)
        if answer.get("result") is not True:
            self.kill()
            raise NodeError(f"anvil refused the block gas limit {self.config.gas_limit}: {answer.get('error')}")
        self.keep_block_maker()
        return self

    def keep_block_maker(self) -> bool:
        """Start the block maker if this node needs one and it is not running (it died); whether it was."""
        if not self.gathers_blocks or self._process is None or self._process.poll() is not None:
            return True
        if self._block_maker is not None and self._block_maker.poll() is None:
            return True
        with open(self.data_dir / LOG_FILE, "ab") as log:
            # A session of its own, as the node has: Ctrl-C is the owner's to handle, and the owner ends it by
            # closing its stdin (it mines what waits, then leaves).
            self._block_maker = subprocess.Popen(
                [sys.executable, "-m", "ledger.block_maker", self.rpc_url, str(self._process.pid)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return False

    def _stop_block_maker(self, timeout: float = 10.0) -> None:
        maker, self._block_maker = self._block_maker, None
        if maker is not None:  # a clean stop: it mines what waits and leaves the node to this process
            end_helper(maker, timeout, word=STOP)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop cleanly: the block maker mines what waits, then SIGTERM makes anvil write its state file."""
        self._stop_block_maker()
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise NodeError(f"anvil did not stop within {timeout:.0f} s; killed (state may be older)") from None
        self._process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would: only the last periodic save survives."""
        if self._block_maker is not None:
            self._block_maker.kill()
            self._block_maker.wait()
            self._block_maker = None
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def __enter__(self) -> LocalNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
