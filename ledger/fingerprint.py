"""Canonical JSON, HMAC fingerprint keys and their key ids, the keyring, and claim fingerprints.

Only HMAC outputs and key ids leave this module: a fingerprint names no member, provider,
code or date, and without the consortium key it cannot be reversed by trying values.

Encodings (version 1). ``JCS(x)`` is RFC 8785 JSON; every HMAC is HMAC-SHA256 under the
key's 32-byte secret, over a label that says what is keyed, a NUL, then a JSON value:

- exact key, one per claim::

      HMAC(b"claimledger/exact/v1\\x00" + JCS([member_id, billing_npi, responsibility,
           [[date_from, date_to, procedure_code, [modifiers...], units, charge_cents, place_of_service], ...]]))

  lines in canonical order, modifiers sorted, ``place_of_service`` the line's own or else
  the claim's, dates ``YYYY-MM-DD``, ``responsibility`` ``"P"``/``"S"``/``"T"``. Left out on
  purpose: payer, claim id, rendering NPI, diagnoses, birth date, frequency.
- suspect key, one per service line, in canonical line order::

      HMAC(b"claimledger/suspect/v1\\x00" + JCS([member_id, date_from, date_to, procedure_code,
           [modifiers...], responsibility]))

  Left out: provider, units, charge, place of service.
- document hash: ``HMAC(b"claimledger/document/v1\\x00" + canonical_document(claim))``.
- key id: the first 4 bytes of ``SHA-256(b"claimledger-key-id" + secret)``, big-endian, as
  an unsigned 32-bit integer (the next 4 bytes if those are zero).

JSON arrays of strings and integers cannot run into each other the way a plain
concatenation can, and the labels keep one kind of key from ever equalling another.

``orjson`` writes the same bytes as ``rfc8785`` for the documents a :class:`Claim` can make
when the output is pure ASCII (integers are at most 2**53 - 1 by the model, keys are ASCII;
``tests/unit/test_properties.py`` checks it); anything else goes through ``rfc8785``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import rfc8785
from cryptography.hazmat.primitives import hashes, hmac

from ledger.claim import Claim, ServiceLine
from ledger.errors import KeyringError

EXACT_LABEL = b"claimledger/exact/v1\x00"
SUSPECT_LABEL = b"claimledger/suspect/v1\x00"
DOCUMENT_LABEL = b"claimledger/document/v1\x00"
KEY_ID_LABEL = b"claimledger-key-id"
SECRET_BYTES = 32
KEYRING_FORMAT = "claimledger-keyring/v1"
DEFAULT_ROTATION_WINDOW_DAYS = 30
_SORT_KEYS = orjson.OPT_SORT_KEYS


# --- canonical JSON -------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """RFC 8785 JSON of ``value``.

    ``value`` holds what a :class:`Claim` holds: dicts with ASCII keys, lists and tuples, str,
    bool, None, integers within +-(2**53 - 1), dates (written ``YYYY-MM-DD``) and str enums
    (written as their value). No floats: orjson writes some of them differently.
    """
    fast = orjson.dumps(value, option=_SORT_KEYS)
    if fast.isascii():
        return fast
    # Outside the proven domain: re-read as plain JSON values and let the reference write them.
    return rfc8785.dumps(orjson.loads(fast))


def _line_object(line: ServiceLine) -> dict[str, Any]:
    return {
        "service_date_from": line.service_date_from,
        "service_date_to": line.service_date_to,
        "procedure_code": line.procedure_code,
        "modifiers": line.modifiers,
        "units": line.units,
        "charge_cents": line.charge_cents,
        "place_of_service": line.place_of_service,
        "diagnosis_pointers": line.diagnosis_pointers,
    }


def canonical_object(claim: Claim) -> dict[str, Any]:
    """The canonical document's content: every field, ``None`` where absent, lines in canonical order.

    Values are left as orjson writes them natively (dates, enums, tuples); see :func:`canonical_json`.
    """
    return {
        "claim_id": claim.claim_id,
        "frequency": claim.frequency,
        "original_claim_id": claim.original_claim_id,
        "billing_npi": claim.billing_npi,
        "rendering_npi": claim.rendering_npi,
        "payer_id": claim.payer_id,
        "responsibility": claim.responsibility,
        "member_id": claim.member_id,
        "patient_birth_date": claim.patient_birth_date,
        "place_of_service": claim.place_of_service,
        "diagnoses": claim.diagnoses,
        "service_lines": [_line_object(line) for line in claim.service_lines],
        "total_charge_cents": claim.total_charge_cents,
    }


def canonical_document(claim: Claim) -> bytes:
    """The whole normalised claim as RFC 8785 JSON: the document the document hash proves."""
    return canonical_json(canonical_object(claim))


# --- keys -----------------------------------------------------------------------------------


def derive_key_id(secret: bytes) -> int:
    """The stable, non-zero 32-bit id of a secret (see the module docstring)."""
    digest = hashlib.sha256(KEY_ID_LABEL + secret).digest()
    for start in range(0, len(digest), 4):
        key_id = int.from_bytes(digest[start : start + 4], "big")
        if key_id:
            return key_id
    raise KeyringError("a key id cannot be derived from this secret")  # 2**-256: never in practice


@dataclass(frozen=True, slots=True)
class FingerprintKey:
    """An HMAC key: a 32-byte secret and the id recorded with every fingerprint it makes."""

    key_id: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes):
            raise KeyringError(f"a fingerprint key secret is bytes, not {type(self.secret).__name__}")
        if len(self.secret) != SECRET_BYTES:
            raise KeyringError(f"a fingerprint key secret is {SECRET_BYTES} bytes, not {len(self.secret)}")
        if not 0 < self.key_id < 2**32:
            raise KeyringError(f"a key id is a non-zero 32-bit unsigned integer, not {self.key_id}")
        if self.key_id != derive_key_id(self.secret):
            raise KeyringError(f"key id {self.key_id} does not match its secret: the key is corrupt or mislabelled")

    @classmethod
    def from_secret(cls, secret: bytes) -> FingerprintKey:
        return cls(derive_key_id(secret), secret)

    @classmethod
    def generate(cls) -> FingerprintKey:
        return cls.from_secret(secrets.token_bytes(SECRET_BYTES))


@lru_cache(maxsize=64)
def _keyed_hmac(secret: bytes) -> hmac.HMAC:
    # Keying HMAC costs about as much as hashing a claim; copies of a keyed context skip it.
    return hmac.HMAC(secret, hashes.SHA256())


def _hmac(key: FingerprintKey, message: bytes) -> bytes:
    context = _keyed_hmac(key.secret).copy()
    context.update(message)
    return context.finalize()


# --- fingerprints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """What the ledger records of a claim: HMAC outputs and the id of the key that made them."""

    key_id: int
    exact_key: bytes
    line_keys: tuple[bytes, ...]
    """One suspect key per service line, in canonical line order."""
    document_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "exact_key": "0x" + self.exact_key.hex(),
            "line_keys": ["0x" + k.hex() for k in self.line_keys],
            "document_hash": "0x" + self.document_hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class _Messages:
    exact: bytes
    lines: tuple[bytes, ...]
    document: bytes


def _messages(claim: Claim) -> _Messages:
    member, responsibility = claim.member_id, claim.responsibility
    exact_lines = []
    line_messages = []
    for line in claim.service_lines:
        start, end, code, modifiers = line.service_date_from, line.service_date_to, line.procedure_code, line.modifiers
        place = line.place_of_service or claim.place_of_service
        exact_lines.append((start, end, code, modifiers, line.units, line.charge_cents, place))
        line_messages.append(SUSPECT_LABEL + canonical_json((member, start, end, code, modifiers, responsibility)))
    exact = (member, claim.billing_npi, responsibility, exact_lines)
    return _Messages(
        exact=EXACT_LABEL + canonical_json(exact),
        lines=tuple(line_messages),
        document=DOCUMENT_LABEL + canonical_document(claim),
    )


def _fingerprints(messages: _Messages, key: FingerprintKey) -> Fingerprints:
    return Fingerprints(
        key_id=key.key_id,
        exact_key=_hmac(key, messages.exact),
        line_keys=tuple(_hmac(key, m) for m in messages.lines),
        document_hash=_hmac(key, messages.document),
    )


def fingerprint(claim: Claim, key: FingerprintKey) -> Fingerprints:
    """The exact key, the suspect key of every line and the document hash of ``claim`` under ``key``."""
    return _fingerprints(_messages(claim), key)


def fingerprints_for_rotation(
    claim: Claim, keyring: Keyring, now: datetime | None = None, *, keys: Sequence[FingerprintKey] | None = None
) -> list[Fingerprints]:
    """The fingerprints of ``claim`` under every key active at ``now``, the current key first.

    During a rotation window a duplicate of a claim recorded under the previous key is found
    by looking up these fingerprints too. ``keys``: ``keyring.active_keys(now)`` already read, for a
    batch of claims (reading it costs more than a claim's fingerprints).
    """
    messages = _messages(claim)
    return [_fingerprints(messages, key) for key in (keyring.active_keys(now) if keys is None else keys)]


def document_hash(document: bytes, key: FingerprintKey) -> bytes:
    """The document hash of a canonical document someone holds (to check it against the ledger)."""
    return _hmac(key, DOCUMENT_LABEL + document)


# --- keyring --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One key in the keyring; ``retired_at`` is None for the current key."""

    key: FingerprintKey
    created_at: datetime
    retired_at: datetime | None = None
    valid_until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.retired_at is None or (self.valid_until is not None and now < self.valid_until)


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise KeyringError("keyring times are timezone-aware: pass datetime.now(UTC) or a time with its zone")
    return moment.astimezone(UTC)


def _time_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Keyring:
    """The fingerprint keys of a consortium member: one current key and those it replaced.

    A retired key stays in the file for good: it still checks the document hashes it made.
    It also still finds duplicates until its ``valid_until`` (the rotation window).
    """

    entries: tuple[KeyringEntry, ...]
    path: Path | None = None

    def __post_init__(self) -> None:
        current = [e for e in self.entries if e.retired_at is None]
        where = f" in {self.path}" if self.path else ""
        if len(current) != 1:
            raise KeyringError(f"a keyring has exactly one current key, found {len(current)}{where}")
        ids = [e.key.key_id for e in self.entries]
        if len(set(ids)) != len(ids):
            raise KeyringError(f"the keyring{where} lists a key id twice")

    @property
    def current(self) -> FingerprintKey:
        return next(e.key for e in self.entries if e.retired_at is None)

    def active_keys(self, now: datetime | None = None) -> list[FingerprintKey]:
        """The current key, then the retired keys still in their rotation window, newest first."""
        moment = _utc(now)
        retired = sorted(
            (e for e in self.entries if e.retired_at is not None and e.active(moment)),
            key=lambda e: e.created_at,
            reverse=True,
        )
        return [self.current, *(e.key for e in retired)]

    def key(self, key_id: int) -> FingerprintKey:
        """Any key of the keyring by id, retired or not (to check an old document hash)."""
        for entry in self.entries:
            if entry.key.key_id == key_id:
                return entry.key
        where = f" {self.path}" if self.path else ""
        raise KeyringError(
            f"key id {key_id} is not in the keyring{where}: it was made with a key this member does not hold",
            details={"key_id": key_id},
        )

    def rotated(self, *, window_days: int = DEFAULT_ROTATION_WINDOW_DAYS, now: datetime | None = None) -> Keyring:
        """A new keyring with a fresh current key; the old current key stays valid ``window_days`` more."""
        if window_days < 0:
            raise KeyringError(f"the rotation window is 0 days or more, not {window_days}")
        moment = _utc(now)
        entries = [
            replace(e, retired_at=moment, valid_until=moment + timedelta(days=window_days))
            if e.retired_at is None
            else e
            for e in self.entries
        ]
        entries.append(KeyringEntry(FingerprintKey.generate(), created_at=moment))
        return Keyring(tuple(entries), self.path)

    # files

    @classmethod
    def generate(cls, path: str | os.PathLike[str], *, now: datetime | None = None) -> Keyring:
        """Create a key file with one new current key. Refuses to overwrite an existing file."""
        target = Path(path)
        if target.exists():
            raise KeyringError(
                f"the key file {target} already exists: load it, or rotate it to add a key",
                details={"path": str(target)},
            )
        keyring = cls((KeyringEntry(FingerprintKey.generate(), created_at=_utc(now)),), target)
        keyring.save(target, create=True)
        return keyring

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, require_private: bool = True) -> Keyring:
        """Read a key file; it must be readable by its owner only (mode 0600) unless told otherwise."""
        source = Path(path)
        try:
            info = source.stat()
            raw = source.read_bytes()
        except FileNotFoundError:
            raise KeyringError(
                f"the key file {source} does not exist: create one with Keyring.generate or copy the "
                "consortium's key file there",
                details={"path": str(source)},
            ) from None
        except OSError as exc:
            raise KeyringError(
                f"cannot read the key file {source}: {exc.strerror}; check its owner and permissions",
                details={"path": str(source)},
            ) from None
        if require_private and os.name == "posix" and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise KeyringError(
                f"the key file {source} is open to users other than its owner (mode {mode:04o}): "
                f"run chmod 600 {source}",
                details={"path": str(source), "mode": f"{mode:04o}"},
            )
        return cls._from_document(raw, source)

    @classmethod
    def _from_document(cls, raw: bytes, source: Path) -> Keyring:
        def bad(what: str) -> KeyringError:
            return KeyringError(
                f"the key file {source} is malformed: {what}; restore it from its backup",
                details={"path": str(source)},
            )

        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"not JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise bad(f"it is not a {KEYRING_FORMAT} document")
        items = document.get("keys")
        if not isinstance(items, list) or not items:
            raise bad("it lists no keys")
        entries = []
        for index, item in enumerate(items):
            try:
                secret = bytes.fromhex(item["secret"])
                key = FingerprintKey(int(item["key_id"]), secret)
                entries.append(
                    KeyringEntry(
                        key,
                        created_at=_required_time(item["created_at"]),
                        retired_at=_parse_time(item.get("retired_at")),
                        valid_until=_parse_time(item.get("valid_until")),
                    )
                )
            except KeyringError as exc:
                raise bad(f"key {index + 1}: {exc.message}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise bad(f"key {index + 1}: missing or invalid {exc}") from None
        try:
            return cls(tuple(entries), source)
        except KeyringError as exc:
            raise bad(exc.message) from None

    def to_document(self) -> bytes:
        keys = [
            {
                "key_id": e.key.key_id,
                "secret": e.key.secret.hex(),
                "created_at": _time_text(e.created_at),
                "retired_at": _time_text(e.retired_at),
                "valid_until": _time_text(e.valid_until),
            }
            for e in self.entries
        ]
        return json.dumps({"format": KEYRING_FORMAT, "keys": keys}, indent=2).encode() + b"\n"

    def save(self, path: str | os.PathLike[str] | None = None, *, create: bool = False) -> Path:
        """Write the key file atomically with mode 0600 (a temporary file renamed over it)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise KeyringError("this keyring has no file: pass the path to save it to")
        if not create and not target.exists():
            raise KeyringError(
                f"the key file {target} does not exist: generate it first", details={"path": str(target)}
            )
        directory = target.parent
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        except OSError as exc:
            raise KeyringError(
                f"cannot write the key file {target}: {exc.strerror}", details={"path": str(target)}
            ) from None
        try:
            with os.fdopen(handle, "wb") as stream:
                os.fchmod(stream.fileno(), 0o600)
                stream.write(self.to_document())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return target

    @classmethod
    def rotate(
        cls,
        path: str | os.PathLike[str],
        *,
        window_days: int = DEFAULT_ROTATION_WINDOW_DAYS,
        now: datetime | None = None,
    ) -> Keyring:
        """Add a new current key to the key file at ``path``; the previous one stays valid ``window_days``."""
        rotated = cls.load(path).rotated(window_days=window_days, now=now)
        rotated.save(path)
        return rotated


def _parse_time(text: Any) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError("time")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} without a time zone")
    return moment.astimezone(UTC)


def _required_time(text: Any) -> datetime:
    moment = _parse_time(text)
    if moment is None:
        raise ValueError("created_at")
    return moment
