"""Off-chain documents: sealed with AES-256-GCM, bound to their document hash, key file guarded."""

import os
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ledger.documents import DocumentKey, DocumentVault
from ledger.errors import ClaimNotFoundError, KeyringError, StoreError
from ledger.store import claim_references, documents, make_engine, sqlite_url

DOC = b'{"member_id":"M000123456","patient_birth_date":"1970-05-17"}'


@pytest.fixture
def vault(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "docs.db"))
    return DocumentVault(engine, DocumentKey.load_or_create(tmp_path / "document.key"))


def every_byte_at_rest(folder: Path) -> bytes:
    """The database's files (main, its parts, their write-ahead logs), the documents among them."""
    files = sorted(folder.glob("docs*.db*"))
    assert any(f.name == "docs-vault.db" for f in files), files  # the vault's own file is among them
    return b"".join(f.read_bytes() for f in files)


def test_round_trip_and_no_plaintext_at_rest(vault: DocumentVault, tmp_path) -> None:
    h = os.urandom(32)
    vault.put_many([(h, DOC)])
    assert vault.get(h) == DOC
    with vault.engine.connect() as conn:
        stored = conn.execute(select(documents.c.ciphertext)).scalar_one()
    assert b"M000123456" not in stored and b"1970-05-17" not in stored
    assert b"M000123456" not in every_byte_at_rest(tmp_path)


def test_storing_twice_keeps_the_first(vault: DocumentVault) -> None:
    h = os.urandom(32)
    vault.put_many([(h, DOC)])
    vault.put_many([(h, DOC)])
    with vault.engine.connect() as conn:
        assert len(conn.execute(select(documents)).all()) == 1


def test_a_ciphertext_moved_to_another_hash_fails(vault: DocumentVault) -> None:
    a, b = os.urandom(32), os.urandom(32)
    vault.put_many([(a, DOC), (b, b"{}")])
    with vault.engine.begin() as conn:
        row = conn.execute(select(documents).where(documents.c.document_hash == a)).mappings().one()
        conn.execute(
            update(documents)
            .where(documents.c.document_hash == b)
            .values(nonce=row["nonce"], ciphertext=row["ciphertext"])
        )
    with pytest.raises(StoreError, match="altered"):
        vault.get(b)


def test_another_key_cannot_read(vault: DocumentVault, tmp_path) -> None:
    h = os.urandom(32)
    vault.put_many([(h, DOC)])
    other = DocumentVault(vault.engine, DocumentKey.load_or_create(tmp_path / "other.key"))
    with pytest.raises(KeyringError, match="sealed under key"):
        other.get(h)


def test_unknown_document(vault: DocumentVault) -> None:
    with pytest.raises(ClaimNotFoundError):
        vault.get(os.urandom(32))


def test_key_file_is_private_and_checked(tmp_path) -> None:
    path = tmp_path / "document.key"
    DocumentKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="readable by others"):
        DocumentKey.load_or_create(path)
    path.chmod(0o600)
    path.write_text("not hex\n")
    with pytest.raises(KeyringError, match="not hex"):
        DocumentKey.load_or_create(path)


def test_documents_are_found_by_claim_id_kept_only_as_a_keyed_tag(vault: DocumentVault, tmp_path) -> None:
    first, second, other = os.urandom(32), os.urandom(32), os.urandom(32)
    vault.put_many([(first, DOC), (other, b"{}")], claim_ids=["PCN-778812", "PCN-000001"])
    vault.put_many([(second, DOC)], claim_ids=["PCN-778812"])
    vault.put_many([(second, DOC)], claim_ids=["PCN-778812"])  # stored again: still one reference
    assert sorted(vault.find_claim_id("PCN-778812")) == sorted([first, second])
    assert vault.find_claim_id(" PCN-778812 ") == vault.find_claim_id("PCN-778812")
    assert vault.find_claim_id("PCN-000001") == [other]
    assert vault.find_claim_id("PCN-999999") == []
    with vault.engine.connect() as conn:
        tags = conn.execute(select(claim_references.c.tag)).scalars().all()
    assert len(tags) == 3 and all(len(t) == 32 for t in tags)
    assert b"PCN-778812" not in every_byte_at_rest(tmp_path)
    other_vault = DocumentVault(vault.engine, DocumentKey(os.urandom(32)))
    assert other_vault.find_claim_id("PCN-778812") == [], "the tag depends on the gateway's key"
