"""No PHI on chain: member ids, birth dates and dates of service appear in no transaction and no log.

The scanner looks for every encoding a careless implementation could use: the text (ASCII,
with and without separators, upper and lower case), the hex of that text, a date as a
YYYYMMDD integer or a unix timestamp (00:00 UTC) in a 4, 5, 8 or 32-byte big-endian word, and
a member id's digits as an integer. It is proven on known plants before it is trusted.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ledger.claim import Claim, Frequency
from tests.integration.pipeline_fixtures import (
    Ledger,
    ledger_on_new_node,
    new_engine,
    outbox_rows,
    synthetic_claim,
)

WIDTHS = (4, 5, 8, 32)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on_new_node(tmp_path)


# ------------------------------------------------------------------------------------------ the scanner


@dataclass(frozen=True)
class Finding:
    where: str  # which blob: "tx 0x.. input", "log 3 of tx 0x.. data", ...
    value: str  # the PHI value found
    encoding: str  # how it was written
    offset: int


def _int_encodings(n: int, label: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for width in WIDTHS:
        bits = 8 * width
        if 0 <= n < 1 << bits:
            out[n.to_bytes(width, "big")] = f"{label} as uint{bits}"
        elif -(1 << (bits - 1)) <= n < 0:
            out[n.to_bytes(width, "big", signed=True)] = f"{label} as int{bits}"
    return out


def _text_encodings(text: str, label: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for variant in {text, text.upper(), text.lower()}:
        raw = variant.encode("ascii")
        out[raw] = f"{label} as ASCII {variant!r}"
        out[raw.hex().encode()] = f"{label} as hex text of {variant!r}"
        out[raw.hex().upper().encode()] = f"{label} as upper-case hex text of {variant!r}"
    return out


def member_needles(member_id: str) -> dict[bytes, str]:
    needles = _text_encodings(member_id, f"member id {member_id}")
    digits = "".join(ch for ch in member_id if ch.isdigit())
    if len(digits) >= 6:
        needles.update(_text_encodings(digits, f"member id {member_id} digits"))
        needles.update(_int_encodings(int(digits), f"member id {member_id} digits {digits}"))
    return needles


def date_needles(d: date, what: str) -> dict[bytes, str]:
    label = f"{what} {d.isoformat()}"
    needles: dict[bytes, str] = {}
    y, m, dd = f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"
    for text in (
        f"{y}-{m}-{dd}",
        f"{y}{m}{dd}",
        f"{y}/{m}/{dd}",
        f"{y}.{m}.{dd}",
        f"{m}/{dd}/{y}",
        f"{m}-{dd}-{y}",
        f"{m}{dd}{y}",
        f"{dd}.{m}.{y}",
        f"{dd}/{m}/{y}",
        f"{dd}{m}{y}",
    ):
        needles.update(_text_encodings(text, label))
    needles.update(_int_encodings(int(f"{y}{m}{dd}"), f"{label} YYYYMMDD"))
    midnight = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
    needles.update(_int_encodings(midnight, f"{label} unix time {midnight}"))
    return needles


def phi_needles(claims: Iterable[Claim]) -> dict[bytes, str]:
    needles: dict[bytes, str] = {}
    for c in claims:
        needles.update(member_needles(c.member_id))
        needles.update(date_needles(c.patient_birth_date, f"birth date of {c.member_id}"))
        for line in c.service_lines:
            needles.update(date_needles(line.service_date_from, f"service date of {c.member_id}"))
            needles.update(date_needles(line.service_date_to, f"service date of {c.member_id}"))
    return needles


def scan(blobs: dict[str, bytes], needles: dict[bytes, str]) -> list[Finding]:
    """Every place a needle occurs in a blob."""
    findings = []
    for where, blob in blobs.items():
        for needle, label in needles.items():
            start = blob.find(needle)
            while start != -1:
                value, _, encoding = label.partition(" as ")
                findings.append(Finding(where, value, encoding, start))
                start = blob.find(needle, start + 1)
    return findings


def _hex_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def chain_blobs(ledger: Ledger, outbox: list[dict[str, object]]) -> dict[str, bytes]:
    """Every transaction's input (every block, every sender) and every log's topics and data (every address)."""
    rpc = ledger.rpc()
    blobs: dict[str, bytes] = {}
    head = rpc.block_number()
    tx_count = 0
    for number in range(head + 1):
        block = rpc.block(number, True)
        assert block is not None
        for tx in block["transactions"]:
            blobs[f"tx {tx['hash']} input"] = _hex_bytes(tx["input"])
            tx_count += 1
    logs = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})
    for log in logs:
        where = f"log {int(log['logIndex'], 16)} of tx {log['transactionHash']}"
        blobs[f"{where} topics"] = b"".join(_hex_bytes(t) for t in log["topics"])
        blobs[f"{where} data"] = _hex_bytes(log["data"])
    for row in outbox:
        blobs[f"outbox nonce {row['nonce']} raw"] = bytes(row["raw"])  # type: ignore[arg-type]
    # The pipeline's transactions, fetched one by one too: the node answers for each.
    for row in outbox:
        tx = rpc.call("eth_getTransactionByHash", row["tx_hash"])
        blobs[f"tx {row['tx_hash']} by hash"] = _hex_bytes(tx["input"])
    assert tx_count > 0 and logs
    return blobs


# ------------------------------------------------------------------------------------------ the corpus


def corpus(n: int = 30, seed: int = 40) -> list[Claim]:
    rng = random.Random(seed)
    claims = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            member = "W" + "".join(rng.choice("0123456789") for _ in range(9))
        elif kind == 1:
            member = "".join(rng.choice("0123456789") for _ in range(11))
        else:
            member = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3)) + f"{rng.randrange(10**8):08d}"
        birth = date(1931, 1, 1) + timedelta(days=rng.randrange(0, 90 * 365))  # before and after 1970
        first = date(2023, 6, 1) + timedelta(days=rng.randrange(0, 600))
        lines = rng.randint(1, 3)
        claims.append(
            synthetic_claim(
                i,
                seed=seed,
                member_id=member,
                birth_date=birth,
                service_dates=tuple(first + timedelta(days=2 * k) for k in range(lines)),
                lines=lines,
            )
        )
    assert len({c.member_id for c in claims}) == n
    assert any(c.patient_birth_date.year < 1970 for c in claims)
    return claims


# ------------------------------------------------------------------------------------------ tests


def test_scanner_finds_every_encoding() -> None:
    member, birth = "W884512309", date(1961, 4, 12)
    needles = {**member_needles(member), **date_needles(birth, "birth date")}
    plants = {
        "ascii": b"\x00" * 7 + b"W884512309" + b"\x01",
        "lower ascii": b"w884512309",
        "hex text": b"0x" + b"W884512309".hex().encode(),
        "digits as uint32": (884512309).to_bytes(4, "big"),
        "digits in a word": (884512309).to_bytes(32, "big"),
        "iso date": b"1961-04-12",
        "compact date": b"19610412",
        "us date": b"04/12/1961",
        "yyyymmdd word": (19610412).to_bytes(32, "big"),
        "yyyymmdd uint40": b"\xff" + (19610412).to_bytes(5, "big"),
        "unix time int64": int(datetime(1961, 4, 12, tzinfo=UTC).timestamp()).to_bytes(8, "big", signed=True),
        "unix time int256": int(datetime(1961, 4, 12, tzinfo=UTC).timestamp()).to_bytes(32, "big", signed=True),
    }
    for name, blob in plants.items():
        assert scan({name: blob}, needles), f"the scanner missed {name}"
    assert not scan({"clean": bytes(range(256)) * 4 + b"\x00" * 64}, needles)
    later = date(2024, 3, 15)
    stamp = int(datetime(2024, 3, 15, tzinfo=UTC).timestamp())
    assert scan({"uint32 time": b"\xaa" + stamp.to_bytes(4, "big")}, date_needles(later, "service date"))


def test_scanner_finds_a_member_id_planted_on_chain(ledger: Ledger, tmp_path: Path) -> None:
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine).start()
    claim = synthetic_claim(1, seed=41, member_id="W884512309", birth_date=date(1961, 4, 12))
    honest = ledger.submission(claim)
    # A broken client: the member id as the document hash, and the birth date (YYYYMMDD) as the charge.
    planted = ledger.submission(synthetic_claim(2, seed=41))
    from dataclasses import replace

    planted = replace(planted, document_hash=b"W884512309".ljust(32, b"\x00"), total_charge=19610412)
    results = [f.result(30) for f in pipeline.submit_many([honest, planted])]
    assert [r.status for r in results] == ["recorded", "recorded"]
    pipeline.stop()

    findings = scan(chain_blobs(ledger, outbox_rows(engine)), phi_needles([claim]))
    where = {(f.where.split(" ")[0], f.where.split(" ")[-1], f.value) for f in findings}
    assert ("tx", "input", "member id W884512309") in where
    assert ("outbox", "raw", "member id W884512309") in where
    assert ("log", "data", "member id W884512309") in where  # ClaimSubmitted carries the document hash
    assert ("log", "data", "birth date of W884512309 1961-04-12 YYYYMMDD") in where  # ... and the total
    assert ("tx", "input", "birth date of W884512309 1961-04-12 YYYYMMDD") in where  # packed in terms


def test_no_phi_on_chain(ledger: Ledger, tmp_path: Path) -> None:
    claims = corpus()
    engine = new_engine(tmp_path / "ledger.sqlite")
    pipeline = ledger.pipeline(engine, max_batch=7).start()
    subs = [ledger.submission(c, payer_org=ledger.payer_y if i % 4 == 0 else None) for i, c in enumerate(claims)]
    results = [f.result(30) for f in pipeline.submit_many(subs)]
    assert {r.status for r in results} == {"recorded"}
    # The other kinds of transaction and event too: a duplicate, a void, a replacement, the payer's steps.
    again = ledger.submission(claims[0].model_copy(update={"claim_id": "AGAIN"}))
    void = ledger.submission(
        claims[1].model_copy(update={"frequency": Frequency.VOID}),
        frequency=8,
        related_key=subs[1].exact_key,
        related_version=1,
    )
    corrected = claims[2].model_copy(update={"claim_id": "FIXED", "rendering_npi": None})
    replacement = ledger.submission(corrected, frequency=7, related_key=subs[2].exact_key, related_version=1)
    more = [f.result(30) for f in pipeline.submit_many([again, void, replacement])]
    assert [r.status for r in more] == ["duplicate", "voided", "recorded"]
    pipeline.stop()
    key, total = subs[3].exact_key, claims[3].total_charge_cents
    payer = ledger.payer_x_account
    ledger.contract.acknowledge(key, 1, True, sender=payer)
    ledger.contract.adjudicate(key, 1, "partly_approved", total // 2, ["45"], sender=payer)
    ledger.contract.record_payment(key, 1, total // 2, b"\x42" * 32, sender=payer)

    blobs = chain_blobs(ledger, outbox_rows(engine))
    assert len(outbox_rows(engine)) >= 6
    needles = phi_needles(claims)
    assert len(needles) > 1000
    findings = scan(blobs, needles)
    assert findings == [], "\n".join(f"{f.value} ({f.encoding}) in {f.where} at {f.offset}" for f in findings[:20])
