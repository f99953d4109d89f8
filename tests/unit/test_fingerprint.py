"""Fingerprints: golden vectors, the encoding recomputed by hand, key ids, the keyring, and no PHI."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from ledger.claim import parse_claim
from ledger.errors import KeyringError
from ledger.fingerprint import (
    DOCUMENT_LABEL,
    EXACT_LABEL,
    SUSPECT_LABEL,
    FingerprintKey,
    Fingerprints,
    Keyring,
    KeyringEntry,
    canonical_document,
    canonical_json,
    derive_key_id,
    document_hash,
    fingerprint,
    fingerprints_for_rotation,
)
from tests.factories import make_claim, make_line_data

GOLDEN = json.loads((Path(__file__).parent / "golden_fingerprints.json").read_text(encoding="utf-8"))
GOLDEN_SECRET = bytes.fromhex(GOLDEN["key"]["secret_hex"])
GOLDEN_KEY = FingerprintKey(GOLDEN["key"]["key_id"], GOLDEN_SECRET)
VECTORS = {vector["name"]: vector for vector in GOLDEN["vectors"]}
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


# --- golden vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VECTORS))
def test_golden_vectors(name: str) -> None:
    vector = VECTORS[name]
    claim = parse_claim(vector["claim"])
    assert canonical_document(claim).decode("utf-8") == vector["canonical_document"]
    prints = fingerprint(claim, GOLDEN_KEY)
    assert prints.key_id == GOLDEN["key"]["key_id"]
    assert prints.exact_key.hex() == vector["exact_key"]
    assert [k.hex() for k in prints.line_keys] == vector["line_keys"]
    assert prints.document_hash.hex() == vector["document_hash"]


def test_golden_vectors_cover_what_they_say() -> None:
    assert set(VECTORS) == {"one-line", "three-line", "modifiers", "secondary", "replacement", "non-ascii"}
    assert len(VECTORS["three-line"]["line_keys"]) == 3
    assert not VECTORS["non-ascii"]["canonical_document"].isascii()


@pytest.mark.parametrize("name", list(VECTORS))
def test_golden_documents_are_rfc8785(name: str) -> None:
    document = VECTORS[name]["canonical_document"].encode("utf-8")
    assert rfc8785.dumps(json.loads(document)) == document


def _stdlib_hmac(message: bytes) -> str:
    return hmac.new(GOLDEN_SECRET, message, hashlib.sha256).hexdigest()


def _jcs(value: Any) -> bytes:
    # For ASCII strings and small integers RFC 8785 is sorted keys, no white space: the stdlib writes it.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_one_line_vector_recomputed_by_hand_from_the_documented_encoding() -> None:
    """Not self-referential: the values are written out here, the HMAC is the standard library's."""
    vector = VECTORS["one-line"]
    exact = ["MBR100200300", "1234567893", "P", [["2025-06-02", "2025-06-02", "99213", [], 1, 12500, "11"]]]
    assert _stdlib_hmac(EXACT_LABEL + _jcs(exact)) == vector["exact_key"]
    suspect = ["MBR100200300", "2025-06-02", "2025-06-02", "99213", [], "P"]
    assert [_stdlib_hmac(SUSPECT_LABEL + _jcs(suspect))] == vector["line_keys"]
    document = {
        "billing_npi": "1234567893",
        "claim_id": "CLM-0001",
        "diagnoses": ["E119", "I10"],
        "frequency": "1",
        "member_id": "MBR100200300",
        "original_claim_id": None,
        "patient_birth_date": "1980-04-12",
        "payer_id": "PAYER-ACME",
        "place_of_service": "11",
        "rendering_npi": "1245319599",
        "responsibility": "P",
        "service_lines": [
            {
                "charge_cents": 12500,
                "diagnosis_pointers": [1],
                "modifiers": [],
                "place_of_service": None,
                "procedure_code": "99213",
                "service_date_from": "2025-06-02",
                "service_date_to": "2025-06-02",
                "units": 1,
            }
        ],
        "total_charge_cents": 12500,
    }
    assert _jcs(document).decode() == vector["canonical_document"]
    assert _stdlib_hmac(DOCUMENT_LABEL + _jcs(document)) == vector["document_hash"]
    key_id = int.from_bytes(hashlib.sha256(b"claimledger-key-id" + GOLDEN_SECRET).digest()[:4], "big")
    assert key_id == GOLDEN["key"]["key_id"]


def test_modifiers_vector_recomputed_by_hand() -> None:
    """Sorted upper-case modifiers, lines in canonical order, each line's own place of service."""
    vector = VECTORS["modifiers"]
    exact = [
        "MBR100200300",
        "1234567893",
        "P",
        [
            ["2025-06-02", "2025-06-02", "20610", ["59", "RT"], 2, 31000, "22"],
            ["2025-06-02", "2025-06-02", "J1100", ["RT"], 1, 1500, "11"],
        ],
    ]
    assert _stdlib_hmac(EXACT_LABEL + _jcs(exact)) == vector["exact_key"]
    suspects = [
        ["MBR100200300", "2025-06-02", "2025-06-02", "20610", ["59", "RT"], "P"],
        ["MBR100200300", "2025-06-02", "2025-06-02", "J1100", ["RT"], "P"],
    ]
    assert [_stdlib_hmac(SUSPECT_LABEL + _jcs(s)) for s in suspects] == vector["line_keys"]


