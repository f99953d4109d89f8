"""X12 837 / 835 and FHIR through the gateway, against the session's real node and database.

Round trips: an 837 of ten claims records the keys the same claims get as JSON (posting them
as JSON afterwards is refused claim by claim as exact duplicates of exactly those records); a
resubmitted 837 is refused claim by claim; an 835 posts payments, denials and a reversal and
the claims' histories show them; a FHIR Claim and the same claim as JSON share their keys.
Bad files: refused whole (nothing written) or in part (the rest taken), naming segment and
position.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.formats.fhir import write_fhir_bundle, write_fhir_claim
from ledger.formats.x837_write import write_835 as x12_835
from ledger.formats.x837_write import write_837i, write_837p
from tests.api.conftest import LiveGateway, fresh_claim
from tests.api.helpers import all_refs, error_of
from tests.factories import BILLING_NPI, make_line_data

X12 = {"Content-Type": "application/edi-x12"}
FHIR = {"Content-Type": "application/fhir+json"}


def _837(claims: list[dict[str, Any]], *, institutional: bool = False, control: int = 1) -> bytes:
    writer = write_837i if institutional else write_837p
    return writer(claims, sender="PROVA", receiver="PAYERACME", control_number=control)


def write_835(rows: list[dict[str, Any]], *, payer_id: str, trace_number: str) -> bytes:
    """An 835 from CLP rows given by name (claim_id, status, charge_cents, paid_cents, ...)."""
    payments = [
        (
            r["claim_id"],
            r["status"],
            r["charge_cents"],
            r["paid_cents"],
            r.get("patient_responsibility_cents", 0),
            r.get("adjustments", []),
        )
        for r in rows
    ]
    return x12_835(
        payments, payer_id=payer_id, payee_npi=BILLING_NPI, trace_number=trace_number, payment_date=date(2025, 7, 1)
    )


def _import(client: httpx.Client, path: str, body: bytes, headers: dict[str, str], **params: Any) -> httpx.Response:
    return client.post(path, content=body, headers=headers, params=params)


def test_an_837_records_the_keys_its_claims_get_as_json(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    claims = [fresh_claim() for _ in range(8)] + [fresh_claim(lines=3) for _ in range(2)]
    response = _import(provider, "/v1/imports/837", _837(claims), X12, file="ten.837")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["format"] == "837P" and answer["file"] == "ten.837"
    assert [r["status"] for r in answer["results"]] == ["recorded"] * 10
    assert [r["claim_id"] for r in answer["results"]] == [c["claim_id"] for c in claims]
    assert all(r["source"]["segment"] == "CLM" and r["source"]["file"] == "ten.837" for r in answer["results"])
    positions = [r["source"]["position"] for r in answer["results"]]
    assert positions == sorted(positions) and len(set(positions)) == 10
    keys = [r["exact_key"] for r in answer["results"]]

    as_json = provider.post("/v1/claims/batch", json={"claims": claims})
    assert as_json.status_code == 207
    assert [r["status"] for r in as_json.json()["results"]] == ["duplicate"] * 10
    assert [r["existing"]["exact_key"] for r in as_json.json()["results"]] == keys

    again = _import(provider, "/v1/imports/837", _837(claims, control=2), X12)
    assert again.status_code == 207
    results = again.json()["results"]
    assert [r["status"] for r in results] == ["duplicate"] * 10
    assert [r["existing"]["ref"] for r in results] == [r["ref"] for r in answer["results"]]
    assert again.json()["summary"]["duplicate"] == 10


def test_an_837i_is_read_and_recorded(clients: dict[str | None, httpx.Client]) -> None:
    claims = [fresh_claim(place_of_service="13"), fresh_claim(place_of_service="13")]
    response = _import(clients["PROV-A"], "/v1/imports/837", _837(claims, institutional=True), X12)
    assert response.status_code == 200, response.text
    assert response.json()["format"] == "837I"
    assert [r["status"] for r in response.json()["results"]] == ["recorded", "recorded"]


def test_an_835_posts_payments_denials_and_a_reversal(clients: dict[str | None, httpx.Client]) -> None:
    provider, payer, auditor = clients["PROV-A"], clients["PAYER-ACME"], clients["AUDIT-1"]
    paid, partly, denied, late = fresh_claim(), fresh_claim(), fresh_claim(), fresh_claim()
    recorded = _import(provider, "/v1/imports/837", _837([paid, partly, denied, late]), X12).json()["results"]
    refs = {r["claim_id"]: r["ref"] for r in recorded}
    charge = paid["total_charge_cents"]

    remittance = write_835(
        [
            {"claim_id": paid["claim_id"], "status": "1", "charge_cents": charge, "paid_cents": charge},
            {
                "claim_id": partly["claim_id"],
                "status": "1",
                "charge_cents": charge,
                "paid_cents": 8000,
                "patient_responsibility_cents": 2000,
                "adjustments": [("CO", "45", charge - 10000), ("PR", "2", 2000)],
            },
            {
                "claim_id": denied["claim_id"],
                "status": "4",
                "charge_cents": charge,
                "paid_cents": 0,
                "adjustments": [("CO", "50", charge)],
            },
        ],
        payer_id="PAYER-ACME",
        trace_number="EFT-835-0001",
    )
    # Another payer cannot post PAYER-ACME's 835.
    foreign = _import(clients["PAYER-BETA"], "/v1/imports/835", remittance, X12)
    assert foreign.status_code == 207
    assert {r["status"] for r in foreign.json()["results"]} == {"payer_mismatch"}

    response = _import(payer, "/v1/imports/835", remittance, X12, file="era.835")
    assert response.status_code == 200, response.text
    [era] = response.json()["remittances"]
    assert (era["payer_id"], era["trace_number"], era["claims"]) == ("PAYER-ACME", "EFT-835-0001", 3)
    assert era["payment_cents"] == charge + 8000
    results = {r["claim_id"]: r for r in response.json()["results"]}
    assert results[paid["claim_id"]]["steps"] == ["acknowledge", "adjudicate", "record_payment"]
    assert results[denied["claim_id"]]["steps"] == ["acknowledge", "adjudicate"]
    assert {r["status"] for r in results.values()} == {"posted"}

    def claim(claim_id: str) -> dict[str, Any]:
        got = auditor.get(f"/v1/claims/{refs[claim_id]}")
        assert got.status_code == 200
        return dict(got.json())

    assert (claim(paid["claim_id"])["status"], claim(paid["claim_id"])["outcome"]) == ("paid", "approved")
    partial = claim(partly["claim_id"])
    assert (partial["status"], partial["outcome"], partial["allowed_cents"], partial["paid_cents"]) == (
        "paid",
        "partly_approved",
        10000,
        8000,
    )
    refused = claim(denied["claim_id"])
    assert (refused["status"], refused["outcome"], refused["allowed_cents"]) == ("adjudicated", "denied", 0)
    history = auditor.get(f"/v1/claims/{refs[partly['claim_id']]}/history").json()
    events = [e["event"] for e in history["events"]]
    assert events == ["ClaimSubmitted", "ClaimAcknowledged", "ClaimAdjudicated", "ClaimPaid"]
    adjudicated = next(e for e in history["events"] if e["event"] == "ClaimAdjudicated")
    assert adjudicated["what"]["carc"] == ["CO45", "PR2"]
    assert adjudicated["what"]["outcome_label"] == "partly_approved"

    # The same 835 again changes nothing.
    replay = _import(payer, "/v1/imports/835", remittance, X12)
    assert replay.status_code == 200
    assert {r["status"] for r in replay.json()["results"]} == {"already_posted"}

    # A reversal and the corrected payment, in one 835, in that order (with another claim's payment:
    # an 835's total, BPR02, is never negative).
    corrected = write_835(
        [
            {"claim_id": late["claim_id"], "status": "1", "charge_cents": charge, "paid_cents": charge},
            {"claim_id": paid["claim_id"], "status": "22", "charge_cents": -charge, "paid_cents": -charge},
            {
                "claim_id": paid["claim_id"],
                "status": "1",
                "charge_cents": charge,
                "paid_cents": charge - 500,
                "adjustments": [("CO", "45", 500)],
            },
        ],
        payer_id="PAYER-ACME",
        trace_number="EFT-835-0002",
    )
    response = _import(payer, "/v1/imports/835", corrected, X12)
    assert response.status_code == 200, response.text
    assert [r["steps"] for r in response.json()["results"]] == [
        ["acknowledge", "adjudicate", "record_payment"],
        ["reverse_payment"],
        ["adjudicate", "record_payment"],
    ]
    after = claim(paid["claim_id"])
    assert (after["status"], after["paid_cents"], after["outcome"]) == ("paid", charge - 500, "partly_approved")
    events = [e["event"] for e in auditor.get(f"/v1/claims/{refs[paid['claim_id']]}/history").json()["events"]]
    assert events[-4:] == ["ClaimPaid", "ClaimPaymentReversed", "ClaimAdjudicated", "ClaimPaid"]

    response_fhir = auditor.get(f"/v1/claims/{refs[paid['claim_id']]}/claim-response")
    assert response_fhir.status_code == 200
    assert response_fhir.headers["content-type"].startswith("application/fhir+json")
    body = response_fhir.json()
    assert body["resourceType"] == "ClaimResponse" and body["outcome"] == "complete"
    assert body["payment"]["amount"]["value"] == pytest.approx((charge - 500) / 100)


def test_an_835_for_claims_it_cannot_match_is_refused_per_clp(clients: dict[str | None, httpx.Client]) -> None:
    payer_beta = clients["PAYER-BETA"]
    mine = fresh_claim()  # addressed to PAYER-ACME: PAYER-BETA's 835 does not find it
    _import(clients["PROV-A"], "/v1/imports/837", _837([mine]), X12)
    remittance = write_835(
        [
            {"claim_id": mine["claim_id"], "status": "1", "charge_cents": 12500, "paid_cents": 12500},
            {"claim_id": "NO-SUCH-CLAIM", "status": "1", "charge_cents": 12500, "paid_cents": 12500},
        ],
        payer_id="PAYER-BETA",
        trace_number="EFT-BETA-1",
    )
    response = _import(payer_beta, "/v1/imports/835", remittance, X12)
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == ["not_found", "not_found"]
    assert response.json()["summary"]["refused"] == 2


def test_a_replacement_in_an_837_names_the_original_by_its_claim_id(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    original = fresh_claim()
    [first] = _import(provider, "/v1/imports/837", _837([original]), X12).json()["results"]
    line = make_line_data(units=2, charge_cents=25000)
    replacement = {
        **original,
        "claim_id": original["claim_id"] + "R",
        "frequency": "7",
        "original_claim_id": original["claim_id"],
        "service_lines": [line],
        "total_charge_cents": 25000,
    }
    response = _import(provider, "/v1/imports/837", _837([replacement], control=3), X12)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == "recorded"
    assert result["replaced"]["ref"] == first["ref"]
    assert clients["AUDIT-1"].get(f"/v1/claims/{first['ref']}").json()["status"] == "replaced"

    # Another provider cannot reach PROV-A's claim by its claim id.
    stranger = {**replacement, "claim_id": "B-" + original["claim_id"], "original_claim_id": first["claim_id"]}
    refused = _import(clients["PROV-B"], "/v1/imports/837", _837([stranger], control=4), X12)
    [item] = refused.json()["results"]
    assert item["status"] == "invalid"
    assert item["problems"][0]["rule"] == "original_not_found"


def test_a_fhir_claim_records_the_keys_of_the_same_claim_as_json(clients: dict[str | None, httpx.Client]) -> None:
    provider = clients["PROV-A"]
    claim = fresh_claim(lines=2)
    response = provider.post("/v1/imports/fhir", json=write_fhir_claim(claim), headers=FHIR)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == "recorded" and result["claim_id"] == claim["claim_id"]
    as_json = provider.post("/v1/claims", json=claim)
    assert as_json.status_code == 409
    assert error_of(as_json)["details"]["existing"]["exact_key"] == result["exact_key"]

    bundle = write_fhir_bundle([fresh_claim(), fresh_claim()])
    response = provider.post("/v1/imports/fhir", json=bundle, headers=FHIR)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["recorded", "recorded"]


def test_a_file_that_cannot_be_read_is_refused_whole(clients: dict[str | None, httpx.Client]) -> None:
    provider, auditor = clients["PROV-A"], clients["AUDIT-1"]
    before = len(all_refs(auditor))
    good = _837([fresh_claim(), fresh_claim()])
    truncated = good[: len(good) // 2]
    response = _import(provider, "/v1/imports/837", truncated, X12, file="cut.837")
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "format_invalid"
    assert error["details"]["rule"] == "x12_truncated"
    assert error["details"]["source"]["file"] == "cut.837"
    assert len(all_refs(auditor)) == before, "nothing of a refused file is written"

    not_utf8 = good.replace(b"NM1*IL", b"NM1*IL\xff", 1)
    response = _import(provider, "/v1/imports/837", not_utf8, X12)
    assert response.status_code == 422
    assert error_of(response)["details"]["rule"] == "not_utf8"

    not_fhir = provider.post("/v1/imports/fhir", content=b'{"resourceType": "Patient"}', headers=FHIR)
    assert not_fhir.status_code == 422
    assert error_of(not_fhir)["code"] == "format_invalid"
    assert len(all_refs(auditor)) == before


def test_a_claim_without_service_lines_is_answered_and_the_rest_recorded(
    clients: dict[str | None, httpx.Client],
) -> None:
    claims = [fresh_claim(), fresh_claim(), fresh_claim()]
    text = _837(claims).decode()
    # Drop the service line loop (LX, SV1, DTP) of the second claim.
    segments = [segment.strip() for segment in text.split("~")]
    clm = [i for i, s in enumerate(segments) if s.startswith("CLM*")]
    second = segments[clm[1] : clm[2]]
    kept = [s for s in second if not s.startswith(("LX*", "SV1*", "DTP*472"))]
    segments[clm[1] : clm[2]] = kept
    st_index = next(i for i, s in enumerate(segments) if s.startswith("ST*"))
    se_index = next(i for i, s in enumerate(segments) if s.startswith("SE*"))
    parts = segments[se_index].split("*")
    segments[se_index] = f"SE*{se_index - st_index + 1}*{parts[2]}"
    response = _import(clients["PROV-A"], "/v1/imports/837", "~".join(segments).encode(), X12)
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["recorded", "invalid", "recorded"]
    assert results[1]["claim_id"] == claims[1]["claim_id"]
    assert results[1]["problems"] and results[1]["source"]["segment"] == "CLM"


def test_the_roles_of_the_import_endpoints(clients: dict[str | None, httpx.Client]) -> None:
    body = _837([fresh_claim()])
    assert _import(clients["PAYER-ACME"], "/v1/imports/837", body, X12).status_code == 403
    assert _import(clients["PROV-A"], "/v1/imports/835", body, X12).status_code == 403
    assert _import(clients[None], "/v1/imports/837", body, X12).status_code == 401


def test_the_import_command_sums_up_a_folder(gateway: LiveGateway, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    claims = [fresh_claim() for _ in range(3)]
    (folder / "a.837").write_bytes(_837(claims))
    (folder / "b.json").write_text(json.dumps(write_fhir_claim(fresh_claim())))
    (folder / "c.837").write_bytes(_837(claims[:1], control=9))  # a duplicate of a.837's first claim
    (folder / "d.txt").write_bytes(b"not a claim file")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "import",
            str(folder),
            "--key",
            gateway.keys["PROV-A"],
            "--url",
            gateway.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # d.txt was refused
    assert "4 recorded (0 suspect), 1 exact duplicates, 0 invalid" in run.stdout, run.stdout
    assert "files         4 (1 refused whole)" in run.stdout
    assert "d.txt" in run.stderr and "neither an X12 interchange" in run.stderr


def test_files_may_be_larger_than_a_json_body(gateway: LiveGateway, clients: dict[str | None, httpx.Client]) -> None:
    """The import endpoints take up to max_import_bytes, the JSON endpoints max_body_bytes."""
    limit = gateway.settings.max_body_bytes
    claims = []
    body = b""
    while len(body) <= limit:
        claims += [fresh_claim() for _ in range(100)]
        body = _837(claims)
    response = _import(clients["PROV-A"], "/v1/imports/837", body, X12)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["summary"]["recorded"] == len(claims)
    padded = b'{"claims": [' + b" " * limit + b"]}"
    too_large = clients["PROV-A"].post("/v1/claims/batch", content=padded, headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert error_of(too_large)["code"] == "body_too_large"
