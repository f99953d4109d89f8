"""The gateway's two ASGI layers around the routes.

- :class:`ObservabilityMiddleware` (outermost): a request id on every request and answer,
  one answer for any unhandled failure (500 without internals), request metrics, and the
  access audit log entry of every request that reads or changes a claim, written before
  the answer's last byte leaves.
- :class:`RequestGuardMiddleware`: the body size limit, enforced before anything parses
  the body (413), and Idempotency-Key on every POST (see ``api.idempotency``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body, internal_body
from api.idempotency import MAX_KEY_LENGTH, SavedResponse, request_hash
from ledger.service import Member

if TYPE_CHECKING:
    from api.gateway import Gateway

log = logging.getLogger("claimledger.api")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
SAVED_HEADERS = ("content-type", "location")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IMPORT_PREFIX = "/v1/imports/"  # files (X12, FHIR) may be larger than a JSON body: settings.max_import_bytes
UNAUDITED_PREFIXES = ("/v1/admin", "/v1/me")
# Request ids: this process's random prefix and a counter (unique across processes and restarts without
# a uuid4 per request, whose os.urandom lets go of the GIL and waits behind the gateway's threads for it).
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_REQUEST_COUNTER = itertools.count(1)


@dataclass
class RequestContext:
    """What the layers and the routes share about one request (in ``scope["state"]["ctx"]``)."""

    request_id: str
    member: Member | None = None
    key_prefix: str | None = None
    authenticated: bool = False
    claims: list[str] = field(default_factory=list)
    """Ledger refs this request read or changed (set by the routes), for the access log."""


def context(scope: Scope) -> RequestContext:
    ctx: RequestContext = scope["state"]["ctx"]
    return ctx


def api_key_from(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID.fullmatch(given) else f"{_REQUEST_ID_PREFIX}{next(_REQUEST_COUNTER):016x}"
        scope.setdefault("state", {})
        ctx = RequestContext(request_id)
        scope["state"]["ctx"] = ctx
        scope["state"]["request_id"] = request_id
        status = 500
        response_started = False
        audited = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started, audited
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not audited:
                audited = True
                await self._audit(scope, ctx, status)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("request %s (%s %s) failed", request_id, scope.get("method"), scope.get("path"))
            if response_started:
                raise
            status = 500
            await _send_json(send_wrapper, 500, internal_body(request_id))
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.gateway.metrics.observe_request(scope.get("method", ""), route, status, time.perf_counter() - started)

    async def _audit(self, scope: Scope, ctx: RequestContext, status: int) -> None:
        path: str = scope.get("path", "")
        if not path.startswith("/v1/") or path.startswith(UNAUDITED_PREFIXES) or self.gateway.access_log is None:
            return
        route = scope.get("route")
        action = str(getattr(route, "unique_id", None) or getattr(route, "name", None) or "unmatched")[:64]
        ref = (scope.get("path_params") or {}).get("ref")
        claims: list[str | None] = [*ctx.claims] if ctx.claims else [ref if ref else None]
        member = ctx.member
        fields = {
            "actor": f"key:{ctx.key_prefix}" if ctx.key_prefix else "anonymous",
            "org": member.name if member else "-",
            "role": member.role if member else "-",
            "action": action,
            "request_id": ctx.request_id,
            "outcome": str(status),
        }
        try:
            await self.gateway.record_access_async(fields, claims)
        except Exception:  # the answer is already decided; the failure must be loud
            log.exception("ACCESS LOG: could not record request %s", ctx.request_id)


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        settings = self.gateway.settings
        limit = settings.max_import_bytes if scope["path"].startswith(IMPORT_PREFIX) else settings.max_body_bytes
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, _too_large(limit))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, _too_large(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        key = headers.get("idempotency-key")
        if scope["method"] != "POST" or key is None:
            await self.app(scope, replay_receive, send)
            return
        await self._idempotent(scope, replay_receive, send, headers, key, body)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, key: str, body: bytes
    ) -> None:
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            await _send_json(
                send,
                422,
                error_body(
                    "request_invalid",
                    f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (a UUID is typical)",
                    {
                        "problems": [
                            {
                                "field": "header.Idempotency-Key",
                                "value": key[:80],
                                "rule": "format",
                                "message": "not a valid Idempotency-Key",
                            }
                        ]
                    },
                ),
            )
            return
        member = await self.gateway.authenticate(scope, headers)
        store = self.gateway.idempotency
        if member is None or store is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        query = scope.get("query_string", b"").decode("latin-1")
        fingerprint = request_hash(scope["method"], scope["path"], query, body)
        claimed = await anyio.to_thread.run_sync(store.begin, member.name, key, fingerprint)
        if claimed.outcome == "reused":
            await _send_json(
                send,
                422,
                error_body(
                    "idempotency_key_reused",
                    f"Idempotency-Key {key!r} was used for another request: use a new key for a new request",
                    {"idempotency_key": key},
                ),
            )
            return
        if claimed.outcome == "in_flight":
            await _send_json(
                send,
                409,
                error_body(
                    "idempotency_in_flight",
                    f"the request with Idempotency-Key {key!r} is still being processed: retry after it answers",
                    {"idempotency_key": key},
                ),
                {"Retry-After": "1"},
            )
            return
        if claimed.outcome == "replay":
            saved = claimed.saved
            assert saved is not None
            header_list = [(k.encode(), v.encode()) for k, v in saved.headers.items()]
            header_list += [(b"content-length", str(len(saved.body)).encode()), (b"idempotent-replayed", b"true")]
            await send({"type": "http.response.start", "status": saved.status_code, "headers": header_list})
            await send({"type": "http.response.body", "body": saved.body, "more_body": False})
            return

        status = 500
        kept: dict[str, str] = {}
        parts: list[bytes] = []
        finished = False

        async def capture(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    lowered = name.decode("latin-1").lower()
                    if lowered in SAVED_HEADERS:
                        kept[lowered] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body", False) and not finished:
                    finished = True
                    # Saved before the client sees the end of the answer, so a retry can only replay it.
                    if status < 500:
                        saved = SavedResponse(status, kept, b"".join(parts))
                        await anyio.to_thread.run_sync(store.finish, member.name, key, saved)
                    else:
                        await anyio.to_thread.run_sync(store.release, member.name, key)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            if not finished:
                await anyio.to_thread.run_sync(store.release, member.name, key)
            raise


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(
        "body_too_large",
        f"the request body is larger than this gateway takes ({limit} bytes): send fewer claims per batch",
        {"max_body_bytes": limit},
    )