def test_document_hash_of_a_held_document() -> None:
    vector = VECTORS["replacement"]
    held = vector["canonical_document"].encode("utf-8")
    assert document_hash(held, GOLDEN_KEY).hex() == vector["document_hash"]


# --- what the keys leave out ------------------------------------------------------------------


def test_same_claim_to_two_payers_or_under_a_new_claim_id_has_the_same_exact_key() -> None:
    key = FingerprintKey.generate()
    first = fingerprint(make_claim(), key)
    again = fingerprint(make_claim(payer_id="PAYER-BETA", claim_id="CLM-NEW", rendering_npi=None), key)
    assert again.exact_key == first.exact_key
    assert again.line_keys == first.line_keys
    assert again.document_hash != first.document_hash


def test_a_repeat_made_legitimate_by_a_modifier_changes_the_suspect_key() -> None:
    key = FingerprintKey.generate()
    plain = fingerprint(make_claim(), key)
    repeat = fingerprint(make_claim(service_lines=[make_line_data(modifiers=["76"])]), key)
    assert repeat.line_keys != plain.line_keys
    assert repeat.exact_key != plain.exact_key


def test_a_different_provider_billing_the_same_service_is_a_suspect_not_an_exact_duplicate() -> None:
    key = FingerprintKey.generate()
    ours = fingerprint(make_claim(), key)
    theirs = fingerprint(make_claim(billing_npi="1000000004", service_lines=[make_line_data(charge_cents=9900)]), key)
    assert theirs.exact_key != ours.exact_key
    assert theirs.line_keys == ours.line_keys


def test_labels_keep_key_kinds_apart() -> None:
    labels = {EXACT_LABEL, SUSPECT_LABEL, DOCUMENT_LABEL}
    assert len(labels) == 3
    assert all(label.endswith(b"\x00") for label in labels)


# --- keys and key ids -------------------------------------------------------------------------


def test_key_id_is_stable_nonzero_and_32_bit() -> None:
    key = FingerprintKey.generate()
    assert 0 < key.key_id < 2**32
    assert derive_key_id(key.secret) == key.key_id == FingerprintKey.from_secret(key.secret).key_id
    assert FingerprintKey.generate().key_id != key.key_id


@pytest.mark.parametrize(
    ("key_id", "secret", "words"),
    [
        (1, b"short", "32 bytes, not 5"),
        (0, bytes(32), "non-zero 32-bit"),
        (2**32, bytes(32), "non-zero 32-bit"),
        (1, bytes(32), "does not match its secret"),
        (1, "a" * 32, "bytes, not str"),
    ],
)
def test_bad_keys_are_refused(key_id: int, secret: Any, words: str) -> None:
    with pytest.raises(KeyringError, match=words):
        FingerprintKey(key_id, secret)


def test_the_secret_never_shows() -> None:
    key = FingerprintKey.generate()
    assert key.secret.hex() not in repr(key) and str(key.secret) not in repr(key)
    entry = KeyringEntry(key, created_at=NOW)
    assert key.secret.hex() not in repr(entry)


def test_fingerprints_hold_only_hmac_outputs_and_the_key_id() -> None:
    claim = make_claim(lines=3)
    prints = fingerprint(claim, FingerprintKey.generate())
    assert set(Fingerprints.__slots__) == {"key_id", "exact_key", "line_keys", "document_hash"}
    values = [prints.exact_key, prints.document_hash, *prints.line_keys]
    assert all(isinstance(v, bytes) and len(v) == 32 for v in values)
    shown = json.dumps(prints.to_dict()) + repr(prints)
    for phi in ("MBR100200300", "1980-04-12", "2025-06-02", "99213", "E119", "1234567893"):
        assert phi not in shown


# --- the keyring ------------------------------------------------------------------------------


