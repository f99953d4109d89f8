"""Liveness (``/healthz``), readiness (``/readyz``: node and database) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from api.deps import GatewayDep
from api.metrics import CONTENT_TYPE
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:  # no worker-thread hop for a liveness probe
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The node and the database answer",
    responses={503: {"model": Health, "description": "The node or the database does not answer."}},
)
def readyz(gateway: GatewayDep) -> Health | JSONResponse:
    runtime = gateway.runtime
    checks: dict[str, str] = {}
    if runtime is None:
        checks["gateway"] = "starting or stopping"
    else:
        checks["node"] = "ok" if runtime.service.rpc.answers() else f"no answer from {runtime.rpc_url}"
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()) and checks:
        return Health(status="ok", checks=checks)
    body = Health(status="unavailable", checks=checks).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(gateway.settings.retry_after_s)})


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text exposition 0.0.4)")
def metrics(gateway: GatewayDep) -> PlainTextResponse:
    return PlainTextResponse(gateway.metrics.render(), media_type=CONTENT_TYPE)
