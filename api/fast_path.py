"""The single-claim POST answered below FastAPI's router, for the plain case.

``POST /v1/claims`` is the gateway's busiest endpoint, and FastAPI's routing, dependency resolution and
response model cost a good part of the event loop's CPU a claim (measured per recorded claim from /proc
and /metrics, 12,000 single POSTs: 573-647 us with this path, 663-908 without). Since 64 clients
with one claim each in flight move together a block at a time, the loop's work for all of them and the
chain's round trip come one after the other, and that CPU is latency.

:class:`SingleClaimFastPath` takes only the plain case: the gateway is up, the body is one JSON object,
and the API key is a provider's. It then does what the FastAPI route does, through the same
:func:`api.routes.claims.answer_single_claim`, and answers errors through the same functions as the
app's exception handlers. Everything else (no key, another role, a body that is not a JSON object,
the gateway starting) goes on to the FastAPI route, which stays the documented endpoint (OpenAPI) and
gives those answers. It sits inside the request guard (body limit, idempotency) and the observability
middleware (request id, access log, metrics), so both see its requests as the route's.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_body, ledger_error_parts
from api.gateway import Gateway
from api.middleware import context
from api.routes import claims
from api.runtime import Runtime
from ledger.errors import LedgerError
from ledger.service import Member

PATH = "/v1/claims"


def _route(app: Any) -> APIRoute:
    """The FastAPI route this path stands in for, with the id the app gives it (its path and id name the
    request in metrics and the access log, as they do the route's own requests)."""
    for route in claims.router.routes:
        if isinstance(route, APIRoute) and route.path == PATH and "POST" in (route.methods or ()):
            served = copy.copy(route)
            served.unique_id = app.router.generate_unique_id_function(route)
            return served
    raise LookupError(f"no POST {PATH} route in api.routes.claims")


class SingleClaimFastPath:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        message = await receive()  # the request guard hands the whole body over in one message
        taken = False

        async def replay() -> Message:
            nonlocal taken
            if not taken:
                taken = True
                return message
            return await receive()

        plain = await self._plain_claim(scope, message)
        if plain is None:
            await self.app(scope, replay, send)
            return
        runtime, member, claim = plain
        if self.route is None:
            self.route = _route(scope["app"])
        scope["route"] = self.route
        ctx = context(scope)
        response = Response()
        headers: dict[str, str] = {}
        try:
            result = await claims.answer_single_claim(runtime, member, self.gateway, ctx, claim, response)
        except ApiError as exc:
            status, body, headers = exc.status_code, error_body(exc.code, exc.message, exc.details), exc.headers
        except LedgerError as exc:
            status, body, headers = ledger_error_parts(exc, ctx.request_id, runtime.settings.retry_after_s)
        else:
            status, body = response.status_code, result.model_dump(mode="json")
            if "location" in response.headers:
                headers = {"location": response.headers["location"]}
        await _send(send, status, body, headers)

    async def _plain_claim(self, scope: Scope, message: Message) -> tuple[Runtime, Member, dict[str, Any]] | None:
        """The runtime, the provider and the claim document, if this request is the plain case; else None (the
        FastAPI route answers it)."""
        headers = Headers(scope=scope)
        runtime = self.gateway.runtime
        if (
            runtime is None
            or message.get("type") != "http.request"
            or message.get("more_body", False)
            or not headers.get("content-type", "").startswith("application/json")
        ):
            return None
        member = await self.gateway.authenticate(scope, headers)
        if member is None or member.role != "provider":
            return None
        try:
            claim = orjson.loads(message.get("body", b""))
        except orjson.JSONDecodeError:
            return None
        return (runtime, member, claim) if isinstance(claim, dict) else None


async def _send(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    content = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content, "more_body": False})
