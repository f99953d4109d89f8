"""Fixtures of the brownie tests. Run them with `bash scripts/brownie.sh test`, never plain pytest.

brownie's pytest plugin provides `accounts`, `chain`, the `ClaimLedger` container, the
isolation fixtures and `state_machine`. The demo consortium is deployed once per module by
scripts/deploy.py's `deploy_consortium`, and every test starts from it (fn_isolation).
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest

from scripts.deploy import DEMO_KEY_ID, deploy_consortium

FREQUENCY_ORIGINAL, FREQUENCY_REPLACEMENT, FREQUENCY_VOID = 1, 7, 8
ZERO32 = "0x" + "00" * 32

# IClaimLedger.Status and IClaimLedger.Outcome
S_NONE, S_SUBMITTED, S_ACCEPTED, S_REJECTED, S_ADJUDICATED, S_PAID, S_VOIDED, S_REPLACED = range(8)
LIVE = frozenset({S_SUBMITTED, S_ACCEPTED, S_ADJUDICATED, S_PAID})
O_NONE, O_APPROVED, O_PARTLY_APPROVED, O_DENIED = range(4)


def pack_terms(
    total_charge: int,
    key_id: int,
    payer_org: int,
    *,
    line_count: int = 1,
    frequency: int = FREQUENCY_ORIGINAL,
    related_version: int = 0,
) -> int:
    """`ClaimSubmission.terms` packed as IClaimLedger.sol documents it (test_pack_terms checks it)."""
    return (
        total_charge | key_id << 96 | payer_org << 128 | related_version << 160 | line_count << 192 | frequency << 208
    )


def b32(tag: int, n: int) -> str:
    """A distinct non-zero bytes32 for each (tag, n)."""
    return "0x" + (bytes([tag]) + n.to_bytes(31, "big")).hex()


def typed_error(name: str, *args: Any) -> str:
    """A custom error as brownie 1.22 decodes it into `revert_msg`: "Name: arg, arg".

    Pass bytes32 values as 0x-strings or bytes, addresses as accounts or 0x-strings, and
    integers (enums included) as ints.
    """

    def show(a: Any) -> str:
        if hasattr(a, "address"):
            return str(a.address).lower()
        if isinstance(a, str) and a.startswith("0x"):
            raw = bytes.fromhex(a[2:])
            return a.lower() if len(raw) == 20 else str(raw)
        if isinstance(a, bytes):
            return str(bytes(a))
        return str(int(a))

    return f"{name}: {', '.join(show(a) for a in args)}"


def plain(value: Any) -> Any:
    """A brownie return value as plain Python: tuples, ints, bools, 0x-strings (addresses checksummed).

    brownie 1.22.2 (mypyc-compiled) raises "TypeError: brownie.convert.datatypes.Wei object
    expected; got int" when a ReturnValue is compared with a tuple or list holding ints, so the
    tests compare plain values instead.
    """
    if isinstance(value, (tuple, list)):
        return tuple(plain(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return str(value)
    return value


class ClaimFactory:
    """Claim submissions (exactKey, documentHash, relatedKey, terms, lineKeys) with fresh keys."""

    def __init__(self, key_id: int) -> None:
        self.key_id = key_id
        self._counter = itertools.count(1)

    def new_key(self) -> str:
        return b32(0xE1, next(self._counter))

    def claim(
        self,
        payer_org: int,
        charge: int = 12_500,
        lines: int = 1,
        *,
        exact_key: str | None = None,
        line_keys: list[str] | None = None,
        key_id: int | None = None,
    ) -> tuple:
        n = next(self._counter)
        key = exact_key or b32(0xE1, n)
        keys = line_keys if line_keys is not None else [b32(0x11, n * 64 + j) for j in range(lines)]
        terms = pack_terms(charge, self.key_id if key_id is None else key_id, payer_org, line_count=len(keys))
        return (key, b32(0xD0, n), ZERO32, terms, keys)

    def void(self, exact_key: str, version: int) -> tuple:
        """A frequency-8 submission that voids (exact_key, version)."""
        n = next(self._counter)
        terms = pack_terms(0, 0, 0, line_count=0, frequency=FREQUENCY_VOID, related_version=version)
        return (exact_key, b32(0xD0, n), exact_key, terms, [])


@pytest.fixture(scope="module")
def consortium(ClaimLedger, accounts):
    return deploy_consortium(ClaimLedger, accounts)


@pytest.fixture(scope="module")
def ledger(consortium):
    return consortium.ledger


@pytest.fixture(scope="module")
def provider(consortium):
    return consortium.provider


@pytest.fixture(scope="module")
def payers(consortium):
    return consortium.payers


@pytest.fixture(scope="module")
def payer_orgs(consortium):
    return [consortium.orgs["demo-payer-a"], consortium.orgs["demo-payer-b"]]


@pytest.fixture(scope="module")
def provider_org(consortium):
    return consortium.orgs["demo-provider"]


@pytest.fixture
def claims():
    return ClaimFactory(DEMO_KEY_ID)


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the freshly deployed consortium."""


def _uncompiled_stateful() -> Any:
    """brownie.test.stateful, loaded from its Python source when the installed one is compiled.

    brownie 1.22.2 ships brownie/test/stateful.py compiled with mypyc, with _BrownieStateMachine
    marked @final; `state_machine` subclasses it, so every run fails at once with "TypeError:
    brownie.test.stateful._BrownieStateMachine object expected; got ...BrownieStateMachine".
    The wheel ships the source next to the extension: the same code, run as plain Python, works.
    """
    from brownie.test import stateful

    compiled = Path(stateful.__file__)
    if compiled.suffix == ".py":
        return stateful
    source = compiled.with_name("stateful.py")
    spec = importlib.util.spec_from_file_location("brownie_test_stateful_source", source)
    assert spec is not None and spec.loader is not None, source
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def state_machine(state_machine):
    """brownie's `state_machine` fixture (capture and spinner handling), working around 1.22.2's build."""
    from brownie.test import stateful

    module = _uncompiled_stateful()
    module._BrownieStateMachine._capman = stateful._BrownieStateMachine._capman
    yield module.state_machine
