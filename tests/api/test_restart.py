"""The embedded default over time: restarts keep everything, a stopped node answers 503 at once
and the gateway recovers by itself when it is back; the operator CLI; two gateways of one
consortium on one chain."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from tests.api.conftest import LiveGateway, fresh_claim, gateway_settings
from tests.api.helpers import advance, error_of, submit

QUICK_S = 1.0


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A gateway of this module's own (its data folder outlives its restarts)."""
    live = LiveGateway(gateway_settings(tmp_path_factory.mktemp("restarted"))).start()
    try:
        yield live
    finally:
        live.stop()


def test_a_restart_keeps_every_claim_key_and_record(own_gateway: LiveGateway) -> None:
    live = own_gateway
    assert set(live.keys) == {"OPERATOR", "PROV-A", "PAYER-ACME", "PAYER-BETA", "AUDIT-1"}
    document = fresh_claim()
    with live.client("PROV-A") as provider, live.client("PAYER-ACME") as payer:
        ref = submit(provider, document)["ref"]
        advance(payer, ref, "accepted")
    with live.client("OPERATOR") as operator:
        created = operator.post("/v1/admin/organisations", json={"name": "PROV-N", "role": "provider"})
        assert created.status_code == 201, created.text
        live.keys["PROV-N"] = created.json()["api_key"]["key"]
    with live.client("AUDIT-1") as auditor:
        before = auditor.get(f"/v1/claims/{ref}/history").json()
        log_before = auditor.get("/v1/audit/access-log", params={"limit": 1000}).json()["entries"]

    live.stop()
    live.start()

    assert live.runtime.first_run_keys == [], "the demo consortium is made (and its keys shown) on first run only"
    with live.client("AUDIT-1") as auditor:
        assert auditor.get(f"/v1/claims/{ref}/history").json() == before
        log_after = auditor.get("/v1/audit/access-log", params={"limit": 1000}).json()["entries"]
        assert log_after[: len(log_before)] == log_before
        assert auditor.get("/v1/audit/access-log/verify").json()["ok"] is True
    with live.client("PROV-A") as provider:
        again = provider.post("/v1/claims", json={**document, "claim_id": "AFTER-RESTART"})
        assert again.status_code == 409 and error_of(again)["details"]["existing"]["ref"] == ref
    with live.client("PROV-N") as newcomer:
        assert newcomer.get("/v1/me").json()["organisation"] == "PROV-N"
        submit(newcomer, fresh_claim())
    assert live.runtime.deployment_block > 0


def test_a_stopped_node_is_503_at_once_and_the_gateway_recovers(own_gateway: LiveGateway) -> None:
    live = own_gateway
    node = live.runtime.node
    assert node is not None
    with live.client("PROV-A") as provider, live.client("PAYER-ACME") as payer:
        ref = submit(provider, fresh_claim())["ref"]
        node.stop()
        try:
            for call in (
                lambda: provider.post("/v1/claims", json=fresh_claim()),
                lambda: provider.get(f"/v1/claims/{ref}"),
                lambda: payer.post(f"/v1/claims/{ref}/acknowledge", json={"accepted": True, "reason": "A2"}),
                lambda: provider.get("/readyz"),
            ):
                started = time.monotonic()
                answer = call()
                assert time.monotonic() - started < QUICK_S, "a stopped node must be answered at once"
                assert answer.status_code == 503, answer.text
                assert int(answer.headers["retry-after"]) >= 1
            retried = fresh_claim()
            refused = provider.post("/v1/claims", json=retried, headers={"Idempotency-Key": "during-outage"})
            assert error_of(refused)["code"] == "chain_unavailable"
        finally:
            node.start()
        # Back: the same gateway, nothing restarted but the node; what was recorded is still there.
        assert provider.get("/readyz").status_code == 200
        assert provider.get(f"/v1/claims/{ref}").json()["status"] == "submitted"
        advance(payer, ref, "accepted")
        submit(provider, fresh_claim())
        # A 503 is not saved against its Idempotency-Key: the client's retry runs the request.
        submit(provider, retried, headers={"Idempotency-Key": "during-outage"})


def test_the_operator_cli(own_gateway: LiveGateway) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(own_gateway.settings.data_dir)]
    env = {"CLAIMLEDGER_KEYSTORE_KDF_ITERATIONS": "1000"}
    # Beside the running server: the CLI uses its node.
    created = runner.invoke(cli, ["org", "create", "PAYER-CLI", "--role", "payer", *data], env=env)
    assert created.exit_code == 0, created.output
    key = created.output.split("API key (shown this once): ")[1].split()[0]
    with own_gateway.client(headers={"X-API-Key": key}) as holder:
        assert holder.get("/v1/me").json() == {
            **holder.get("/v1/me").json(),
            "organisation": "PAYER-CLI",
            "role": "payer",
        }
        issued = runner.invoke(cli, ["key", "issue", "PAYER-CLI", "--label", "second", *data], env=env)
        assert issued.exit_code == 0, issued.output
        prefix = key[:12]
        revoked = runner.invoke(cli, ["key", "revoke", prefix, *data], env=env)
        assert revoked.exit_code == 0 and prefix in revoked.output
        assert holder.get("/v1/me").status_code == 401
    status = runner.invoke(cli, ["status", *data], env=env)
    assert status.exit_code == 0, status.output
    assert "running at http://127.0.0.1:" in status.output and "PAYER-CLI (payer)" in status.output
    duplicate = runner.invoke(cli, ["org", "create", "PAYER-CLI", "--role", "payer", *data], env=env)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output


def test_two_gateways_share_one_ledger(own_gateway: LiveGateway, tmp_path: Path) -> None:
    """A second consortium member's gateway: its own data folder and database, the first's node,
    deployment address and fingerprint keyring. A duplicate is caught whichever gateway it comes through."""
    first = own_gateway
    second = LiveGateway(
        gateway_settings(
            tmp_path / "second",
            rpc_url=first.runtime.rpc_url,
            contract_address=first.runtime.contract.address,
            keyring_path=first.settings.keyring_file,
            demo_consortium=False,
        )
    ).start()
    try:
        operator = second.runtime.consortium.issue_key("OPERATOR")
        second.keys["OPERATOR"] = operator.key
        with second.client("OPERATOR") as admin:
            for name, role in (("PROV-TWO", "provider"), ("AUDIT-TWO", "auditor")):
                made = admin.post("/v1/admin/organisations", json={"name": name, "role": role})
                assert made.status_code == 201, made.text
                second.keys[name] = made.json()["api_key"]["key"]
        document = fresh_claim()
        with first.client("PROV-A") as provider_one:
            ref = submit(provider_one, document)["ref"]
        with second.client("PROV-TWO") as provider_two, second.client("AUDIT-TWO") as auditor_two:
            refused = provider_two.post("/v1/claims", json={**document, "claim_id": "VIA-TWO"})
            assert refused.status_code == 409
            assert error_of(refused)["details"]["existing"]["ref"] == ref
            seen = auditor_two.get(f"/v1/claims/{ref}").json()
            assert (seen["provider"], seen["payer"]) == ("PROV-A", "PAYER-ACME")
            mine = submit(provider_two, fresh_claim())["ref"]
        with first.client("AUDIT-1") as auditor_one:
            assert auditor_one.get(f"/v1/claims/{mine}").json()["provider"] == "PROV-TWO"
            history = auditor_one.get(f"/v1/claims/{ref}/history").json()
            assert [e["who"]["organisation"] for e in history["events"] if e["event"] == "DuplicateRefused"] == [
                "PROV-TWO"
            ]
    finally:
        second.stop()
