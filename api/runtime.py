"""What a gateway runs on, opened in one place for the server and the CLI alike.

The node (the embedded anvil over the data folder, or an RPC URL), the deployment (made
once, recorded in the data folder), the SQL store, the fingerprint keyring, the document
key, the consortium and the ledger service. The embedded node records its RPC URL in the
data folder while it runs, so ``claimledger org create`` beside a running server uses that
node instead of starting a second one over the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine
from web3 import Web3

import api.idempotency  # noqa: F401 - its table joins ledger.store.metadata before create_all
from api.settings import DEFAULT_DEV_FUNDING_WEI, Settings
from ledger.audit import AccessLog
from ledger.chain import ClaimLedgerContract, connect
from ledger.child_process import every
from ledger.consortium import DEV_CHAIN_IDS, OPERATOR_NAME, Consortium, IssuedKey, dev_operator_account
from ledger.deploy import ensure_deployed, load_deployment
from ledger.documents import DocumentKey, DocumentVault
from ledger.errors import ConfigurationError
from ledger.fingerprint import Keyring
from ledger.index_follower import IndexFollower
from ledger.node import LocalNode, NodeConfig, rpc_answers
from ledger.service import ClaimLedgerService
from ledger.store import create_tables, make_engine

log = logging.getLogger("claimledger")

NODE_FILE = "node.json"
NODE_BUSY_S = 10.0
"""A call to the node under way for less than this, the last one having found it up, counts as the node being
up and busy (mining: a block at 1,300,000 claims took anvil 4.5-4.8 s), not as it being gone."""
STEP_CHECK_S = 2.0  # how often the background loop looks for payer steps the node has lost
KEYS_CHANGED_FILE = "api-keys.changed"
"""Replaced in the data folder whenever an API key is revoked (by the CLI too): every gateway over the
folder then forgets the keys it had found good (api.gateway)."""
DEMO_MARKER = "demo-consortium.json"
DEMO_CONSORTIUM = (
    ("PROV-A", "provider"),
    ("PAYER-ACME", "payer"),
    ("PAYER-BETA", "payer"),
    ("AUDIT-1", "auditor"),
)


@dataclass
class Runtime:
    settings: Settings
    rpc_url: str
    w3: Web3
    operator: LocalAccount
    contract: ClaimLedgerContract
    deployment_block: int
    engine: Engine
    keyring: Keyring
    consortium: Consortium
    service: ClaimLedgerService
    access_log: AccessLog
    node: LocalNode | None = None
    first_run_keys: list[IssuedKey] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _indexer: threading.Thread | None = None
    _follower: IndexFollower | None = None
    _node_probe: asyncio.Future[bool] | None = None  # the probe under way, shared by the requests awaiting it

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, settings: Settings, *, serve: bool) -> Runtime:
        """Open everything. ``serve``: this process is the server (it owns the embedded node)."""
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        node, rpc_url = _node_for(settings, serve=serve)
        try:
            w3 = connect(rpc_url, poa=settings.poa_flag)
            chain_id = int(w3.eth.chain_id)
            operator = _operator_account(settings, chain_id)
            address, block = _deployment(settings, w3, operator)
            contract = ClaimLedgerContract(w3, address)
            engine = make_engine(settings.sql_url)
            create_tables(engine)  # the consortium and idempotency tables, if make_engine ran before
            keyring = _keyring(settings)
            _accept_fingerprint_key(contract, keyring, operator)
            vault = DocumentVault(engine, DocumentKey.load_or_create(settings.document_key_file))
            funding = settings.org_funding_wei
            if funding is None:
                funding = DEFAULT_DEV_FUNDING_WEI if chain_id in DEV_CHAIN_IDS else 0
            consortium = Consortium(
                engine,
                contract,
                operator,
                passphrase=settings.keystore_passphrase.get_secret_value(),
                kdf_iterations=settings.kdf_iterations,
                funding_wei=funding,
            )
            service = ClaimLedgerService(
                rpc_url=rpc_url,
                contract=contract,
                engine=engine,
                keyring=keyring,
                vault=vault,
                max_tx_gas=settings.max_tx_gas,
                max_wait_ms=settings.pipeline_max_wait_ms,
                max_in_flight=settings.pipeline_max_in_flight,
                submit_timeout_s=settings.submit_timeout_s,
                start_block=block,
            )
        except BaseException:
            if node is not None:
                _forget_node(settings)
                node.stop()
            raise
        return cls(
            settings,
            rpc_url,
            w3,
            operator,
            contract,
            block,
            engine,
            keyring,
            consortium,
            service,
            AccessLog(engine),
            node,
        )

    def create_demo_consortium(self) -> list[IssuedKey]:
        """On first run: a provider, two payers, an auditor, and an operator key; their keys, to show once.

        Resumable: a first run that stopped half way finishes on the next start (and only then
        shows the keys). A data folder whose operator made other organisations first gets no demo.
        """
        marker = self.settings.data_dir / DEMO_MARKER
        if marker.exists():
            return []
        known = {o.name: o for o in self.consortium.organisations()}
        demo_names = {name for name, _ in DEMO_CONSORTIUM}
        if set(known) - demo_names:
            return []
        with_keys = {k.organisation for k in self.consortium.api_keys() if k.revoked_at is None}
        keys = []
        if OPERATOR_NAME not in with_keys:
            keys.append(self.consortium.issue_key(OPERATOR_NAME, label="demo operator"))
        for name, role in DEMO_CONSORTIUM:
            if name not in known or known[name].status != "active":
                self.consortium.create_organisation(name, role)
            if name not in with_keys:
                keys.append(self.consortium.issue_key(name, label="demo"))
        marker.write_text(json.dumps({"organisations": [n for n, _ in DEMO_CONSORTIUM], "at": int(time.time())}) + "\n")
        self.first_run_keys = keys
        return keys

    # ------------------------------------------------------------------ the node

    def node_answered_recently(self) -> bool:
        """Whether a call to the node started within settings.node_check_s found it up (the pipelines' and
        the indexer's calls count) and none since found it unreachable; or the node is busy: calls to it
        started within NODE_BUSY_S wait for their answers and the last to end found it up (anvil answers no
        call while it mines a block). A request then goes ahead rather than wait on a probe of its own for
        the block to be made."""
        rpc = self.service.rpc
        return rpc.answered_within(self.settings.node_check_s) or rpc.busy_within(NODE_BUSY_S)

    def node_answers(self) -> bool:
        """Whether the node answers: a probe, unless a recent call found it up or calls wait on it busy
        (:meth:`node_answered_recently`)."""
        return self.node_answered_recently() or self.service.rpc.answers()

    async def node_answers_async(self) -> bool:
        """:meth:`node_answers` on the event loop; the requests that find no recent answer share one
        probe (in a worker thread), so a burst of them costs one probe, not one each."""
        if self.node_answered_recently():
            return True
        probe = self._node_probe
        if probe is None or probe.done():
            probe = asyncio.ensure_future(anyio.to_thread.run_sync(self.node_answers))
            self._node_probe = probe
        return await asyncio.shield(probe)

    # ------------------------------------------------------------------ background indexer

    def start_indexer(self) -> None:
        """Start following the chain into the index (a process of its own, or this thread's loop) and
        the loop that resends lost payer steps and anchors the access log."""
        self._stopping.clear()
        if self.settings.index_process:
            self._follower = IndexFollower(
                self.rpc_url,
                self.contract.address,
                self.settings.sql_url,
                self.deployment_block,
                self.settings.index_interval_s,
                self.settings.log_level,
            ).start()
        self._indexer = threading.Thread(target=self._index_loop, name="indexer", daemon=True)
        self._indexer.start()

    @property
    def follower(self) -> IndexFollower | None:
        """The indexer process, when the index is followed in one (settings.index_process)."""
        return self._follower

    def _keep_follower(self) -> None:
        follower = self._follower
        if follower is not None and not follower.running and not self._stopping.is_set():
            log.error("indexer: its process ended (exit code %s); starting it again", follower.exit_code)
            follower.start()

    def _index_loop(self) -> None:
        next_anchor = time.monotonic() + self.settings.audit_anchor_interval_s
        next_step_check = time.monotonic()

        def work() -> None:
            nonlocal next_anchor, next_step_check
            if self._follower is None:
                self.service.index()
            else:
                self._keep_follower()
            if self.node is not None and not self._stopping.is_set() and not self.node.keep_block_maker():
                log.error("node: its block maker had ended; started it again")
            if time.monotonic() >= next_step_check:  # payer steps a node restored from an older state lost
                next_step_check = time.monotonic() + STEP_CHECK_S
                self.service.resend_lost_steps()
            if time.monotonic() >= next_anchor:
                next_anchor = time.monotonic() + self.settings.audit_anchor_interval_s
                self.anchor_access_log()

        if not self._stopping.wait(self.settings.index_interval_s):
            every(self.settings.index_interval_s, self._stopping, work, "background")

    def anchor_access_log(self) -> dict[str, object] | None:
        """Write the access log's head hash on chain, signed by one of this gateway's members
        (an auditor if it holds one); None if nothing new, or no member to sign."""
        members = [o for o in self.consortium.organisations() if o.status == "active"]
        members.sort(key=lambda o: (o.role != "auditor", o.created_at))
        if not members:
            return None
        signer = self.consortium.member(members[0].name)
        return self.access_log.anchor(self.contract, signer.account)

    def close(self) -> None:
        self._stopping.set()
        if self._indexer is not None:
            self._indexer.join(10)
            self._indexer = None
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        self.service.close()
        self.engine.dispose()
        if self.node is not None:
            _forget_node(self.settings)
            self.node.stop()
            self.node = None


def note_keys_changed(data_dir: Path) -> None:
    """Tell every gateway over ``data_dir`` that API keys changed (a new file each time: a new inode)."""
    path = Path(data_dir) / KEYS_CHANGED_FILE
    tmp = path.with_name(f"{KEYS_CHANGED_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(f"{time.time_ns()}\n")
        tmp.replace(path)


# ---------------------------------------------------------------------- pieces


def _node_file(settings: Settings) -> Path:
    return settings.data_dir / NODE_FILE


def _running_node(settings: Settings) -> str | None:
    """The RPC URL of an embedded node another process runs over this data folder, if it answers."""
    path = _node_file(settings)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    url = recorded.get("rpc_url")
    return url if isinstance(url, str) and rpc_answers(url) else None


def _node_for(settings: Settings, *, serve: bool) -> tuple[LocalNode | None, str]:
    if not settings.embedded:
        assert settings.rpc_url is not None
        return None, settings.rpc_url
    running = _running_node(settings)
    if running is not None:
        if serve:
            raise ConfigurationError(
                f"a node already runs over {settings.data_dir} at {running} (another `claimledger serve`?): "
                "stop it first, or give this gateway its own CLAIMLEDGER_DATA_DIR"
            )
        return None, running
    config = NodeConfig(
        data_dir=settings.data_dir,
        port=settings.node_port,
        gas_limit=settings.node_gas_limit,
        block_time=settings.node_block_time_s,
        state_interval=settings.node_state_interval_s,
        gather_blocks=settings.node_gather_blocks,
    )
    node = LocalNode(config).start()
    tmp = _node_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps({"rpc_url": node.rpc_url, "pid": os.getpid()}) + "\n")
    tmp.replace(_node_file(settings))
    return node, node.rpc_url


def _forget_node(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        _node_file(settings).unlink()


def _operator_account(settings: Settings, chain_id: int) -> LocalAccount:
    if settings.operator_private_key is not None:
        account: LocalAccount = Account.from_key(settings.operator_private_key.get_secret_value())
        return account
    if settings.embedded or chain_id in DEV_CHAIN_IDS:
        return dev_operator_account()
    raise ConfigurationError(
        f"chain {chain_id} is not a development chain: set CLAIMLEDGER_OPERATOR_PRIVATE_KEY to the operator's key"
    )


def _deployment(settings: Settings, w3: Web3, operator: LocalAccount) -> tuple[str, int]:
    if settings.contract_address:
        address = Web3.to_checksum_address(settings.contract_address)
        if not w3.eth.get_code(address):
            raise ConfigurationError(f"CLAIMLEDGER_CONTRACT_ADDRESS {address} holds no contract on this chain")
        recorded = load_deployment(settings.data_dir)
        block = recorded.block_number if recorded and recorded.address == address else 0
        return address, block
    deployment = ensure_deployed(w3, settings.data_dir, operator)
    return deployment.address, deployment.block_number


def _keyring(settings: Settings) -> Keyring:
    path = settings.keyring_file
    if path.exists():
        return Keyring.load(path)
    if settings.contract_address:
        raise ConfigurationError(
            f"joining deployment {settings.contract_address} needs the consortium's fingerprint keyring at {path}: "
            "copy it from the first gateway (CLAIMLEDGER_KEYRING_PATH)"
        )
    return Keyring.generate(path)


def _accept_fingerprint_key(contract: ClaimLedgerContract, keyring: Keyring, operator: LocalAccount) -> None:
    key_id = keyring.current.key_id
    if not contract.call("isFingerprintKeyAccepted", key_id):
        contract.set_fingerprint_key(key_id, True, sender=operator)
