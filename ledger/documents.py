"""Off-chain claim documents, encrypted at rest with AES-256-GCM.

The full canonical claim (which holds PHI) never goes on chain; it is kept here, encrypted
under the gateway's document key and bound to its document hash (the GCM associated data),
so a ciphertext moved to another claim's row fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, insert, select

from ledger.errors import ClaimNotFoundError, KeyringError, StoreError
from ledger.store import GroupCommit, documents, writing

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
        self._group: GroupCommit[dict[str, object]] = GroupCommit(self._write_group)

    def seal(self, document_hash: bytes, document: bytes) -> dict[str, object]:
        nonce = os.urandom(NONCE_BYTES)
        return {
            "document_hash": document_hash,
            "key_id": self._key.key_id,
            "nonce": nonce,
            "ciphertext": self._aead.encrypt(nonce, document, document_hash),
            "created_at": int(time.time()),
        }

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """Store (document_hash, document) pairs, once each; returns when they are written. Concurrent
        callers' documents go in one transaction together."""
        if items:
            self._group.submit([self.seal(h, d) for h, d in items])

    def _write_group(self, rows: list[dict[str, object]]) -> None:
        unique = list({r["document_hash"]: r for r in rows}.values())
        with writing(self.engine) as conn:
            known = set(
                conn.execute(
                    select(documents.c.document_hash).where(
                        documents.c.document_hash.in_([r["document_hash"] for r in unique])
                    )
                ).scalars()
            )
            fresh = [r for r in unique if r["document_hash"] not in known]
            if fresh:
                conn.execute(insert(documents), fresh)

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
