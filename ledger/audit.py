"""The access audit log (HIPAA 164.312(b)): who read or changed which claim, hash-chained.

Each entry's hash covers the previous entry's hash and its own fields, so altering,
removing or reordering an entry breaks the chain from that entry on; :meth:`AccessLog.verify`
names the first broken position. The table refuses updates and deletes (triggers), and the
head hash is anchored on chain at intervals so the log cannot be rewritten wholesale.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, func, insert, select

from ledger.errors import StoreError
from ledger.store import GroupCommit, access_log, audit_anchors, bulk, writing

GENESIS = "0" * 64
VERIFY_PAGE = 5_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: int
    actor: str
    org: str
    role: str
    action: str
    claim: str | None
    request_id: str
    outcome: str
    prev_hash: str
    entry_hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    entries: int
    head: str
    first_broken: int | None = None
    reason: str | None = None


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


_COLUMNS = ("seq", "at", "actor", "org", "role", "action", "claim", "request_id", "outcome", "prev_hash", "entry_hash")
_INSERT_ENTRY = f"INSERT INTO access_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def _row(e: AuditEntry) -> tuple[Any, ...]:
    return (e.seq, e.at, e.actor, e.org, e.role, e.action, e.claim, e.request_id, e.outcome, e.prev_hash, e.entry_hash)


def _fields(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("seq", "at", "actor", "org", "role", "action", "claim", "request_id", "outcome")}


class AccessLog:
    """Append-only, hash-chained log of claim access in the SQL store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None
        self._group: GroupCommit[dict[str, Any]] = GroupCommit(self._write_group, name="access-log-writer")

    def head(self) -> tuple[int, str]:
        """(entries so far, hash of the last one)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(access_log.c.seq, access_log.c.entry_hash).order_by(access_log.c.seq.desc())
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def append(
        self,
        *,
        actor: str,
        org: str,
        role: str,
        action: str,
        claim: str | None,
        request_id: str,
        outcome: str,
        at: int | None = None,
    ) -> AuditEntry:
        fields = {"actor": actor, "org": org, "role": role, "action": action, "request_id": request_id}
        return self.append_many([claim], outcome=outcome, at=at, **fields)[0]

    def append_many(
        self,
        claims: Sequence[str | None],
        *,
        actor: str,
        org: str,
        role: str,
        action: str,
        request_id: str,
        outcome: str,
        at: int | None = None,
    ) -> list[AuditEntry]:
        """One entry per claim a request touched, chained and written in one transaction."""
        when = int(time.time()) if at is None else at
        common = {"at": when, "actor": actor, "org": org, "role": role, "action": action}
        return self._chain_and_write(
            [{**common, "claim": claim, "request_id": request_id, "outcome": outcome} for claim in claims]
        )

    def record(
        self,
        claims: Sequence[str | None],
        *,
        actor: str,
        org: str,
        role: str,
        action: str,
        request_id: str,
        outcome: str,
        at: int | None = None,
    ) -> None:
        """Like :meth:`append_many`, for many concurrent requests: the entries of every request
        waiting at that moment are chained and written in one transaction (a group commit); each
        request's entries stay together, and it returns once they are written."""
        fields = {"actor": actor, "org": org, "role": role, "action": action, "request_id": request_id}
        self.record_future(claims, outcome=outcome, at=at, **fields).result()

    def record_future(
        self,
        claims: Sequence[str | None],
        *,
        actor: str,
        org: str,
        role: str,
        action: str,
        request_id: str,
        outcome: str,
        at: int | None = None,
    ) -> Future[None]:
        """:meth:`record` without waiting: the future is done once the entries are written."""
        when = int(time.time()) if at is None else at
        common = {"at": when, "actor": actor, "org": org, "role": role, "action": action}
        return self._group.submit_future(
            [{**common, "claim": claim, "request_id": request_id, "outcome": outcome} for claim in claims]
        )

    def _write_group(self, pending: list[dict[str, Any]]) -> None:
        self._chain_and_write(pending)

    def _chain_and_write(self, pending: list[dict[str, Any]]) -> list[AuditEntry]:
        """Number and hash-chain entries (their fields but seq) after the head, and write them."""
        with self._lock:
            seq, prev = self._head if self._head is not None else self.head()
            entries: list[AuditEntry] = []
            for entry in pending:
                fields = {"seq": seq + 1, **entry}
                digest = entry_hash(prev, fields)
                entries.append(AuditEntry(**fields, prev_hash=prev, entry_hash=digest))
                seq, prev = seq + 1, digest
            try:
                if entries:
                    with writing(self.engine) as conn:
                        bulk(conn, _INSERT_ENTRY, [_row(e) for e in entries])
            except Exception:
                self._head = None  # another writer may have appended: read the head again next time
                raise
            self._head = (seq, prev)
            return entries

    def entries(self, *, after: int = 0, limit: int = 1000, claim: str | None = None) -> list[AuditEntry]:
        q = select(access_log).where(access_log.c.seq > after).order_by(access_log.c.seq).limit(limit)
        if claim is not None:
            q = q.where(access_log.c.claim == claim)
        with self.engine.connect() as conn:
            return [AuditEntry(**dict(r)) for r in conn.execute(q).mappings()]

    def _all(self) -> Iterator[Any]:
        after = 0
        while True:
            with self.engine.connect() as conn:
                rows = (
                    conn.execute(
                        select(access_log).where(access_log.c.seq > after).order_by(access_log.c.seq).limit(VERIFY_PAGE)
                    )
                    .mappings()
                    .all()
                )
            if not rows:
                return
            yield from rows
            after = int(rows[-1]["seq"])

    def verify(self) -> AuditVerification:
        """Recompute the chain; the first entry whose hash or link does not hold is reported."""
        prev, expected_seq, count = GENESIS, 1, 0
        for row in self._all():
            seq = int(row["seq"])
            if seq != expected_seq:
                return AuditVerification(False, count, prev, expected_seq, f"entry {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return AuditVerification(False, count, prev, seq, f"entry {seq} does not link to entry {seq - 1}")
            if entry_hash(prev, _fields(row)) != row["entry_hash"]:
                return AuditVerification(False, count, prev, seq, f"entry {seq} was altered: its hash does not match")
            prev, expected_seq, count = row["entry_hash"], seq + 1, count + 1
        return AuditVerification(True, count, prev)

    def anchor(self, contract: Any, account: Any) -> dict[str, Any] | None:
        """Write the head hash on chain (anchorAuditLog); None if nothing new since the last anchor."""
        seq, head = self.head()
        if seq == 0:
            return None
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(audit_anchors.c.seq))).scalar()
        if last is not None and int(last) >= seq:
            return None
        outcome = contract.transact("anchorAuditLog", bytes.fromhex(head), seq, sender=account)
        row = {
            "seq": seq,
            "head": head,
            "tx_hash": "0x" + outcome.transaction_hash.hex(),
            "block_number": outcome.block_number,
        }
        with writing(self.engine) as conn:
            conn.execute(insert(audit_anchors).values(**row))
        return row

    def anchors(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(audit_anchors).order_by(audit_anchors.c.seq)).mappings()]

    def check_anchor(self, anchor: dict[str, Any]) -> bool:
        """Whether the log still holds, at the anchored position, the hash written on chain."""
        with self.engine.connect() as conn:
            row = conn.execute(select(access_log.c.entry_hash).where(access_log.c.seq == anchor["seq"])).first()
        if row is None:
            raise StoreError(f"the access log has no entry {anchor['seq']}, though it was anchored on chain")
        return bool(row[0] == anchor["head"])
