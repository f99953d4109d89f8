"""Hand-rolled ABI encoding of ``submitClaims`` and decoding of its events, for the hot path.

Byte-identical to eth_abi (a unit test holds them together) at a fraction of the cost:
encoding 1,000 claims with eth_abi takes about 20 ms, this about 1 ms. The events of a
batch are decoded from their fixed layouts by slicing, not by a generic ABI decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from ledger.chain import ClaimSubmission

SUBMIT_SIGNATURE = "submitClaims((bytes32,bytes32,bytes32,uint256,bytes32[])[])"
SUBMIT_SELECTOR = keccak(text=SUBMIT_SIGNATURE)[:4]

_WORD = 32
_HEAD_WORDS = 5  # exactKey, documentHash, relatedKey, terms, offset of lineKeys


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


_LINES_OFFSET = _word(_HEAD_WORDS * _WORD)


def encode_submit_claims(claims: Sequence[ClaimSubmission]) -> bytes:
    """Calldata of ``submitClaims(claims)``."""
    n = len(claims)
    offsets: list[bytes] = []
    bodies: list[bytes] = []
    position = n * _WORD
    for c in claims:
        offsets.append(_word(position))
        lines = c.line_keys
        body = b"".join(
            (
                c.exact_key,
                c.document_hash,
                c.related_key,
                _word(c.terms()),
                _LINES_OFFSET,
                _word(len(lines)),
                *lines,
            )
        )
        bodies.append(body)
        position += len(body)
    return b"".join((SUBMIT_SELECTOR, _word(_WORD), _word(n), *offsets, *bodies))


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


TOPIC_SUBMITTED = _topic("ClaimSubmitted(bytes32,uint32,uint32,uint32,bytes32,uint32,uint16,uint64,uint8)")
TOPIC_REFUSED = _topic("DuplicateRefused(bytes32,uint32,uint32,bytes32)")
TOPIC_SUSPECT = _topic("SuspectDuplicateFlagged(bytes32,uint32,uint16,bytes32,uint32)")
TOPIC_REPLACED = _topic("ClaimReplaced(bytes32,uint32,bytes32,uint32)")
TOPIC_VOIDED = _topic("ClaimVoided(bytes32,uint32,uint32)")


@dataclass(frozen=True, slots=True)
class SubmissionEvent:
    """One event of a submitClaims transaction, in log order."""

    kind: str  # "submitted" | "refused" | "suspect" | "replaced" | "voided"
    exact_key: bytes
    version: int
    other_key: bytes = b""
    other_version: int = 0
    line_index: int = -1
    log_index: int = 0


def _words(data: str) -> list[int]:
    hexdata = data[2:]
    return [int(hexdata[i : i + 64], 16) for i in range(0, len(hexdata), 64)]


def decode_submission_logs(logs: Sequence[dict[str, Any]], address: str) -> list[SubmissionEvent]:
    """The submission events of a receipt's logs (hex JSON as the node returns them)."""
    address = address.lower()
    events: list[SubmissionEvent] = []
    for log in logs:
        if log["address"].lower() != address:
            continue
        topics = log["topics"]
        topic0 = topics[0]
        key = bytes.fromhex(topics[1][2:]) if len(topics) > 1 else b""
        index = int(log["logIndex"], 16)
        if topic0 == TOPIC_SUBMITTED:
            events.append(SubmissionEvent("submitted", key, int(log["data"][2:66], 16), log_index=index))
        elif topic0 == TOPIC_REFUSED:
            events.append(SubmissionEvent("refused", key, int(log["data"][2:66], 16), log_index=index))
        elif topic0 == TOPIC_SUSPECT:
            w = log["data"][2:]
            events.append(
                SubmissionEvent(
                    "suspect",
                    key,
                    int(w[0:64], 16),
                    other_key=bytes.fromhex(w[128:192]),
                    other_version=int(w[192:256], 16),
                    line_index=int(w[64:128], 16),
                    log_index=index,
                )
            )
        elif topic0 == TOPIC_REPLACED:
            w = log["data"][2:]
            events.append(
                SubmissionEvent(
                    "replaced",
                    key,
                    int(w[0:64], 16),
                    other_key=bytes.fromhex(w[64:128]),
                    other_version=int(w[128:192], 16),
                    log_index=index,
                )
            )
        elif topic0 == TOPIC_VOIDED:
            events.append(SubmissionEvent("voided", key, int(log["data"][2:66], 16), log_index=index))
    return events