def test_generate_writes_a_private_key_file_and_load_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = Keyring.generate(path, now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Keyring.load(path)
    assert loaded.current == made.current
    assert loaded.active_keys(NOW) == [made.current]
    document = json.loads(path.read_text())
    assert document["format"] == "claimledger-keyring/v1"
    assert document["keys"][0]["created_at"] == "2025-06-30T12:00:00Z"


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate(path)
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.generate(path)


def test_rotation_keeps_the_previous_key_for_the_window(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = Keyring.generate(path, now=NOW).current
    rotated = Keyring.rotate(path, window_days=7, now=NOW)
    second = rotated.current
    assert second != first
    assert Keyring.load(path).current == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rotated.active_keys(NOW + timedelta(days=6, hours=23)) == [second, first]
    assert rotated.active_keys(NOW + timedelta(days=7)) == [second]
    # a retired key stays in the file: it still checks the document hashes it made
    assert Keyring.load(path).key(first.key_id) == first
    retired = next(e for e in Keyring.load(path).entries if e.key == first)
    assert (retired.retired_at, retired.valid_until) == (NOW, NOW + timedelta(days=7))


def test_two_rotations_give_the_current_key_then_the_newer_retired_ones(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = Keyring.generate(path, now=NOW).current
    second = Keyring.rotate(path, window_days=30, now=NOW + timedelta(days=1)).current
    third = Keyring.rotate(path, window_days=30, now=NOW + timedelta(days=2)).current
    assert Keyring.load(path).active_keys(NOW + timedelta(days=3)) == [third, second, first]
    assert Keyring.load(path).active_keys(NOW + timedelta(days=31, hours=1)) == [third, second]


def test_fingerprints_for_rotation_one_per_active_key_current_first(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = Keyring.generate(path, now=NOW).current
    claim = make_claim(lines=2)
    recorded_before = fingerprint(claim, old)
    keyring = Keyring.rotate(path, window_days=30, now=NOW)
    during = fingerprints_for_rotation(claim, keyring, NOW + timedelta(days=1))
    assert [p.key_id for p in during] == [keyring.current.key_id, old.key_id]
    assert during[1] == recorded_before
    assert during[0].exact_key != recorded_before.exact_key
    after = fingerprints_for_rotation(claim, keyring, NOW + timedelta(days=31))
    assert [p.key_id for p in after] == [keyring.current.key_id]


def test_unknown_key_id(tmp_path: Path) -> None:
    keyring = Keyring.generate(tmp_path / "keys.json")
    with pytest.raises(KeyringError, match="key id 7 is not in the keyring"):
        keyring.key(7)


def test_times_must_carry_a_zone(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="timezone-aware"):
        Keyring.generate(tmp_path / "keys.json").active_keys(datetime(2025, 6, 30))


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _good_entry() -> dict[str, Any]:
    key = FingerprintKey.generate()
    return {"key_id": key.key_id, "secret": key.secret.hex(), "created_at": "2025-06-30T12:00:00Z"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "malformed: not JSON"),
        ('{"format": "something-else", "keys": []}', "not a claimledger-keyring/v1 document"),
        ('{"format": "claimledger-keyring/v1", "keys": []}', "lists no keys"),
        (
            '{"format": "claimledger-keyring/v1", "keys": [{"key_id": 1, "secret": "00ff", "created_at": "x"}]}',
            "32 bytes",
        ),
        ('{"format": "claimledger-keyring/v1", "keys": [{"key_id": 1}]}', "missing or invalid 'secret'"),
        (
            '{"format": "claimledger-keyring/v1", "keys": [{"key_id": 1, "secret": "zz", "created_at": "x"}]}',
            "missing or invalid",
        ),
    ],
)
def test_malformed_key_files_name_the_file_and_what_to_do(tmp_path: Path, content: str, words: str) -> None:
    path = _write(tmp_path / "keys.json", content)
    with pytest.raises(KeyringError) as caught:
        Keyring.load(path)
    assert words in caught.value.message
    assert str(path) in caught.value.message
    assert "restore it from its backup" in caught.value.message


def test_key_files_with_the_wrong_current_count_or_a_tampered_id(tmp_path: Path) -> None:
    two_current = {"format": "claimledger-keyring/v1", "keys": [_good_entry(), _good_entry()]}
    with pytest.raises(KeyringError, match="exactly one current key, found 2"):
        Keyring.load(_write(tmp_path / "a.json", json.dumps(two_current)))
    tampered = _good_entry()
    tampered["key_id"] += 1
    with pytest.raises(KeyringError, match="does not match its secret"):
        Keyring.load(_write(tmp_path / "b.json", json.dumps({"format": "claimledger-keyring/v1", "keys": [tampered]})))


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError) as caught:
        Keyring.load(tmp_path / "nowhere.json")
    assert "does not exist" in caught.value.message and "Keyring.generate" in caught.value.message


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match=r"other than its owner \(mode 0644\): run chmod 600"):
        Keyring.load(path)
    assert Keyring.load(path, require_private=False).current


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    Keyring.generate(path)
    os.chmod(path, 0)
    with pytest.raises(KeyringError, match="cannot read the key file"):
        Keyring.load(path)


def test_canonical_json_falls_back_to_rfc8785_outside_ascii() -> None:
    values: list[Any] = [{"b": "é", "a": ["😀", 1]}, {"claim_id": "\u2028\x7f"}, ["\x00\x1f", -(2**53 - 1)]]
    for value in values:
        assert canonical_json(value) == rfc8785.dumps(value)


def test_canonical_document_of_a_non_ascii_claim_matches_the_reference() -> None:
    claim = make_claim(claim_id="CLM-Ünïcödé-\u00a0", payer_id="PAYER-ÅCME")
    assert canonical_document(claim) == rfc8785.dumps(claim.model_dump(mode="json"))
