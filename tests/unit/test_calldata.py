"""The hand-rolled submitClaims encoding and event decoding agree with eth_abi byte for byte."""

import os
import random

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.calldata import SUBMIT_SELECTOR, decode_submission_logs, encode_submit_claims
from ledger.chain import ClaimSubmission, ContractAbi, pack_terms, payer_call
from ledger.compiler import load_artifact
from ledger.errors import LedgerError

STRUCT = "(bytes32,bytes32,bytes32,uint256,bytes32[])[]"

keys = st.binary(min_size=32, max_size=32)
submission = st.builds(
    ClaimSubmission,
    exact_key=keys,
    document_hash=keys,
    line_keys=st.lists(keys, min_size=0, max_size=6).map(tuple),
    key_id=st.integers(0, 2**32 - 1),
    payer_org=st.integers(0, 2**32 - 1),
    total_charge=st.integers(0, 2**96 - 1),
    frequency=st.sampled_from([1, 7, 8]),
    related_key=keys,
    related_version=st.integers(0, 2**32 - 1),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(submission, min_size=0, max_size=8))
def test_encoding_equals_eth_abi(claims: list[ClaimSubmission]) -> None:
    expected = SUBMIT_SELECTOR + abi_encode([STRUCT], [[c.as_tuple() for c in claims]])
    assert encode_submit_claims(claims) == expected


def test_terms_round_trip_through_the_abi() -> None:
    terms = pack_terms(total_charge=123_456, key_id=7, payer_org=3, related_version=2, line_count=5, frequency=7)
    assert terms & (2**96 - 1) == 123_456
    assert (terms >> 96) & 0xFFFFFFFF == 7
    assert (terms >> 128) & 0xFFFFFFFF == 3
    assert (terms >> 160) & 0xFFFFFFFF == 2
    assert (terms >> 192) & 0xFFFF == 5
    assert (terms >> 208) & 0xFF == 7
    assert terms >> 216 == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("total_charge", 2**96), ("key_id", 2**32), ("line_count", 2**16), ("frequency", 256), ("payer_org", -1)],
)
def test_terms_refuse_what_does_not_fit(field: str, value: int) -> None:
    args = {"total_charge": 1, "key_id": 1, "payer_org": 1, "related_version": 0, "line_count": 1, "frequency": 1}
    args[field] = value
    with pytest.raises(LedgerError, match="does not fit"):
        pack_terms(**args)


def test_event_slicing_equals_generic_decoder() -> None:
    abi = ContractAbi(load_artifact()["abi"])
    topic = abi.event_topics["SuspectDuplicateFlagged"]
    key, earlier = os.urandom(32), os.urandom(32)
    data = abi_encode(["uint32", "uint16", "bytes32", "uint32"], [3, 2, earlier, 1])
    log = {
        "address": "0x" + "11" * 20,
        "topics": ["0x" + topic.hex(), "0x" + key.hex()],
        "data": "0x" + data.hex(),
        "logIndex": "0x5",
        "blockNumber": "0x9",
        "blockHash": "0x" + "22" * 32,
        "transactionHash": "0x" + "33" * 32,
    }
    fast = decode_submission_logs([log], log["address"])[0]
    generic = abi.decode_log(log)
    assert generic is not None
    assert (fast.kind, fast.exact_key, fast.version, fast.line_index) == ("suspect", key, 3, 2)
    assert (fast.other_key, fast.other_version, fast.log_index) == (earlier, 1, 5)
    assert generic.args == {
        "exactKey": key,
        "version": 3,
        "lineIndex": 2,
        "earlierExactKey": earlier,
        "earlierVersion": 1,
    }
    assert abi_decode(["uint32"], data[:32]) == (3,)


@pytest.mark.parametrize(
    "call",
    [
        ("acknowledge", (True, b"A2:20")),
        ("acknowledge", (False, b"A3:21")),
        ("adjudicate", ("partly_approved", 9_000, ["CO45", "PR2"])),
        ("adjudicate", ("approved", 12_500, [])),
        ("record_payment", (8_000, b"\x04" * 32)),
        ("reverse_payment", (b"\x05" * 32,)),
    ],
)
def test_payer_calls_encode_as_web3_encodes_them(call: tuple[str, tuple[object, ...]]) -> None:
    from web3 import Web3

    artifact = load_artifact()
    function, args = payer_call(call[0], os.urandom(32), 7, *call[1])
    expected = Web3().eth.contract(abi=artifact["abi"]).encode_abi(function, args=list(args))
    assert ContractAbi(artifact["abi"]).encode_call(function, args) == bytes.fromhex(expected[2:])


def test_an_unknown_function_is_not_encoded() -> None:
    with pytest.raises(LedgerError, match="no single function named 'payEveryone'"):
        ContractAbi(load_artifact()["abi"]).encode_call("payEveryone", ())


def _sample(t: str) -> object:
    if t.endswith("]"):
        return [_sample(t[: t.rindex("[")])]
    if t.startswith("uint"):
        return random.getrandbits(int(t[4:] or 256))
    if t.startswith("int"):
        return -random.getrandbits(int(t[3:] or 256) - 1)
    if t == "address":
        return "0x" + os.urandom(20).hex()
    if t == "bool":
        return random.random() < 0.5
    if t == "string":
        return "text"
    if t == "bytes":
        return os.urandom(7)
    return os.urandom(int(t[5:]))  # bytesN


def test_every_event_decodes_as_eth_abi_decodes_it() -> None:
    """decode_log slices static words itself; for every event of the contract it must agree with eth_abi."""
    from eth_utils import to_checksum_address

    abi = ContractAbi(load_artifact()["abi"])
    events = [item for item in load_artifact()["abi"] if item["type"] == "event"]
    assert len(events) >= 10
    for item in events:
        indexed = [i for i in item["inputs"] if i.get("indexed")]
        plain = [i for i in item["inputs"] if not i.get("indexed")]
        if any(i["type"].startswith("tuple") for i in item["inputs"]):
            continue
        values = {i["name"]: _sample(i["type"]) for i in item["inputs"]}
        topics = [abi.event_topics[item["name"]]] + [abi_encode([i["type"]], [values[i["name"]]]) for i in indexed]
        data = abi_encode([i["type"] for i in plain], [values[i["name"]] for i in plain])
        log = {
            "topics": ["0x" + t.hex() for t in topics],
            "data": "0x" + data.hex(),
            "logIndex": "0x1",
            "blockNumber": "0x2",
            "blockHash": "0x" + "22" * 32,
            "transactionHash": "0x" + "33" * 32,
        }
        event = abi.decode_log(log)
        assert event is not None and event.name == item["name"]
        expected = {i["name"]: abi_decode([i["type"]], topic)[0] for i, topic in zip(indexed, topics[1:], strict=True)}
        expected.update(zip([i["name"] for i in plain], abi_decode([i["type"] for i in plain], data), strict=True))
        expected = {
            k: to_checksum_address(v) if isinstance(v, str) and v.startswith("0x") else v for k, v in expected.items()
        }
        got = {k: list(v) if isinstance(v, tuple) else v for k, v in event.args.items()}
        want = {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
        assert got == want, item["name"]
