"""Every role x endpoint x ownership cell answers as specified.

The claim under test is PROV-A's, addressed to PAYER-ACME. Callers: its provider, another
provider, its payer, another payer, an auditor, the operator, and no key at all. A refused
cell is tried on one shared claim (a refusal changes nothing); a cell that succeeds in
changing a claim gets a fresh claim in the state its step needs.

Rules: no key 401; a role that may not take the action 403 (checked first); a claim the
caller may not see 404; its own claim (or, for payer steps, one addressed to it) succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveGateway, fresh_claim
from tests.api.helpers import ACCEPT, ADJUDICATE, PAY, REVERSE, advance, all_refs, error_of, submit

CALLERS = ("PROV-A", "PROV-B", "PAYER-ACME", "PAYER-BETA", "AUDIT-1", "OPERATOR", None)
CALLER_IDS = ("own-provider", "other-provider", "addressed-payer", "other-payer", "auditor", "operator", "no-key")


@dataclass
class Scene:
    gateway: LiveGateway
    clients: dict[str | None, httpx.Client]
    shared_ref: str
    shared_document: dict[str, Any]

    def fresh(self, state: str = "submitted") -> str:
        ref = str(submit(self.clients["PROV-A"], fresh_claim())["ref"])
        if state != "submitted":
            advance(self.clients["PAYER-ACME"], ref, state)
        return ref


Action = Callable[[httpx.Client, Scene, str], httpx.Response]


def _replace(c: httpx.Client, s: Scene, ref: str) -> httpx.Response:
    line = s.shared_document["service_lines"][0]
    corrected = fresh_claim(service_lines=[{**line, "units": 2, "charge_cents": 25000}])
    return c.post(f"/v1/claims/{ref}/replace", json=corrected)


# name: (action, the state a fresh claim needs when the cell succeeds in changing one (None: reads only), statuses)
MATRIX: dict[str, tuple[Action, str | None, tuple[int, ...]]] = {
    "read claim": (lambda c, s, ref: c.get(f"/v1/claims/{ref}"), None, (200, 404, 200, 404, 200, 403, 401)),
    "history": (lambda c, s, ref: c.get(f"/v1/claims/{ref}/history"), None, (200, 404, 200, 404, 200, 403, 401)),
    "list claims": (
        lambda c, s, ref: c.get("/v1/claims", params={"limit": 1}),
        None,
        (200, 200, 200, 200, 200, 403, 401),
    ),
    "payer list": (
        lambda c, s, ref: c.get("/v1/payer/claims", params={"limit": 1}),
        None,
        (403, 403, 200, 200, 403, 403, 401),
    ),
    "verify": (
        lambda c, s, ref: c.post("/v1/verify", json=s.shared_document),
        None,
        (200, 200, 200, 200, 200, 403, 401),
    ),
    "submit": (lambda c, s, ref: c.post("/v1/claims", json=fresh_claim()), None, (201, 201, 403, 403, 403, 403, 401)),
    "submit batch": (
        lambda c, s, ref: c.post("/v1/claims/batch", json={"claims": [fresh_claim()]}),
        None,
        (200, 200, 403, 403, 403, 403, 401),
    ),
    "void": (lambda c, s, ref: c.post(f"/v1/claims/{ref}/void"), "submitted", (200, 404, 403, 403, 403, 403, 401)),
    "replace": (_replace, "submitted", (201, 404, 403, 403, 403, 403, 401)),
    "acknowledge": (
        lambda c, s, ref: c.post(f"/v1/claims/{ref}/acknowledge", json=ACCEPT),
        "submitted",
        (403, 403, 200, 404, 403, 403, 401),
    ),
    "adjudicate": (
        lambda c, s, ref: c.post(f"/v1/claims/{ref}/adjudicate", json=ADJUDICATE),
        "accepted",
        (403, 403, 200, 404, 403, 403, 401),
    ),
    "payment": (
        lambda c, s, ref: c.post(f"/v1/claims/{ref}/payment", json=PAY),
        "adjudicated",
        (403, 403, 200, 404, 403, 403, 401),
    ),
    "reversal": (
        lambda c, s, ref: c.post(f"/v1/claims/{ref}/reversal", json=REVERSE),
        "paid",
        (403, 403, 200, 404, 403, 403, 401),
    ),
    "duplicates report": (lambda c, s, ref: c.get("/v1/reports/duplicates"), None, (403, 403, 403, 403, 200, 403, 401)),
    "payers report": (lambda c, s, ref: c.get("/v1/reports/payers"), None, (403, 403, 403, 403, 200, 403, 401)),
    "access log": (
        lambda c, s, ref: c.get("/v1/audit/access-log", params={"limit": 1}),
        None,
        (403, 403, 403, 403, 200, 403, 401),
    ),
    "access log verify": (
        lambda c, s, ref: c.get("/v1/audit/access-log/verify"),
        None,
        (403, 403, 403, 403, 200, 403, 401),
    ),
    "list organisations": (
        lambda c, s, ref: c.get("/v1/admin/organisations"),
        None,
        (403, 403, 403, 403, 403, 200, 401),
    ),
    "issue key": (
        lambda c, s, ref: c.post("/v1/admin/organisations/PAYER-BETA/keys", json={"label": "matrix"}),
        None,
        (403, 403, 403, 403, 403, 201, 401),
    ),
    "revoke key": (
        lambda c, s, ref: c.post("/v1/admin/keys/clk_NOSUCHKEY/revoke"),
        None,
        (403, 403, 403, 403, 403, 404, 401),
    ),
    "me": (lambda c, s, ref: c.get("/v1/me"), None, (200, 200, 200, 200, 200, 200, 401)),
}

# Which callers see the shared claim: in listings and in verification.
SEES_SHARED = {"PROV-A": True, "PROV-B": False, "PAYER-ACME": True, "PAYER-BETA": False, "AUDIT-1": True}
CHANGING_STATUS = {200, 201}


@pytest.fixture(scope="module")
def scene(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> Scene:
    document = fresh_claim()
    ref = str(submit(clients["PROV-A"], document)["ref"])
    return Scene(gateway, clients, ref, document)


CELLS = [
    pytest.param(name, caller, status, id=f"{name}-{label}")
    for name, (_, _, statuses) in MATRIX.items()
    for caller, label, status in zip(CALLERS, CALLER_IDS, statuses, strict=True)
]


@pytest.mark.parametrize(("name", "caller", "expected"), CELLS)
def test_cell(scene: Scene, name: str, caller: str | None, expected: int) -> None:
    action, fresh_state, _ = MATRIX[name]
    changes = fresh_state is not None and expected in CHANGING_STATUS
    ref = scene.fresh(fresh_state) if changes and fresh_state else scene.shared_ref
    before = scene.clients["AUDIT-1"].get(f"/v1/claims/{scene.shared_ref}").json()

    response = action(scene.clients[caller], scene, ref)

    assert response.status_code == expected, f"{name} by {caller}: {response.status_code} {response.text}"
    if expected >= 400:
        codes = {401: "unauthenticated", 403: "role_not_allowed", 404: "claim_not_found"}
        if name == "revoke key":
            codes[404] = "api_key_not_found"
        assert error_of(response)["code"] == codes[expected]
        if expected == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
    after = scene.clients["AUDIT-1"].get(f"/v1/claims/{scene.shared_ref}").json()
    assert after == before, "the shared claim changed"


@pytest.mark.parametrize("caller", list(SEES_SHARED))
def test_listing_and_verification_show_only_visible_claims(scene: Scene, caller: str) -> None:
    client = scene.clients[caller]
    path = "/v1/payer/claims" if caller.startswith("PAYER") else "/v1/claims"
    assert (scene.shared_ref in all_refs(client, path)) is SEES_SHARED[caller]
    verified = client.post("/v1/verify", json=scene.shared_document).json()
    assert verified["matches"] is SEES_SHARED[caller]
    assert verified["ref"] == (scene.shared_ref if SEES_SHARED[caller] else None)


def test_a_bad_or_revoked_key_is_401(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> None:
    with gateway.client(headers={"X-API-Key": "clk_" + "x" * 43}) as stranger:
        response = stranger.get("/v1/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"

    issued = clients["OPERATOR"].post("/v1/admin/organisations/PAYER-BETA/keys", json={"label": "to revoke"}).json()
    with gateway.client(headers={"X-API-Key": issued["key"]}) as holder:
        assert holder.get("/v1/me").json()["organisation"] == "PAYER-BETA"
        revoked = clients["OPERATOR"].post(f"/v1/admin/keys/{issued['prefix']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert holder.get("/v1/me").status_code == 401
