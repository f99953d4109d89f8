"""Single contract transactions (payer steps, multicalls of them) through the outbox.

A step is encoded, estimated (a refusal surfaces here as the contract's custom error, before
anything is stored), signed, and stored in the outbox before it is sent; then the caller waits
for its receipt. If the node later loses the blocks that held it (restored from an older
state), :meth:`StepSender.resend_lost` sends the same signed bytes again, in nonce order: it
runs before every step of the account, and from the gateway's background loop for every
account, so a step the gateway answered is not lost with the node's last blocks.

Rows for these transactions have ``claim_count`` 0; the submission pipeline's have its claims'
count, and it reconciles only its own (provider) accounts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, delete, insert, select, update

from ledger.chain import ContractAbi, TransactionOutcome, outcome_of, sign_call
from ledger.errors import ChainUnavailableError, ContractRevertError, LedgerError
from ledger.rpc import RpcClient, RpcError
from ledger.store import outbox, writing

log = logging.getLogger(__name__)

STEP_CLAIM_COUNT = 0
"""``outbox.claim_count`` of a step transaction (a pipeline batch holds one claim or more)."""
GAS_HEADROOM = 1.25  # the estimate, plus room for state that moves between estimate and mining
GAS_EXTRA = 20_000
RECEIPT_TIMEOUT_S = 60.0
RECEIPT_POLL_S = 0.002
RECEIPT_POLL_MAX_S = 0.05


class StepSender:
    """Sends step transactions of many accounts, one at a time per account, through the outbox."""

    def __init__(self, rpc: RpcClient, engine: Engine, contract_address: str, abi: ContractAbi) -> None:
        self.rpc = rpc
        self.engine = engine
        self.address = contract_address
        self.abi = abi
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._chain_id: int | None = None
        self.resent = 0

    def _lock(self, address: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(address, threading.Lock())

    # ------------------------------------------------------------------ sending

    def transact(self, account: LocalAccount, function: str, args: Sequence[Any], *, what: str) -> TransactionOutcome:
        """Run ``function(*args)`` signed by ``account``; its outcome once mined. ContractRevertError when
        the contract refuses it (nothing stored); ChainUnavailableError when the node stops answering
        after the step was stored (it is kept, and sent again once the node is back)."""
        data = self.abi.encode_call(function, list(args))
        with self._lock(account.address):
            self._resend_lost(account.address)
            call = {"from": account.address, "to": self.address, "data": "0x" + data.hex()}
            try:
                estimate = int(self.rpc.call("eth_estimateGas", call), 16)
            except RpcError as exc:
                raise self._refusal(exc, what) from None
            nonce = self._next_nonce(account.address)
            tx_hash, raw = self._sign(account, data, nonce, estimate)
            self._store(account.address, nonce, tx_hash, raw)
            try:
                self.rpc.send_raw(raw)
                receipt = self._wait_receipt(tx_hash, what)
            except RpcError as exc:
                if exc.already_known():
                    receipt = self._wait_receipt(tx_hash, what)
                else:
                    self._forget(tx_hash)  # the node refused it: it never reached the chain, its nonce is free
                    raise
            except ChainUnavailableError as exc:
                raise ChainUnavailableError(
                    f"{what}: the node stopped answering after {tx_hash} was signed and kept ({exc}); it is sent "
                    "again when the node is back: read the claim's history before sending the step again",
                    retry_after=exc.retry_after,
                ) from exc
            block = int(receipt["blockNumber"], 16)
            if int(receipt["status"], 16) != 1:
                self._mark(tx_hash, "reverted", block)
                raise self._reverted_reason(call, block, tx_hash, what)
            self._mark(tx_hash, "mined", block)
            return outcome_of(receipt, self.address, self.abi)

    def _next_nonce(self, address: str) -> int:
        with self.engine.connect() as conn:
            top = conn.execute(
                select(outbox.c.nonce)
                .where(outbox.c.account == address, outbox.c.status.in_(("signed", "sent", "mined", "reverted")))
                .order_by(outbox.c.nonce.desc())
                .limit(1)
            ).scalar()
        pending = self.rpc.nonce(address, "pending")
        return max(pending, (top + 1) if top is not None else 0)

    def _sign(self, account: LocalAccount, data: bytes, nonce: int, estimate: int) -> tuple[str, bytes]:
        if self._chain_id is None:
            self._chain_id = self.rpc.chain_id()
        return sign_call(
            account,
            chain_id=self._chain_id,
            nonce=nonce,
            to=self.address,
            data=data,
            gas=int(estimate * GAS_HEADROOM) + GAS_EXTRA,
            max_fee=max(self.rpc.gas_price() * 2, 1),
        )

    def _store(self, address: str, nonce: int, tx_hash: str, raw: bytes) -> None:
        now = int(time.time())
        with writing(self.engine) as conn:
            conn.execute(
                insert(outbox).values(
                    account=address,
                    nonce=nonce,
                    tx_hash=tx_hash,
                    raw=raw,
                    claim_count=STEP_CLAIM_COUNT,
                    status="signed",
                    created_at=now,
                    updated_at=now,
                )
            )

    def _forget(self, tx_hash: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(delete(outbox).where(outbox.c.tx_hash == tx_hash))

    def _mark(self, tx_hash: str, status: str, block: int | None = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": int(time.time())}
        if block is not None:
            values["block_number"] = block
        with writing(self.engine) as conn:
            conn.execute(update(outbox).where(outbox.c.tx_hash == tx_hash).values(**values))

    def _wait_receipt(self, tx_hash: str, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        poll = RECEIPT_POLL_S
        while time.monotonic() < deadline:
            receipt: dict[str, Any] | None = self.rpc.receipt(tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(poll)
            poll = min(poll * 1.5, RECEIPT_POLL_MAX_S)
        raise ChainUnavailableError(
            f"{what}: no receipt for {tx_hash} within {RECEIPT_TIMEOUT_S:.0f} s; the step is kept and may still "
            "land: read the claim's history before sending it again",
            retry_after=RECEIPT_TIMEOUT_S,
        )

    def _refusal(self, exc: RpcError, what: str) -> LedgerError:
        revert = exc.data if isinstance(exc.data, str) else None
        if revert and len(revert) >= 10:
            name, args = self.abi.decode_error(revert)
            return ContractRevertError(name, args, call=what)
        return exc

    def _reverted_reason(self, call: dict[str, Any], block: int, tx_hash: str, what: str) -> LedgerError:
        """Mined but reverted (state moved between estimate and mining): replay it for the reason."""
        try:
            self.rpc.eth_call(call, hex(max(block - 1, 0)))
        except RpcError as exc:
            refusal = self._refusal(exc, what)
            if isinstance(refusal, ContractRevertError):
                return refusal
        return ContractRevertError("Revert", {"transaction": tx_hash}, call=what)

    # ------------------------------------------------------------------ recovery

    def resend_lost(self) -> int:
        """For every account with step transactions: send again, with the same bytes and in nonce order,
        those the chain does not have (lost with the node's last blocks, or never sent). How many."""
        with self.engine.connect() as conn:
            accounts = list(
                conn.execute(
                    select(outbox.c.account).where(outbox.c.claim_count == STEP_CLAIM_COUNT).distinct()
                ).scalars()
            )
        resent = 0
        for address in accounts:
            with self._lock(address):
                resent += self._resend_lost(address)
        return resent

    def _resend_lost(self, address: str) -> int:
        chain_nonce = self.rpc.nonce(address, "latest")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.tx_hash, outbox.c.raw, outbox.c.nonce)
                .where(outbox.c.account == address, outbox.c.claim_count == STEP_CLAIM_COUNT)
                .where(outbox.c.nonce >= chain_nonce, outbox.c.status.in_(("signed", "sent", "mined", "reverted")))
                .order_by(outbox.c.nonce)
            ).all()
        if not rows:
            return 0
        log.warning(
            "the node lacks %d step transaction(s) of %s from nonce %d (restored from an older state?): "
            "sending the same bytes again",
            len(rows),
            address,
            chain_nonce,
        )
        for row in rows:
            try:
                self.rpc.send_raw(row.raw)
            except RpcError as exc:
                if not exc.already_known(nonce_used=True):
                    raise
        for row in rows:
            receipt = self._wait_receipt(row.tx_hash, "a step sent again")
            status = "mined" if int(receipt["status"], 16) == 1 else "reverted"
            if status == "reverted":  # the chain around it came back in another order: the step no longer holds
                log.error("step %s (nonce %d) sent again was refused by the contract this time", row.tx_hash, row.nonce)
            self._mark(row.tx_hash, status, int(receipt["blockNumber"], 16))
        self.resent += len(rows)
        return len(rows)
