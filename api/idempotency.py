"""Idempotency-Key: a POST sent again with the same key gets the first answer, not a second action.

Stored per organisation and key: a hash of the request (method, path, query, body), the
request's state (``in_flight`` while it runs, then ``done``) and the saved response. A
replay returns the saved status and body; the same key with another request is refused
(422 ``idempotency_key_reused``); a key whose first request still runs is refused (409
``idempotency_in_flight``). Server errors (5xx) are not saved: the key is released so the
client's retry runs the request again (nothing was accepted).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ledger.store import metadata, writing

MAX_KEY_LENGTH = 255

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("organisation", String(32), primary_key=True),
    Column("key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer),
    Column("headers", Text),
    Column("body", LargeBinary),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class SavedResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claimed:
    """What :meth:`IdempotencyStore.begin` found: ``new`` (run it), ``replay``, ``reused`` or ``in_flight``."""

    outcome: Literal["new", "replay", "reused", "in_flight"]
    saved: SavedResponse | None = None


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(part + b"\x00")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyStore:
    def __init__(self, engine: Engine, *, ttl_s: int, in_flight_timeout_s: int) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.in_flight_timeout_s = in_flight_timeout_s

    def begin(self, organisation: str, key: str, fingerprint: str) -> Claimed:
        now = int(time.time())
        for _ in range(2):
            try:
                with writing(self.engine) as conn:
                    conn.execute(
                        insert(idempotency_keys).values(
                            organisation=organisation,
                            key=key,
                            request_hash=fingerprint,
                            state="in_flight",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return Claimed("new")
            except IntegrityError:
                pass
            with writing(self.engine) as conn:
                row = conn.execute(
                    select(idempotency_keys).where(
                        idempotency_keys.c.organisation == organisation, idempotency_keys.c.key == key
                    )
                ).first()
                if row is None:
                    continue  # released between our insert and read: try again
                expired = row.created_at < now - self.ttl_s
                abandoned = row.state == "in_flight" and row.updated_at < now - self.in_flight_timeout_s
                if expired or abandoned:
                    taken = conn.execute(
                        update(idempotency_keys)
                        .where(
                            idempotency_keys.c.organisation == organisation,
                            idempotency_keys.c.key == key,
                            idempotency_keys.c.updated_at == row.updated_at,
                        )
                        .values(
                            request_hash=fingerprint,
                            state="in_flight",
                            status_code=None,
                            headers=None,
                            body=None,
                            created_at=now,
                            updated_at=now,
                        )
                    ).rowcount
                    if taken:
                        return Claimed("new")
                    continue
            if row.request_hash != fingerprint:
                return Claimed("reused")
            if row.state != "done":
                return Claimed("in_flight")
            return Claimed(
                "replay", SavedResponse(int(row.status_code), json.loads(row.headers or "{}"), bytes(row.body or b""))
            )
        return Claimed("in_flight")

    def finish(self, organisation: str, key: str, response: SavedResponse) -> None:
        with writing(self.engine) as conn:
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.organisation == organisation, idempotency_keys.c.key == key)
                .values(
                    state="done",
                    status_code=response.status_code,
                    headers=json.dumps(response.headers),
                    body=response.body,
                    updated_at=int(time.time()),
                )
            )

    def release(self, organisation: str, key: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.organisation == organisation,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.state == "in_flight",
                )
            )

    def purge(self) -> int:
        """Forget keys older than the retention period."""
        cutoff = int(time.time()) - self.ttl_s
        with writing(self.engine) as conn:
            return int(
                conn.execute(
                    delete(idempotency_keys).where(
                        idempotency_keys.c.created_at < cutoff, idempotency_keys.c.state == "done"
                    )
                ).rowcount
            )
