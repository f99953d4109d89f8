"""What the middleware and routes of one app share: settings, metrics, and the runtime once it is open."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import Scope

from api.idempotency import IdempotencyStore
from api.metrics import Metrics
from api.middleware import api_key_from, context
from api.runtime import KEYS_CHANGED_FILE, Runtime
from api.settings import Settings
from ledger.audit import AccessLog
from ledger.consortium import KEY_LOOKUP_CHARS, hash_key
from ledger.service import Member

T = TypeVar("T")
MAX_CACHED_KEYS = 10_000
READ_THREADS = 4
"""Worker threads for the frequent reads of the store (claim listings, a claim, its history), all sharing one
GIL. In AnyIO's default pool of 40, 64 clients listing claims kept 40 threads contending for it: 59% of the
process's CPU was the kernel switching them (perf), 114 requests a second; 187 with 8 threads, 198 with 4,
275 with 2. The endpoints that wait on the chain (payer steps, void, replace) keep the default pool: they
wait rather than compute, and a block can take seconds."""
BATCH_CHECK_THREADS = 2
"""Claim batches checked at once, each in a worker thread; the others wait their turn on the event loop.
Checking is pure CPU under one GIL: more threads at it only compete with the threads that send
transactions and read receipts."""


class Gateway:
    """What the middleware and routes of one app share: settings, metrics, and the runtime once open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.runtime: Runtime | None = None
        self.idempotency: IdempotencyStore | None = None
        self.access_log: AccessLog | None = None
        self.batch_checks: anyio.CapacityLimiter | None = None
        self.reads: anyio.CapacityLimiter | None = None
        # API keys recently found good: sha256(key) -> (member, when checked). Forgotten on revocation
        # here or by a change of KEYS_CHANGED_FILE; any entry is checked again after settings.auth_cache_s.
        self._keys: dict[str, tuple[Member, float]] = {}
        self._keys_lock = threading.Lock()
        self._keys_generation = 0
        self._keys_marker_path = str(settings.data_dir / KEYS_CHANGED_FILE)
        self._keys_marker: tuple[int, int] | None = self._marker()

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.idempotency = IdempotencyStore(
            runtime.engine,
            ttl_s=self.settings.idempotency_ttl_s,
            in_flight_timeout_s=self.settings.idempotency_in_flight_timeout_s,
        )
        self.idempotency.purge()
        self.access_log = runtime.access_log
        self.batch_checks = anyio.CapacityLimiter(BATCH_CHECK_THREADS)  # attach() runs on the serving loop
        self.reads = anyio.CapacityLimiter(READ_THREADS)
        self.forget_keys()

    async def read(self, read: Callable[[], T]) -> T:
        """``read()`` (a blocking read of the store) in one of READ_THREADS worker threads."""
        assert self.reads is not None, "attach() the gateway first"
        return await anyio.to_thread.run_sync(read, limiter=self.reads)

    def detach(self) -> None:
        self.runtime = None
        self.idempotency = None
        self.access_log = None
        self.forget_keys()

    # ------------------------------------------------------------------ authentication

    def forget_keys(self) -> None:
        """Check every API key against the store again (after a key was revoked)."""
        with self._keys_lock:
            self._keys.clear()
            self._keys_generation += 1

    def _marker(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._keys_marker_path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _cached_member(self, key: str) -> Member | None:
        """The member of a key found good within auth_cache_s and not revoked since; None: ask the store."""
        marker = self._marker()
        if marker != self._keys_marker:
            self._keys_marker = marker
            self.forget_keys()
            return None
        cached = self._keys.get(hash_key(key))
        if cached is None or time.monotonic() - cached[1] >= self.settings.auth_cache_s:
            return None
        return cached[0]

    def member_for_key(self, key: str) -> Member | None:
        """The member an API key acts for, or None (unknown or revoked); blocks on the store unless cached."""
        cached = self._cached_member(key)
        if cached is not None:
            return cached
        runtime = self.runtime
        if runtime is None:
            return None
        generation, checked = self._keys_generation, time.monotonic()
        member = runtime.consortium.authenticate(key)
        digest = hash_key(key)
        with self._keys_lock:
            if member is None:
                self._keys.pop(digest, None)
            elif generation == self._keys_generation and self.settings.auth_cache_s > 0:
                if len(self._keys) >= MAX_CACHED_KEYS:
                    self._keys.clear()
                self._keys[digest] = (member, checked)
        return member

    def authenticate_scope(self, scope: Scope, headers: Headers | None = None) -> Member | None:
        """The member the request's API key acts for (looked up once per request), or None."""
        ctx = context(scope)
        if ctx.authenticated:
            return ctx.member
        key = api_key_from(headers or Headers(scope=scope))
        if key is not None and self.runtime is not None:
            ctx.member = self.member_for_key(key)
            if ctx.member is not None:
                ctx.key_prefix = key[:KEY_LOOKUP_CHARS]
        ctx.authenticated = True
        return ctx.member

    async def authenticate(self, scope: Scope, headers: Headers | None = None) -> Member | None:
        """:meth:`authenticate_scope` on the event loop: a worker thread only when the store is asked."""
        ctx = context(scope)
        if ctx.authenticated:
            return ctx.member
        headers = headers or Headers(scope=scope)
        key = api_key_from(headers)
        cached = self._cached_member(key) if key is not None and self.runtime is not None else None
        if cached is None:
            return await anyio.to_thread.run_sync(self.authenticate_scope, scope, headers)
        assert key is not None
        ctx.member, ctx.key_prefix, ctx.authenticated = cached, key[:KEY_LOOKUP_CHARS], True
        return cached

    # ------------------------------------------------------------------ access log

    def record_access(self, fields: dict[str, Any], claims: Sequence[str | None]) -> None:
        """ACCESS LOG CALL SITE: one hash-chained entry per claim the request read or changed."""
        access_log = self.access_log
        if access_log is None:
            return
        try:
            access_log.record(list(claims), **fields)
        except Exception:  # noqa: BLE001 - another writer moved the head: the log re-reads it, once
            access_log.record(list(claims), **fields)

    async def record_access_async(self, fields: dict[str, Any], claims: Sequence[str | None]) -> None:
        """:meth:`record_access` on the event loop: it waits for the log's writer without holding a thread."""
        access_log = self.access_log
        if access_log is None:
            return
        try:
            await asyncio.wrap_future(access_log.record_future(list(claims), **fields))
        except Exception:  # noqa: BLE001 - another writer moved the head: the log re-reads it, once
            await asyncio.wrap_future(access_log.record_future(list(claims), **fields))
