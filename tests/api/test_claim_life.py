"""A claim's whole life through the gateway, and the access audit log that records it."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import httpx

from tests.api.conftest import LiveGateway, fresh_claim
from tests.api.helpers import ACCEPT, ADJUDICATE, PAY, error_of, submit
from tests.factories import make_line_data


class Traced:
    """A client that sends a request id with every call and remembers them (to find them in the access log)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.request_ids: list[str] = []

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)

        def traced(*args: Any, **kwargs: Any) -> httpx.Response:
            request_id = uuid.uuid4().hex
            self.request_ids.append(request_id)
            response: httpx.Response = call(*args, headers={"X-Request-ID": request_id}, **kwargs)
            assert response.headers["x-request-id"] == request_id
            return response

        return traced


def test_full_life(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> None:
    provider, payer, auditor = Traced(clients["PROV-A"]), Traced(clients["PAYER-ACME"]), Traced(clients["AUDIT-1"])

    # Submit: recorded, with its ledger receipt.
    document = fresh_claim()
    recorded = submit(provider, document)  # type: ignore[arg-type]
    ref = recorded["ref"]
    assert recorded["suspect"] is False and recorded["tx_hash"].startswith("0x") and recorded["block_number"] > 0

    # The same service for the same member from another provider NPI, other units and charge:
    # a different claim (exact key) whose line matches -> recorded and flagged suspect, naming the first.
    line = document["service_lines"][0]
    similar = fresh_claim(
        member_id=document["member_id"],
        billing_npi="1245319599",
        service_lines=[{**line, "units": 2, "charge_cents": 20000}],
    )
    suspect = submit(provider, similar)  # type: ignore[arg-type]
    assert suspect["suspect"] is True
    assert [s["earlier"]["ref"] for s in suspect["suspects"]] == [ref]
    assert suspect["ref"] != ref

    # An exact duplicate under a new claim id and to another payer: refused, naming the record.
    duplicate = provider.post("/v1/claims", json={**document, "claim_id": "RESENT-1", "payer_id": "PAYER-BETA"})
    assert duplicate.status_code == 409
    error = error_of(duplicate)
    assert error["code"] == "exact_duplicate"
    assert error["details"]["existing"]["ref"] == ref and error["details"]["carc"] == "18"

    # The payer's steps.
    steps = [("acknowledge", ACCEPT, "accepted"), ("adjudicate", ADJUDICATE, "adjudicated"), ("payment", PAY, "paid")]
    for step, body, status in steps:
        answer = payer.post(f"/v1/claims/{ref}/{step}", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status and answer.json()["tx_hash"].startswith("0x")
    paid = provider.get(f"/v1/claims/{ref}").json()
    assert (paid["status"], paid["outcome"], paid["allowed_cents"], paid["paid_cents"]) == (
        "paid",
        "partly_approved",
        9000,
        9000,
    )
    assert paid["days_to_payment"] is not None and paid["paid_at"] is not None
    # A paid claim cannot be paid again, nor voided: the contract's refusal, by name.
    again = payer.post(f"/v1/claims/{ref}/payment", json=PAY)
    assert again.status_code == 409 and error_of(again)["code"] == "invalid_transition"
    assert provider.post(f"/v1/claims/{ref}/void").status_code == 409

    # History: every event with who, what, when, block and transaction.
    history = auditor.get(f"/v1/claims/{ref}/history").json()
    names = [e["event"] for e in history["events"]]
    assert names == ["ClaimSubmitted", "DuplicateRefused", "ClaimAcknowledged", "ClaimAdjudicated", "ClaimPaid"]
    for event in history["events"]:
        assert event["who"]["organisation"] in ("PROV-A", "PAYER-ACME")
        assert event["when"] and event["block_number"] > 0 and event["tx_hash"].startswith("0x")
    refused = history["events"][1]
    assert refused["who"]["organisation"] == "PROV-A" and refused["who"]["account"]

    # Verify: the document matches its record; any change to it does not.
    verified = auditor.post("/v1/verify", json=document).json()
    assert verified == {**verified, "matches": True, "ref": ref, "status": "paid"}
    tampered = {
        **document,
        "service_lines": [{**line, "charge_cents": line["charge_cents"] + 1}],
        "total_charge_cents": document["total_charge_cents"] + 1,
    }
    assert auditor.post("/v1/verify", json=tampered).json()["matches"] is False
    assert auditor.post("/v1/verify", json={**document, "rendering_npi": None}).json()["matches"] is False

    # Void the suspect claim: it ends and releases its keys, so the same claim can be sent again.
    voided = provider.post(f"/v1/claims/{suspect['ref']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    resent = submit(provider, {**similar, "claim_id": "RESENT-2"})  # type: ignore[arg-type]
    assert resent["exact_key"] == suspect["exact_key"] and resent["version"] == suspect["version"] + 1

    # Replace: by the replace endpoint, and by posting frequency 7 naming the original.
    original = submit(provider, fresh_claim())  # type: ignore[arg-type]
    corrected = fresh_claim(service_lines=[make_line_data(units=3, charge_cents=30000)])
    replaced = provider.post(f"/v1/claims/{original['ref']}/replace", json=corrected)
    assert replaced.status_code == 201, replaced.text
    replacement = replaced.json()
    assert replacement["replaced"]["ref"] == original["ref"]
    assert provider.get(f"/v1/claims/{original['ref']}").json()["status"] == "replaced"
    assert provider.get(f"/v1/claims/{replacement['ref']}").json()["replaces"] == original["ref"]
    by_frequency = provider.post(
        "/v1/claims",
        json={
            **fresh_claim(service_lines=[make_line_data(units=4, charge_cents=40000)]),
            "frequency": "7",
            "original_claim_id": replacement["ref"],
        },
    )
    assert by_frequency.status_code == 201, by_frequency.text
    assert by_frequency.json()["replaced"]["ref"] == replacement["ref"]
    # A void by posting frequency 8 naming the claim.
    void_doc = {
        **fresh_claim(service_lines=[make_line_data(units=4, charge_cents=40000)]),
        "frequency": "8",
        "original_claim_id": by_frequency.json()["ref"],
    }
    posted_void = provider.post("/v1/claims", json=void_doc)
    assert posted_void.status_code == 200 and posted_void.json()["status"] == "voided", posted_void.text

    # The access log holds an entry for every call of this life, with its outcome.
    request_ids = provider.request_ids + payer.request_ids + auditor.request_ids
    entries = _access_entries(clients["AUDIT-1"])
    by_request = {e["request_id"]: e for e in entries}
    missing = [r for r in request_ids if r not in by_request]
    assert not missing, f"{len(missing)} of {len(request_ids)} calls have no access log entry"
    assert by_request[provider.request_ids[0]]["claim"] == ref
    assert by_request[provider.request_ids[0]]["outcome"] == "201"
    assert by_request[provider.request_ids[2]]["outcome"] == "409"  # the refused duplicate, about the record
    assert by_request[provider.request_ids[2]]["claim"] == ref
    assert {by_request[r]["org"] for r in payer.request_ids} == {"PAYER-ACME"}
    assert clients["AUDIT-1"].get("/v1/audit/access-log/verify").json()["ok"] is True


def _access_entries(auditor: httpx.Client) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = auditor.get("/v1/audit/access-log", params={"after": after, "limit": 1000}).json()
        entries += page["entries"]
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


def test_an_altered_access_log_entry_is_found_at_that_entry(
    gateway: LiveGateway, clients: dict[str | None, httpx.Client]
) -> None:
    ref = submit(clients["PROV-A"], fresh_claim())["ref"]
    clients["PAYER-ACME"].get(f"/v1/claims/{ref}")
    entries = _access_entries(clients["AUDIT-1"])
    target = next(e for e in entries if e["claim"] == ref and e["org"] == "PAYER-ACME")
    assert clients["AUDIT-1"].get("/v1/audit/access-log/verify").json()["ok"] is True

    db = gateway.settings.data_dir / "claimledger.db"
    with sqlite3.connect(db) as conn:
        try:
            conn.execute("UPDATE access_log SET org = 'PROV-A' WHERE seq = ?", (target["seq"],))
            raise AssertionError("the access log accepted an update")
        except sqlite3.DatabaseError as refused:
            assert "append-only" in str(refused)
        # An attacker with the file drops the guard and edits the entry.
        conn.execute("DROP TRIGGER access_log_no_update")
        conn.execute("UPDATE access_log SET org = 'PROV-A' WHERE seq = ?", (target["seq"],))
    try:
        verdict = clients["AUDIT-1"].get("/v1/audit/access-log/verify").json()
        assert verdict["ok"] is False
        assert verdict["first_broken"] == target["seq"]
        assert "altered" in verdict["reason"]
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE access_log SET org = 'PAYER-ACME' WHERE seq = ?", (target["seq"],))
            conn.execute(
                "CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log "
                "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
            )
    assert clients["AUDIT-1"].get("/v1/audit/access-log/verify").json()["ok"] is True


def test_the_access_log_head_is_anchored_on_chain(
    gateway: LiveGateway, clients: dict[str | None, httpx.Client]
) -> None:
    clients["AUDIT-1"].get("/v1/claims", params={"limit": 1})
    anchored = gateway.runtime.anchor_access_log()
    assert anchored is not None and str(anchored["tx_hash"]).startswith("0x")
    verdict = clients["AUDIT-1"].get("/v1/audit/access-log/verify").json()
    assert verdict["ok"] is True
    assert any(a["seq"] == anchored["seq"] and a["holds"] for a in verdict["anchors"])
