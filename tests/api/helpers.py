"""Small steps the gateway tests share: submit a claim, move it along, page through a listing."""

from __future__ import annotations

from typing import Any

import httpx

ACCEPT = {"accepted": True, "reason": "A2:20"}
ADJUDICATE = {"outcome": "partly_approved", "allowed_cents": 9000, "carc_codes": ["CO45"]}
PAY = {"paid_cents": 9000, "trace": "EFT-20250630-000123"}
REVERSE = {"trace": "EFT-20250715-000456"}


def submit(client: httpx.Client, document: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST one claim that must be recorded; its result."""
    response = client.post("/v1/claims", json=document, **kwargs)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "recorded"
    return body


def advance(payer: httpx.Client, ref: str, to: str) -> None:
    """Move a submitted claim to ``to`` (accepted, adjudicated or paid) through the payer's endpoints."""
    steps = [("acknowledge", ACCEPT, "accepted"), ("adjudicate", ADJUDICATE, "adjudicated"), ("payment", PAY, "paid")]
    for step, body, status in steps:
        response = payer.post(f"/v1/claims/{ref}/{step}", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
        if status == to:
            return
    raise AssertionError(f"no payer step leads to {to}")


def all_refs(client: httpx.Client, path: str = "/v1/claims", **params: Any) -> list[str]:
    """Every ref a listing gives, following its cursors."""
    refs: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        refs += [item["ref"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return refs


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error of an answer, checked to be in the common shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["message"], error
    return error
