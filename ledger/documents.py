"""Off-chain claim documents, encrypted at rest with AES-256-GCM.

The full canonical claim (which holds PHI) never goes on chain; it is kept here, encrypted
under the gateway's document key and bound to its document hash (the GCM associated data),
so a ciphertext moved to another claim's row fails to decrypt.

Each document is also findable by the provider's claim id (CLM01), which is how an 835's CLP01
or an 837's REF*F8 names a claim: the id is kept only as a keyed tag (HMAC-SHA256 under a key
derived from the document key), since claim ids are often patient account numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, select

from ledger.errors import ClaimNotFoundError, KeyringError, StoreError
from ledger.store import VAULT_PART, GroupCommit, bulk, claim_references, documents, writing

IN_CHUNK = 500  # values per SQL IN (...): well under SQLite's limit of bound parameters
KEY_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True)
class DocumentKey:
    """An AES-256 key and its short id (first 8 hex digits of its SHA-256)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise KeyringError(f"a document key is {KEY_BYTES} bytes, not {len(self.secret)}")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"claimledger-document-key" + self.secret).hexdigest()[:8]

    @classmethod
    def load_or_create(cls, path: Path) -> DocumentKey:
        """The key in ``path`` (hex), made (mode 0600) on first use."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(KEY_BYTES).hex() + "\n")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyringError(f"document key {path} is readable by others (mode {mode:o}): chmod 600 it")
        try:
            return cls(bytes.fromhex(path.read_text().strip()))
        except ValueError as exc:
            raise KeyringError(f"document key {path} is not hex: {exc}") from exc


class DocumentVault:
    """Encrypted claim documents in the SQL store, keyed by document hash."""

    def __init__(self, engine: Engine, key: DocumentKey) -> None:
        self.engine = engine
        self._key = key
        self._aead = AESGCM(key.secret)
        self._tag_key = hashlib.sha256(b"claimledger-claim-reference" + key.secret).digest()
        self._group: GroupCommit[dict[str, object]] = GroupCommit(self._write_group, name="documents-writer")

    def claim_tag(self, claim_id: str) -> bytes:
        """The keyed tag under which a provider's claim id (as the claim model normalises it) is kept."""
        return hmac.new(self._tag_key, claim_id.strip().encode("utf-8"), hashlib.sha256).digest()

    def seal(self, document_hash: bytes, document: bytes) -> dict[str, object]:
        nonce = os.urandom(NONCE_BYTES)
        return {
            "document_hash": document_hash,
            "key_id": self._key.key_id,
            "nonce": nonce,
            "ciphertext": self._aead.encrypt(nonce, document, document_hash),
            "created_at": int(time.time()),
        }

    def put_many(self, items: list[tuple[bytes, bytes]], *, claim_ids: list[str | None] | None = None) -> None:
        """Store (document_hash, document) pairs, once each; returns when they are written. Concurrent
        callers' documents go in one transaction together. ``claim_ids`` (parallel to ``items``) makes
        each document findable by its provider's claim id (:meth:`find_claim_id`)."""
        self.put_many_future(items, claim_ids=claim_ids).result()

    def put_many_future(
        self, items: list[tuple[bytes, bytes]], *, claim_ids: list[str | None] | None = None
    ) -> Future[None]:
        """:meth:`put_many` without waiting: the future is done once the documents are written."""
        if not items:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        rows = [self.seal(h, d) for h, d in items]
        if claim_ids is not None:
            for row, claim_id in zip(rows, claim_ids, strict=True):
                if claim_id:
                    row["tag"] = self.claim_tag(claim_id)
        return self._group.submit_future(rows)

    def find_claim_id(self, claim_id: str) -> list[bytes]:
        """The document hashes stored under a provider's claim id, oldest first."""
        return self.find_claim_ids([claim_id])[claim_id]

    def find_claim_ids(self, claim_ids: Sequence[str]) -> dict[str, list[bytes]]:
        """:meth:`find_claim_id` for many claim ids in one query."""
        tags = {self.claim_tag(c): c for c in claim_ids}
        found: dict[str, list[bytes]] = {c: [] for c in claim_ids}
        with self.engine.connect() as conn:
            for start in range(0, len(tags), IN_CHUNK):
                chunk = list(tags)[start : start + IN_CHUNK]
                for tag, document_hash in conn.execute(
                    select(claim_references.c.tag, claim_references.c.document_hash)
                    .join(documents, documents.c.document_hash == claim_references.c.document_hash)
                    .where(claim_references.c.tag.in_(chunk))
                    .order_by(documents.c.created_at, documents.c.document_hash)
                ):
                    found[tags[tag]].append(document_hash)
        return found

    def _write_group(self, rows: list[dict[str, object]]) -> None:
        # Straight through the driver, a document or reference already stored left as it is (the same
        # hash is the same document): one statement a table, however many requests the group holds.
        docs = {r["document_hash"]: r for r in rows}
        tags = {(r["tag"], r["document_hash"]) for r in rows if "tag" in r}
        with writing(self.engine, part=VAULT_PART) as conn:
            bulk(
                conn,
                "INSERT INTO documents (document_hash, key_id, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (document_hash) DO NOTHING",
                [(h, r["key_id"], r["nonce"], r["ciphertext"], r["created_at"]) for h, r in docs.items()],
            )
            bulk(
                conn,
                "INSERT INTO claim_references (tag, document_hash) VALUES (?, ?)"
                " ON CONFLICT (tag, document_hash) DO NOTHING",
                sorted(tags),
            )

    def get(self, document_hash: bytes) -> bytes:
        with self.engine.connect() as conn:
            row = conn.execute(select(documents).where(documents.c.document_hash == document_hash)).mappings().first()
        if row is None:
            raise ClaimNotFoundError(f"no document 0x{document_hash.hex()} in this gateway's store")
        if row["key_id"] != self._key.key_id:
            raise KeyringError(f"document 0x{document_hash.hex()} is sealed under key {row['key_id']}, not this one")
        try:
            return self._aead.decrypt(row["nonce"], row["ciphertext"], document_hash)
        except InvalidTag:
            raise StoreError(f"document 0x{document_hash.hex()} fails its integrity check: it was altered") from None
