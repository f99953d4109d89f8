"""What the middleware and routes of one app share: settings, metrics, and the runtime once it is open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Scope

from api.idempotency import IdempotencyStore
from api.metrics import Metrics
from api.middleware import api_key_from, context
from api.runtime import Runtime
from api.settings import Settings
from ledger.audit import AccessLog
from ledger.consortium import KEY_LOOKUP_CHARS
from ledger.service import Member


class Gateway:
    """What the middleware and routes of one app share: settings, metrics, and the runtime once open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.runtime: Runtime | None = None
        self.idempotency: IdempotencyStore | None = None
        self.access_log: AccessLog | None = None

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.idempotency = IdempotencyStore(
            runtime.engine,
            ttl_s=self.settings.idempotency_ttl_s,
            in_flight_timeout_s=self.settings.idempotency_in_flight_timeout_s,
        )
        self.idempotency.purge()
        self.access_log = runtime.access_log

    def detach(self) -> None:
        self.runtime = None
        self.idempotency = None
        self.access_log = None

    def authenticate_scope(self, scope: Scope, headers: Headers | None = None) -> Member | None:
        """The member the request's API key acts for (looked up once per request), or None."""
        ctx = context(scope)
        if ctx.authenticated:
            return ctx.member
        key = api_key_from(headers or Headers(scope=scope))
        runtime = self.runtime
        if key is not None and runtime is not None:
            ctx.member = runtime.consortium.authenticate(key)
            if ctx.member is not None:
                ctx.key_prefix = key[:KEY_LOOKUP_CHARS]
        ctx.authenticated = True
        return ctx.member

    def record_access(self, fields: dict[str, Any], claims: Sequence[str | None]) -> None:
        """ACCESS LOG CALL SITE: one hash-chained entry per claim the request read or changed."""
        access_log = self.access_log
        if access_log is None:
            return
        try:
            access_log.record(list(claims), **fields)
        except Exception:  # noqa: BLE001 - another writer moved the head: the log re-reads it, once
            access_log.record(list(claims), **fields)
