"""The single-claim POST's fast path (api.fast_path) answers the plain case as the FastAPI route would, and
leaves every other case to the route: the same request answered both ways, compared."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.fast_path import SingleClaimFastPath
from tests.api.conftest import LiveGateway, fresh_claim
from tests.api.helpers import error_of, submit


class Recorder:
    """The app behind the fast path, noting the requests that reached it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def _fast_path(app: Any) -> SingleClaimFastPath:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, SingleClaimFastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, SingleClaimFastPath), "the app has no single-claim fast path"
    return layer


@pytest.fixture
def fast(
    gateway: LiveGateway, clients: dict[str | None, httpx.Client]
) -> Iterator[tuple[SingleClaimFastPath, Recorder]]:
    clients[None].get("/healthz")  # the middleware stack is built on the first request
    path = _fast_path(gateway.app)
    inner = path.app
    recorder = Recorder(inner)
    path.app = recorder
    try:
        yield path, recorder
    finally:
        path.app = inner


def _by_route(path: SingleClaimFastPath, monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the fast path takes nothing: the FastAPI route answers every single-claim POST."""

    async def never(*_: Any) -> None:
        return None

    monkeypatch.setattr(path, "_plain_claim", never)


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    """An answer with what differs from claim to claim left out (keys, hashes, block, tx, claim id)."""
    varying = {"claim_id", "ref", "exact_key", "document_hash", "tx_hash", "block_number", "version"}
    return {k: v for k, v in body.items() if k not in varying}


def test_the_plain_case_is_answered_by_the_fast_path_as_by_the_route(
    fast: tuple[SingleClaimFastPath, Recorder],
    clients: dict[str | None, httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, recorder = fast
    provider = clients["PROV-A"]

    recorded = provider.post("/v1/claims", json=fresh_claim())
    duplicate_claim = fresh_claim()
    submit(provider, duplicate_claim)
    duplicate = provider.post("/v1/claims", json=duplicate_claim)
    invalid = provider.post("/v1/claims", json=fresh_claim(billing_npi="1234567890", claim_id="FAST-INVALID"))
    assert ("POST", "/v1/claims") not in recorder.seen  # all four answered by the fast path

    _by_route(path, monkeypatch)
    recorded_by_route = provider.post("/v1/claims", json=fresh_claim())
    duplicate_by_route = provider.post("/v1/claims", json=duplicate_claim)
    invalid_by_route = provider.post("/v1/claims", json=fresh_claim(billing_npi="1234567890", claim_id="FAST-INVALID"))
    assert recorder.seen.count(("POST", "/v1/claims")) == 3

    assert recorded.status_code == recorded_by_route.status_code == 201
    assert recorded.headers["content-type"] == recorded_by_route.headers["content-type"] == "application/json"
    assert recorded.headers["location"] == f"/v1/claims/{recorded.json()['ref']}"
    assert _without_ids(recorded.json()) == _without_ids(recorded_by_route.json())
    assert list(recorded.json()) == list(recorded_by_route.json())  # the same fields, in the same order

    assert duplicate.status_code == duplicate_by_route.status_code == 409
    assert error_of(duplicate) == error_of(duplicate_by_route)
    assert error_of(duplicate)["code"] == "exact_duplicate"

    assert invalid.status_code == invalid_by_route.status_code == 422
    assert error_of(invalid) == error_of(invalid_by_route)
    assert error_of(invalid)["code"] == "claim_invalid"


def test_every_other_case_goes_on_to_the_route(
    fast: tuple[SingleClaimFastPath, Recorder], clients: dict[str | None, httpx.Client]
) -> None:
    _, recorder = fast
    document = fresh_claim()
    answers = {
        "no key": clients[None].post("/v1/claims", json=document),
        "a payer's key": clients["PAYER-ACME"].post("/v1/claims", json=document),
        "an auditor's key": clients["AUDIT-1"].post("/v1/claims", json=document),
        "a JSON list": clients["PROV-A"].post("/v1/claims", json=[document]),
        "not JSON": clients["PROV-A"].post(
            "/v1/claims", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
    }
    assert recorder.seen.count(("POST", "/v1/claims")) == len(answers)  # none taken by the fast path
    assert answers["no key"].status_code == 401 and error_of(answers["no key"])["code"] == "unauthenticated"
    for who in ("a payer's key", "an auditor's key"):
        assert answers[who].status_code == 403 and error_of(answers[who])["code"] == "role_not_allowed"
    for what in ("a JSON list", "not JSON"):
        assert answers[what].status_code == 422 and error_of(answers[what])["code"] == "request_invalid"
    # and the claim itself was never recorded by any of them
    assert clients["PROV-A"].post("/v1/claims", json=document).status_code == 201


def test_the_fast_path_is_inside_the_idempotency_guard_metrics_and_access_log(
    fast: tuple[SingleClaimFastPath, Recorder], clients: dict[str | None, httpx.Client]
) -> None:
    _, recorder = fast
    provider = clients["PROV-A"]
    key = {"Idempotency-Key": f"fast-{uuid.uuid4()}"}
    document = fresh_claim()
    first = provider.post("/v1/claims", json=document, headers=key)
    again = provider.post("/v1/claims", json=document, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    other = provider.post("/v1/claims", json=fresh_claim(), headers=key)
    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
    assert ("POST", "/v1/claims") not in recorder.seen

    metrics = clients[None].get("/metrics").text
    assert 'claimledger_http_requests_total{method="POST",route="/v1/claims",status="201"}' in metrics
    ref = first.json()["ref"]
    entries = clients["AUDIT-1"].get("/v1/audit/access-log", params={"claim": ref}).json()["entries"]
    actions = [e["action"] for e in entries if e["request_id"] == first.headers["x-request-id"]]
    assert actions == ["claims-submit_claim"]
