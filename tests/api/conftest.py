"""Fixtures of the gateway tests: the real app served by uvicorn in a thread, over real HTTP.

Each gateway has its own data folder (SQLite file, keys, anvil state) and its embedded anvil
on a free port, exactly as ``claimledger serve`` runs it. One gateway serves the whole session;
tests that restart or stop things start their own.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from api.runtime import Runtime
from api.settings import Settings
from ledger.node import free_port
from tests.factories import make_claim_data, make_line_data

START_TIMEOUT_S = 60.0
TEST_KDF_ITERATIONS = 1_000  # PBKDF2 rounds for test keystores: fast; production uses 200,000
TEST_MAX_BODY_BYTES = 256 * 1024

_numbers = itertools.count(1)


def fresh_claim(**overrides: Any) -> dict[str, Any]:
    """A clean claim no other test has sent: its own member id and claim id."""
    n = next(_numbers)
    overrides.setdefault("member_id", f"MBRAPI{n:08d}")
    overrides.setdefault("claim_id", f"API-{n:06d}")
    return make_claim_data(**overrides)


def gateway_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "keystore_kdf_iterations": TEST_KDF_ITERATIONS,
        "index_interval_s": 0.1,
        "max_body_bytes": TEST_MAX_BODY_BYTES,
        "audit_anchor_interval_s": 3600,
        "retry_after_s": 2,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class LiveGateway:
    """One gateway process' worth: the app, its uvicorn server in a thread, and its API keys."""

    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    app: Any = None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Runtime:
        runtime = self.app.state.gateway.runtime
        assert runtime is not None, "the gateway is not running"
        return runtime

    def start(self) -> LiveGateway:
        self.app = create_app(self.settings)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the gateway on {self.url} failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway on {self.url} did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        for issued in self.runtime.first_run_keys:
            self.keys.setdefault(issued.organisation, issued.key)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(60)
            assert not self.thread.is_alive(), "the gateway did not stop"
        self.server = self.thread = None

    def client(self, organisation: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if organisation is not None:
            headers["Authorization"] = f"Bearer {self.keys[organisation]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """The session's gateway: the demo consortium, plus a second provider PROV-B made through the admin API."""
    live = LiveGateway(gateway_settings(tmp_path_factory.mktemp("gateway"))).start()
    try:
        with live.client("OPERATOR") as operator:
            created = operator.post("/v1/admin/organisations", json={"name": "PROV-B", "role": "provider"})
            assert created.status_code == 201, created.text
            live.keys["PROV-B"] = created.json()["api_key"]["key"]
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def clients(gateway: LiveGateway) -> Iterator[dict[str | None, httpx.Client]]:
    """An HTTP client per organisation of the session's gateway, and one without a key (None)."""
    made: dict[str | None, httpx.Client] = {name: gateway.client(name) for name in gateway.keys}
    made[None] = gateway.client()
    try:
        yield made
    finally:
        for c in made.values():
            c.close()


__all__ = ["LiveGateway", "fresh_claim", "gateway_settings", "make_line_data"]
