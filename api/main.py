"""Builds the gateway app: ``create_app(settings)``.

The lifespan opens the runtime (starts the embedded node if no RPC URL is set, deploys once,
opens the store and keys), creates the demo consortium on first run and prints its API keys,
starts the background indexer, and on shutdown stops all of it.

Run it with ``claimledger serve`` or ``uvicorn --factory api.main:create_app``.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from api import errors
from api.fast_path import SingleClaimFastPath
from api.gateway import Gateway
from api.middleware import ObservabilityMiddleware, RequestGuardMiddleware
from api.routes import admin, audit, claims, health, imports, payer
from api.runtime import Runtime
from api.schemas import CLAIM_EXAMPLE
from api.settings import Settings
from ledger.claim import Claim
from ledger.codesets import icd10cm
from ledger.consortium import IssuedKey

log = logging.getLogger("claimledger")

API_VERSION = "1.0.0"
TAGS = [
    {"name": "claims", "description": "Providers post, read, void and replace claims."},
    {"name": "payer", "description": "Payers see the claims addressed to them, acknowledge, adjudicate and pay."},
    {
        "name": "formats",
        "description": "X12 837P/837I and FHIR R4 Claim files in, 835 payment posting, FHIR ClaimResponse out.",
    },
    {"name": "audit", "description": "History, verification, reports and the access audit log."},
    {"name": "admin", "description": "The consortium operator: organisations and API keys."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]


def print_first_run_keys(keys: Sequence[IssuedKey], out: Any = None) -> None:
    out = out or sys.stdout
    print("", file=out)
    print("ClaimLedger demo consortium created. API keys (shown this once, stored only hashed):", file=out)
    for key in keys:
        print(f"  {key.organisation:<12} {key.key}", file=out)
    print("Use one as `Authorization: Bearer <key>`.", file=out)
    print("", file=out, flush=True)


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await anyio.to_thread.run_sync(lambda: Runtime.open(settings, serve=True))
        try:
            if settings.demo_consortium:
                keys = await anyio.to_thread.run_sync(runtime.create_demo_consortium)
                if keys:
                    print_first_run_keys(keys)
            gateway.attach(runtime)
            await anyio.to_thread.run_sync(icd10cm)  # the code set, loaded once before the first claim
            # Whatever start-up made lives as long as the process: out of the collector's way, so that
            # a full collection does not walk it (a pause in every request in flight).
            gc.collect()
            gc.freeze()
            runtime.start_indexer()
            log.info("ClaimLedger gateway ready: contract %s on %s", runtime.contract.address, runtime.rpc_url)
            yield
        finally:
            gateway.detach()
            await anyio.to_thread.run_sync(runtime.close)

    app = FastAPI(
        title="ClaimLedger gateway",
        version=API_VERSION,
        summary="A permissioned ledger of medical claims: exact duplicates refused, suspects flagged, one lifecycle.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.gateway = gateway
    errors.install(app, retry_after_s=settings.retry_after_s)
    app.add_middleware(SingleClaimFastPath, gateway=gateway)  # innermost: inside the guard and the access log
    app.add_middleware(RequestGuardMiddleware, gateway=gateway)
    app.add_middleware(ObservabilityMiddleware, gateway=gateway)  # added last: outermost
    for module in (claims, payer, imports, audit, admin, health):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            # The claim document is taken as JSON and parsed by the ledger (its own normal form and
            # problem list); its schema is the ledger's model, with an example.
            _, defs = models_json_schema([(Claim, "validation")], ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.get("$defs", {}))
            components["Claim"]["examples"] = [CLAIM_EXAMPLE]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
