"""What the gateway's helper processes share (the index follower, the block maker): a loop that outlives a
failure, how a helper learns that its owner is gone, and how the owner ends it.

A helper runs in a session of its own (Ctrl-C at the owner's terminal is the owner's to handle) with its
standard input a pipe from the owner. The owner ends it by closing that pipe; the pipe also reads empty when
the owner dies, however it dies. An owner may write a word first to tell a clean stop from its own death.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable

from ledger.errors import LedgerError

log = logging.getLogger("claimledger.helpers")


def every(interval_s: float, stop: threading.Event, work: Callable[[], object], name: str) -> None:
    """Run ``work`` now and then every ``interval_s`` until ``stop``. A failure is logged (a LedgerError once
    while it lasts, with its recovery; anything else each time) and the loop goes on."""
    failing = False
    while True:
        try:
            work()
            if failing:
                log.info("%s: the node answers again", name)
            failing = False
        except LedgerError as exc:
            if not failing:
                log.warning("%s: %s (retrying every %.2f s)", name, exc, interval_s)
            failing = True
        except Exception:  # the loop must outlive any one failure
            log.exception("%s: unexpected failure", name)
        if stop.wait(interval_s):
            return


def watch_owner(on_end: Callable[[bytes], None]) -> None:
    """In the helper: call ``on_end(what the owner wrote)`` once standard input closes (a daemon thread)."""

    def watch() -> None:
        said = b""
        try:
            # Unbuffered: a daemon thread blocked in a buffered read holds its lock through interpreter shutdown.
            while chunk := os.read(sys.stdin.fileno(), 4096):
                said += chunk
        except OSError:
            pass
        on_end(said)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def end_helper(process: subprocess.Popen[bytes], timeout: float, *, word: bytes = b"") -> None:
    """In the owner: write ``word`` to the helper, close its standard input (its cue to finish and leave),
    and wait for it; past ``timeout``, kill it."""
    if process.stdin is not None:
        if word:
            with contextlib.suppress(OSError):  # a helper that died has no reader
                process.stdin.write(word)
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
