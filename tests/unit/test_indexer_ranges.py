"""The indexer's ranges hold about RANGE_EVENTS events at most, judged by their blocks' gas, so a rebuild
over full blocks does not ask the node for a million logs at once. (A stub node: only blocks' gas.)"""

from __future__ import annotations

from typing import Any

from ledger.indexer import GAS_PER_EVENT, RANGE_EVENTS, Indexer
from ledger.store import make_engine


class GasOnlyNode:
    def __init__(self, gas: dict[int, int]) -> None:
        self.gas = gas
        self.asked: list[int] = []

    def block(self, number: int) -> dict[str, Any] | None:
        self.asked.append(number)
        return {"gasUsed": hex(self.gas.get(number, 0))}


def indexer(gas: dict[int, int]) -> Indexer:
    return Indexer(GasOnlyNode(gas), "0x" + "00" * 20, make_engine("sqlite://"))  # type: ignore[arg-type]


def test_light_blocks_go_in_one_range() -> None:
    light = {n: 200_000 for n in range(2_000)}  # automine: a few claims a block
    assert indexer(light)._bounded(0, 1_999) == 1_999


def test_full_blocks_are_taken_a_few_at_a_time() -> None:
    per_block = 3_000
    full = {n: per_block * GAS_PER_EVENT for n in range(100)}
    end = indexer(full)._bounded(0, 99)
    assert end + 1 == RANGE_EVENTS // per_block  # 6 blocks of 3,000 events


def test_a_block_fuller_than_a_range_is_a_range_alone() -> None:
    huge = {n: 64_000 * GAS_PER_EVENT for n in range(100)}  # 64 transactions of 1,000 claims
    assert indexer(huge)._bounded(10, 99) == 10


def test_full_blocks_behind_empty_ones_still_shrink_the_range() -> None:
    # An interval-mining chain: full blocks, then empty ones mined while nothing came.
    gas = {n: (64_000 * GAS_PER_EVENT if n < 60 else 0) for n in range(100)}
    end = indexer(gas)._bounded(0, 99)
    assert end == 0  # one full block at a time


def test_a_full_last_block_shrinks_the_range_until_the_estimate_fits() -> None:
    gas = {n: 100_000 for n in range(1_000)}
    gas[999] = 50_000 * GAS_PER_EVENT
    end = indexer(gas)._bounded(0, 999)
    assert 0 < end < 999
    assert max(gas[n] for n in {0, end // 2, end}) // GAS_PER_EVENT * (end + 1) <= RANGE_EVENTS
