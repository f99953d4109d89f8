"""Waiting on an event loop for what threads finish (the pipeline's futures), without holding a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

CHECK_S = 0.05


async def wait_all(
    futures: Sequence[Future[Any]], timeout: float, *, give_up: Callable[[], bool] | None = None
) -> bool:
    """Wait until every future is done, or ``timeout`` seconds, or ``give_up()`` (asked every CHECK_S);
    whether they all are. One wake-up of the loop for the lot (the last one's), however many futures."""
    if all(f.done() for f in futures):
        return True
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()
    remaining = len(futures)
    lock = threading.Lock()

    def finish() -> None:
        if not all_done.done():
            all_done.set_result(None)

    def one_done(_: Future[Any]) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            last = remaining == 0
        if last and not loop.is_closed():
            loop.call_soon_threadsafe(finish)

    for f in futures:
        f.add_done_callback(one_done)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(asyncio.shield(all_done), min(left, CHECK_S) if give_up else left)
            return True
        except TimeoutError:
            if give_up is not None and give_up():
                break
    return all(f.done() for f in futures)
