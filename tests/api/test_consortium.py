"""Organisations' keys and API keys at rest, the settings' guard on secrets, and failures
that must not leak internals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from pydantic import SecretStr, ValidationError

from api.settings import Settings
from ledger.rpc import RpcClient
from tests.api.conftest import TEST_KDF_ITERATIONS, LiveGateway
from tests.api.helpers import error_of


def _database_bytes(gateway: LiveGateway) -> bytes:
    """Everything SQLite holds on disk for the gateway: the database file and its write-ahead log."""
    folder = gateway.settings.data_dir
    return b"".join(p.read_bytes() for p in (folder / "claimledger.db", folder / "claimledger.db-wal") if p.exists())


def test_chain_keys_are_kept_only_in_encrypted_keystores(gateway: LiveGateway) -> None:
    db = gateway.settings.data_dir / "claimledger.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, address, keystore FROM organisations WHERE role != 'operator'").fetchall()
    raw = _database_bytes(gateway)
    passphrase = gateway.settings.keystore_passphrase.get_secret_value()
    assert {name for name, _, _ in rows} >= {"PROV-A", "PROV-B", "PAYER-ACME", "PAYER-BETA", "AUDIT-1"}
    for _, address, keystore in rows:
        document = json.loads(keystore)
        assert document["crypto"]["kdf"] == "pbkdf2"
        assert document["crypto"]["kdfparams"]["c"] == TEST_KDF_ITERATIONS
        private_key = Account.decrypt(document, passphrase)
        assert Account.from_key(private_key).address == address
        assert private_key.hex().encode() not in raw and bytes(private_key) not in raw
        with pytest.raises(ValueError):
            Account.decrypt(document, passphrase + "x")


def test_api_keys_are_stored_hashed(gateway: LiveGateway) -> None:
    raw = _database_bytes(gateway)
    for key in gateway.keys.values():
        assert key.encode() not in raw
        assert key[:12].encode() in raw  # the prefix, to find and revoke it


def test_placeholder_secrets_are_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None, environment="production", keystore_passphrase=SecretStr("changethis"))  # type: ignore[call-arg]
    real = SecretStr("a long and real passphrase")
    strong = Settings(_env_file=None, environment="production", keystore_passphrase=real)  # type: ignore[call-arg]
    assert strong.kdf_iterations == 200_000
    assert Settings(_env_file=None).kdf_iterations == 20_000  # type: ignore[call-arg]


def test_an_unexpected_failure_is_500_without_internals(
    gateway: LiveGateway, clients: dict[str | None, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals: /srv/db password=hunter2")

    monkeypatch.setattr(gateway.runtime.service, "claim_for", broken)
    answer = clients["AUDIT-1"].get("/v1/claims/0x" + "ab" * 32 + ":1", headers={"X-Request-ID": "req-500"})
    assert answer.status_code == 500
    error = error_of(answer)
    assert error["code"] == "internal_error" and error["details"] == {"request_id": "req-500"}
    assert "hunter2" not in answer.text and "RuntimeError" not in answer.text


def test_unknown_paths_and_methods_answer_in_the_same_shape(clients: dict[str | None, httpx.Client]) -> None:
    missing = clients["PROV-A"].get("/v1/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = clients["PROV-A"].delete("/v1/claims")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


def test_the_embedded_node_mines_on_an_interval_when_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.runtime import _forget_node, _node_for

    monkeypatch.setenv("CLAIMLEDGER_NODE_BLOCK_TIME_S", "2")
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.node_block_time_s == 2
    node, _ = _node_for(settings, serve=True)
    assert node is not None
    try:
        assert node.command()[node.command().index("--block-time") + 1] == "2"
        assert RpcClient(node.rpc_url).call("anvil_getAutomine") is False
    finally:
        node.stop()
        _forget_node(settings)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Settings(_env_file=None, node_block_time_s=0)  # type: ignore[call-arg]
