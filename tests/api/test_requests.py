"""What each request gets back: idempotency, size limits, every validation problem, batches,
listings, reports, health, metrics and the OpenAPI document."""

from __future__ import annotations

import csv
import io
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from tests.api.conftest import TEST_MAX_BODY_BYTES, LiveGateway, fresh_claim
from tests.api.helpers import advance, all_refs, error_of, submit
from tests.factories import make_line_data

# ---------------------------------------------------------------------- idempotency


def test_a_replay_returns_the_saved_answer(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    document = fresh_claim()
    first = provider.post("/v1/claims", json=document, headers=key)
    again = provider.post("/v1/claims", json=document, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    # Recorded once: without the key the same claim is now an exact duplicate of that one record.
    duplicate = provider.post("/v1/claims", json=document)
    assert duplicate.status_code == 409
    assert error_of(duplicate)["details"]["existing"]["ref"] == first.json()["ref"]


def test_a_refusal_is_replayed_too(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    invalid = fresh_claim(billing_npi="1234567890")
    first = provider.post("/v1/claims", json=invalid, headers=key)
    again = provider.post("/v1/claims", json=invalid, headers=key)
    assert first.status_code == again.status_code == 422
    assert again.content == first.content


def test_the_same_key_with_another_body_is_422(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert provider.post("/v1/claims", json=fresh_claim(), headers=key).status_code == 201
    other = provider.post("/v1/claims", json=fresh_claim(), headers=key)
    assert other.status_code == 422
    assert error_of(other)["code"] == "idempotency_key_reused"


def test_keys_belong_to_one_organisation(clients: dict[str | None, httpx.Client]) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = clients["PROV-A"].post("/v1/claims", json=fresh_claim(), headers=key)
    other_org = clients["PROV-B"].post("/v1/claims", json=fresh_claim(), headers=key)
    assert first.status_code == other_org.status_code == 201
    assert first.json()["ref"] != other_org.json()["ref"]


@pytest.fixture
def held_submissions(gateway: LiveGateway) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Submissions wait (inside the service, at the write of their documents, before anything is sent)
    until released: a request stays in flight as long as a test needs. The write's future is held, so
    a request waiting on an event loop and one waiting in a worker thread are held alike."""
    vault = gateway.runtime.service.vault
    entered, release = threading.Event(), threading.Event()
    real_put = vault.put_many_future

    def held(*args: Any, **kwargs: Any) -> Future[None]:
        entered.set()
        done: Future[None] = Future()

        def later() -> None:
            try:
                assert release.wait(30), "the test never released the held submission"
                real_put(*args, **kwargs).result()
            except BaseException as exc:  # noqa: BLE001 - the held request hears of it
                done.set_exception(exc)
            else:
                done.set_result(None)

        threading.Thread(target=later, daemon=True).start()
        return done

    vault.put_many_future = held  # type: ignore[method-assign]
    try:
        yield entered, release
    finally:
        release.set()
        vault.put_many_future = real_put  # type: ignore[method-assign]


def test_a_request_in_flight_is_409(
    gateway: LiveGateway, held_submissions: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_submissions
    key = {"Idempotency-Key": str(uuid.uuid4())}
    document = fresh_claim()
    answers: dict[str, httpx.Response] = {}

    def first_request() -> None:
        with gateway.client("PROV-A") as c:
            answers["first"] = c.post("/v1/claims", json=document, headers=key)

    worker = threading.Thread(target=first_request)
    worker.start()
    assert entered.wait(30), "the first request never reached the service"
    with gateway.client("PROV-A") as c:
        in_flight = c.post("/v1/claims", json=document, headers=key)
    assert in_flight.status_code == 409
    assert error_of(in_flight)["code"] == "idempotency_in_flight"
    assert in_flight.headers["retry-after"]
    release.set()
    worker.join(30)
    assert answers["first"].status_code == 201
    with gateway.client("PROV-A") as c:
        replay = c.post("/v1/claims", json=document, headers=key)
    assert replay.status_code == 201 and replay.content == answers["first"].content


def test_a_malformed_idempotency_key_is_422(clients: dict[str | None, httpx.Client]) -> None:
    answer = clients["PROV-A"].post("/v1/claims", json=fresh_claim(), headers={"Idempotency-Key": "x" * 300})
    assert answer.status_code == 422 and error_of(answer)["code"] == "request_invalid"


# ---------------------------------------------------------------------- size and validation


def test_an_oversized_body_is_413_before_it_is_read(clients: dict[str | None, httpx.Client]) -> None:
    big = b'{"claims": [' + b" " * TEST_MAX_BODY_BYTES + b"]}"
    answer = clients["PROV-A"].post("/v1/claims/batch", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "body_too_large"
    assert error_of(answer)["details"]["max_body_bytes"] == TEST_MAX_BODY_BYTES


def test_an_oversized_chunked_body_is_413(clients: dict[str | None, httpx.Client]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"claims": ['
        for _ in range(TEST_MAX_BODY_BYTES // 4096 + 2):
            yield b" " * 4096
        yield b"]}"

    answer = clients["PROV-A"].post("/v1/claims/batch", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "body_too_large"


def test_every_validation_problem_is_listed(clients: dict[str | None, httpx.Client]) -> None:
    document = fresh_claim(
        billing_npi="1234567890",  # wrong check digit
        diagnoses=["E11", "Q99999"],  # a category, and not a code
        service_lines=[
            make_line_data(procedure_code="9921", modifiers=["RT", "L"], service_date_from="2999-01-01"),
            make_line_data(procedure_code="99213", diagnosis_pointers=[3]),
        ],
        total_charge_cents=1,
    )
    answer = clients["PROV-A"].post("/v1/claims", json=document)
    assert answer.status_code == 422
    error = error_of(answer)
    assert error["code"] == "claim_invalid"
    problems = error["details"]["problems"]
    rules = {p["rule"] for p in problems}
    assert {
        "npi_check_digit",
        "icd10_not_billable",
        "procedure_code_format",
        "modifier_format",
        "service_date_in_future",
        "diagnosis_pointer_invalid",
        "total_mismatch",
    } <= rules
    for p in problems:
        assert set(p) == {"field", "value", "rule", "message"} and p["field"] and p["message"]
    assert {"field": "billing_npi", "value": "1234567890"}.items() <= next(
        p for p in problems if p["rule"] == "npi_check_digit"
    ).items()


def test_structural_problems_are_listed_in_the_same_shape(clients: dict[str | None, httpx.Client]) -> None:
    document = fresh_claim(service_lines=[make_line_data(charge_cents=125.0)])
    del document["member_id"]
    answer = clients["PROV-A"].post("/v1/claims", json=document)
    assert answer.status_code == 422
    problems = error_of(answer)["details"]["problems"]
    assert {(p["field"], p["rule"]) for p in problems} >= {
        ("member_id", "required"),
        ("service_lines[0].charge_cents", "not_whole_number"),
    }


def test_a_request_the_schema_refuses_is_422_request_invalid(clients: dict[str | None, httpx.Client]) -> None:
    ref = submit(clients["PROV-A"], fresh_claim())["ref"]
    answer = clients["PAYER-ACME"].post(f"/v1/claims/{ref}/adjudicate", json={"outcome": "maybe", "allowed_cents": -1})
    assert answer.status_code == 422
    error = error_of(answer)
    assert error["code"] == "request_invalid"
    assert {p["field"] for p in error["details"]["problems"]} == {"outcome", "allowed_cents"}
    bad_ref = clients["PAYER-ACME"].get("/v1/claims/0x1234:1")
    assert bad_ref.status_code == 422 and error_of(bad_ref)["code"] == "ref_invalid"


def test_a_contract_refusal_is_named(clients: dict[str | None, httpx.Client]) -> None:
    ref = submit(clients["PROV-A"], fresh_claim())["ref"]
    # Adjudicating before acknowledging: the lifecycle, enforced by the contract.
    early = clients["PAYER-ACME"].post(
        f"/v1/claims/{ref}/adjudicate", json={"outcome": "approved", "allowed_cents": 12500}
    )
    assert early.status_code == 409
    error = error_of(early)
    assert error["code"] == "invalid_transition"
    assert error["details"]["contract_error"] == "ClaimLedgerInvalidTransition"
    # A rejection without a reason: 422 by the contract's rule.
    no_reason = clients["PAYER-ACME"].post(f"/v1/claims/{ref}/acknowledge", json={"accepted": False})
    assert no_reason.status_code == 422 and error_of(no_reason)["code"] == "missing_reason"


# ---------------------------------------------------------------------- batches


def test_a_batch_answers_each_claim_in_order(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    first, second = fresh_claim(), fresh_claim()
    all_good = provider.post("/v1/claims/batch", json={"claims": [first, second]})
    assert all_good.status_code == 200
    assert [r["status"] for r in all_good.json()["results"]] == ["recorded", "recorded"]

    mixed = provider.post(
        "/v1/claims/batch",
        json={
            "claims": [
                fresh_claim(),
                {**first, "claim_id": "AGAIN"},
                fresh_claim(billing_npi="1"),
                {**fresh_claim(), "frequency": "7", "original_claim_id": "CLM-OLD"},
            ]
        },
    )
    assert mixed.status_code == 207
    results = mixed.json()["results"]
    assert [(r["status"], r["http_status"]) for r in results] == [
        ("recorded", 201),
        ("duplicate", 409),
        ("invalid", 422),
        ("invalid", 422),
    ]
    assert results[1]["existing"]["ref"] == all_good.json()["results"][0]["ref"]
    assert results[2]["problems"] and results[3]["problems"][0]["field"] == "original_claim_id"
    assert mixed.json()["summary"] == {"recorded": 1, "duplicate": 1, "invalid": 2}


def test_a_batch_over_the_limit_is_refused(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> None:
    limit = gateway.settings.max_batch_claims
    answer = clients["PROV-A"].post("/v1/claims/batch", json={"claims": [{}] * (limit + 1)})
    assert answer.status_code in (413, 422)
    assert error_of(answer)["code"] in ("batch_too_large", "body_too_large")


# ---------------------------------------------------------------------- listings


def test_listing_filters_and_pages(clients: dict[str | None, httpx.Client]) -> None:
    provider, payer = clients["PROV-B"], clients["PAYER-BETA"]
    refs = [submit(provider, fresh_claim(payer_id="PAYER-BETA"))["ref"] for _ in range(5)]
    advance(payer, refs[0], "accepted")

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"payer": "PAYER-BETA", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = provider.get("/v1/claims", params=params).json()
        pages.append([i["ref"] for i in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [r for p in pages for r in p]
    assert len(listed) == len(set(listed)) and set(refs) <= set(listed)
    assert all(len(p) <= 2 for p in pages)
    assert listed.index(refs[4]) < listed.index(refs[0]), "newest first"

    accepted = all_refs(payer, "/v1/payer/claims", status="accepted")
    assert refs[0] in accepted and refs[1] not in accepted
    today = provider.get("/v1/claims", params={"from": "2000-01-01", "to": "2000-12-31"}).json()
    assert today["items"] == []
    unknown = provider.get("/v1/claims", params={"payer": "PAYER-NOBODY"})
    assert unknown.status_code == 422 and error_of(unknown)["code"] == "unknown_organisation"
    bad_status = provider.get("/v1/claims", params={"status": "lost"})
    assert bad_status.status_code == 422


# ---------------------------------------------------------------------- reports


def test_reports_as_json_and_csv(clients: dict[str | None, httpx.Client]) -> None:
    provider, auditor = clients["PROV-A"], clients["AUDIT-1"]
    document = fresh_claim()
    submit(provider, document)
    assert provider.post("/v1/claims", json={**document, "claim_id": "AGAIN"}).status_code == 409

    duplicates = auditor.get("/v1/reports/duplicates").json()
    row = next(r for r in duplicates["rows"] if r["provider"] == "PROV-A")
    assert row["duplicates_refused"] >= 1 and row["claims_recorded"] >= 1

    as_csv = auditor.get("/v1/reports/duplicates", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert any(r["provider"] == "PROV-A" and int(r["duplicates_refused"]) >= 1 for r in table)

    payers = auditor.get("/v1/reports/payers", headers={"Accept": "text/csv"})
    assert payers.headers["content-type"].startswith("text/csv")
    assert payers.text.splitlines()[0].startswith("payer,payer_org,claims,adjudicated,denied,denial_rate")
    empty = auditor.get("/v1/reports/payers", params={"from": "2000-01-01", "to": "2000-01-31"}).json()
    assert empty["rows"] == []


# ---------------------------------------------------------------------- health, metrics, schema


def test_health_readiness_and_metrics(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> None:
    anonymous = clients[None]
    assert anonymous.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"node": "ok", "database": "ok"}
    submit(clients["PROV-A"], fresh_claim())
    metrics = anonymous.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'claimledger_http_requests_total{method="POST",route="/v1/claims",status="201"}' in text
    assert 'claimledger_http_request_duration_seconds_bucket{method="POST",route="/v1/claims",le="+Inf"}' in text
    assert 'claimledger_claims_submitted_total{outcome="recorded"}' in text
    for stage in ("check", "store", "queue", "chain"):  # the claim's time in each stage on its way to the chain
        count = re.search(rf'claimledger_submission_stage_seconds_count{{stage="{stage}"}} (\d+)', text)
        assert count is not None and int(count.group(1)) >= 1, stage


def test_the_openapi_document(clients: dict[str | None, httpx.Client]) -> None:
    schema = clients[None].get("/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "claims-submit_claim",
        "claims-submit_batch",
        "claims-list_claims",
        "payer-acknowledge",
        "audit-claim_history",
        "audit-verify",
        "admin-create_organisation",
        "health-readyz",
    } <= operations
    submit_op = schema["paths"]["/v1/claims"]["post"]
    body = submit_op["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/Claim"
    assert "original" in body["examples"] and "replacement" in body["examples"]
    assert schema["components"]["schemas"]["Claim"]["examples"]
    assert "ServiceLine" in schema["components"]["schemas"]
    assert {"201", "409", "422", "401", "413", "503"} <= set(submit_op["responses"])
