"""The one door to the ledger: submit, act, verify, read history.

Turns claim documents into what the contract records (validation, normal form, keyed
fingerprints), sends them through the submission pipeline of the caller's signing account,
keeps each document encrypted off chain, and answers from the chain and its SQL index.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, select

from ledger import listing, reports
from ledger.chain import ClaimLedgerContract, ClaimSubmission, TransactionOutcome, org_id, payer_call
from ledger.claim import Claim, Frequency, parse_claim
from ledger.documents import IN_CHUNK, DocumentVault
from ledger.errors import (
    ChainUnavailableError,
    ClaimNotFoundError,
    ClaimValidationError,
    ContractRevertError,
    FieldProblem,
    LedgerError,
    PermissionDeniedError,
)
from ledger.fingerprint import Keyring, canonical_document, fingerprints_for_rotation
from ledger.indexer import Indexer
from ledger.pipeline import SubmissionPipeline, SubmissionResult
from ledger.rpc import RpcClient
from ledger.steps import StepSender
from ledger.store import indexed_claims, indexed_events
from ledger.validation import find_problems

DEFAULT_SUBMIT_TIMEOUT_S = 30.0
FREQUENCY_CODES = {Frequency.ORIGINAL: 1, Frequency.REPLACEMENT: 7, Frequency.VOID: 8}


@dataclass(frozen=True)
class Member:
    """A consortium organisation as this gateway acts for it."""

    name: str
    role: str
    org: int
    account: LocalAccount


@dataclass(frozen=True)
class PayerStep:
    """One payer step on one claim: ``step`` is acknowledge, adjudicate, record_payment or
    reverse_payment, ``args`` what :func:`ledger.chain.payer_call` takes after the claim."""

    exact_key: bytes
    version: int
    step: str
    args: tuple[Any, ...]


PAYER_STEPS_PER_TX = 250
"""Payer steps per multicall transaction (about 35,000 gas each: 9M a transaction)."""


@dataclass
class ClaimOutcome:
    """The answer for one claim of a submission, in the order submitted."""

    status: str  # recorded | duplicate | voided | invalid | failed
    claim_id: str | None
    exact_key: str | None = None
    version: int | None = None
    document_hash: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    suspects: list[dict[str, Any]] = field(default_factory=list)
    existing: dict[str, Any] | None = None
    replaced: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None


class WatchedRpcClient(RpcClient):
    """The node's JSON-RPC client, noting when a call last found the node answering and when one last
    found it unreachable (each by the time the call started). The pipelines and the indexer call the
    node all the time under load; their calls tell the gateway the node is up without a probe of its own."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.answered_at = float("-inf")
        self.failed_at = float("-inf")
        self._calls = itertools.count()
        self._outstanding: dict[int, float] = {}  # calls under way: when each started
        self.newest_receipt_block = -1
        """The newest block a receipt read through this client was in: what the pipelines and the payer steps
        answered as recorded is in it or before, so a read indexes at least that far (Indexer.catch_up)."""
        self.newest_receipt_at = float("-inf")
        """When that receipt was read (time.monotonic)."""

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        receipt = super().receipt(tx_hash)
        self._note_receipt(receipt)
        return receipt

    def receipts(self, tx_hashes: list[str]) -> list[dict[str, Any] | None]:
        receipts = super().receipts(tx_hashes)
        for receipt in receipts:
            self._note_receipt(receipt)
        return receipts

    def _note_receipt(self, receipt: dict[str, Any] | None) -> None:
        if receipt is not None and receipt.get("blockNumber"):
            block = int(receipt["blockNumber"], 16)
            if block > self.newest_receipt_block:
                self.newest_receipt_block, self.newest_receipt_at = block, time.monotonic()

    def _post(self, body: bytes, what: str, *, retry: bool) -> Any:
        started = time.monotonic()
        token = next(self._calls)
        self._outstanding[token] = started
        try:
            answer = super()._post(body, what, retry=retry)
        except ChainUnavailableError:
            self.failed_at = max(self.failed_at, started)
            raise
        finally:
            del self._outstanding[token]
        self.answered_at = max(self.answered_at, started)  # an answer, an error included
        return answer

    def answered_within(self, seconds: float) -> bool:
        """Whether a call started within ``seconds`` found the node answering, and none since found it gone."""
        answered = self.answered_at
        return answered > self.failed_at and time.monotonic() - answered < seconds

    def busy_within(self, seconds: float) -> bool:
        """Whether the last call to end found the node answering and a call started within ``seconds`` is
        still waiting for its answer: a node that is mining (anvil answers nothing until its block is made:
        seconds on a ledger of a million claims) rather than one that is gone (a call would have failed)."""
        if self.answered_at <= self.failed_at:
            return False
        since = time.monotonic() - seconds
        return any(started > since for started in self._outstanding.copy().values())


class WouldBlock(Exception):
    """``stage(blocking=False)`` met a step that asks the node or the store (a payer not seen yet, a
    fingerprint key being retired, a replacement or void): nothing was done; stage it in a thread."""


@dataclass
class StagedSubmission:
    """Claims checked and fingerprinted; their documents' write under way (``stored``)."""

    member: Member
    checked: list[ClaimOutcome | None]
    ready: list[tuple[int, Claim, ClaimSubmission]]
    stored: Future[None]


@dataclass
class QueuedSubmission:
    """Claims stored and queued in the pipeline: one future per queued claim, then :meth:`outcomes`."""

    checked: list[ClaimOutcome | None]
    waiting: list[tuple[int, Claim, bytes, Future[SubmissionResult]]]
    timeout: float
    deadline: float

    @property
    def futures(self) -> list[Future[SubmissionResult]]:
        return [w[3] for w in self.waiting]

    def outcomes(self) -> list[ClaimOutcome]:
        """One outcome per document, in order; ChainUnavailableError if a claim is still unanswered."""
        outcomes = list(self.checked)
        for i, claim, doc_hash, future in self.waiting:
            if not future.done():
                raise ChainUnavailableError(
                    f"the chain did not confirm within {self.timeout:g} s; the claims may still be recorded: "
                    "retry with the same Idempotency-Key or look them up",
                    retry_after=self.timeout,
                )
            error = future.exception()
            if isinstance(error, LedgerError):
                outcomes[i] = ClaimOutcome("failed", claim.claim_id, error=error.to_dict())
            elif error is not None:
                raise error
            else:
                outcomes[i] = _outcome(claim, doc_hash, future.result())
        return [o for o in outcomes if o is not None]


class ClaimLedgerService:
    """The ledger as a gateway uses it. One pipeline per signing account, started lazily."""

    def __init__(
        self,
        *,
        rpc_url: str,
        contract: ClaimLedgerContract,
        engine: Engine,
        keyring: Keyring,
        vault: DocumentVault,
        max_batch: int = 1000,
        max_wait_ms: float = 5.0,
        max_in_flight: int = 4,
        max_tx_gas: int = 25_000_000,
        start_block: int = 0,
        submit_timeout_s: float = DEFAULT_SUBMIT_TIMEOUT_S,
    ) -> None:
        self.rpc = WatchedRpcClient(rpc_url)
        self.submit_timeout_s = submit_timeout_s  # how long a submission waits for the chain by default
        self.contract = contract
        self.engine = engine
        self.keyring = keyring
        self.vault = vault
        self.indexer = Indexer(self.rpc, contract.address, engine, start_block=start_block)
        self.steps = StepSender(self.rpc, engine, contract.address, contract.abi)
        self._pipeline_settings: dict[str, Any] = {
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "max_in_flight": max_in_flight,
            "max_tx_gas": max_tx_gas,
        }
        self._pipelines: dict[str, SubmissionPipeline] = {}
        self._orgs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._account_locks: dict[str, threading.Lock] = {}

    # -------------------------------------------------------------- lifecycle

    def pipeline(self, account: LocalAccount) -> SubmissionPipeline:
        with self._lock:
            p = self._pipelines.get(account.address)
            if p is None:
                p = SubmissionPipeline(
                    self.rpc, self.contract.address, account, self.engine, **self._pipeline_settings
                ).start()
                self._pipelines[account.address] = p
            return p

    def pipeline_running(self, account: LocalAccount) -> bool:
        """Whether ``account``'s pipeline is started (:meth:`pipeline` then returns at once)."""
        return account.address in self._pipelines

    def close(self) -> None:
        with self._lock:
            for p in self._pipelines.values():
                p.stop()
            self._pipelines.clear()

    def org_index(self, name: str, *, blocking: bool = True) -> int:
        """The on-chain index of organisation ``name`` (0 if it is not registered). Not ``blocking``:
        WouldBlock unless it is known already."""
        cached = self._orgs.get(name)
        if cached is None:
            if not blocking:
                raise WouldBlock(f"organisation {name} is not known yet")
            cached = int(self.contract.call("organisationIndex", org_id(name)))
            if cached:
                self._orgs[name] = cached
        return cached

    # -------------------------------------------------------------- provider

    def prepare(
        self, data: Mapping[str, Any], *, today: date | None = None, blocking: bool = True
    ) -> tuple[Claim, list[FieldProblem]]:
        """Parse and check one claim document; every problem is listed, none raised (not ``blocking``:
        WouldBlock if its payer must be looked up on chain)."""
        try:
            claim = parse_claim(data)
        except ClaimValidationError as exc:
            return None, exc.problems  # type: ignore[return-value]
        problems = find_problems(claim, today=today)
        if self.org_index(claim.payer_id, blocking=blocking) == 0:
            problems.append(
                FieldProblem(
                    "payer_id", claim.payer_id, "unknown_payer", f"payer {claim.payer_id} is not a consortium member"
                )
            )
        return claim, problems

    def submit(
        self, member: Member, documents: Sequence[Mapping[str, Any]], *, timeout: float | None = None
    ) -> list[ClaimOutcome]:
        """Submit claims for a provider; one outcome per document, in order.

        Every document is checked and fingerprinted before any is queued, and the queued ones are
        stored (encrypted) before they are sent, so a refusal or a crash never leaves a claim on
        chain without its document. ``timeout`` (None: ``submit_timeout_s``) bounds the wait for the chain: past it,
        ChainUnavailableError (the claims may still land; a retry then names them as duplicates).
        """
        queued = self.queue(member, documents, timeout=timeout)
        futures_wait(queued.futures, timeout=queued.timeout)
        return queued.outcomes()

    def queue(
        self, member: Member, documents: Sequence[Mapping[str, Any]], *, timeout: float | None = None
    ) -> QueuedSubmission:
        """:meth:`submit` up to the wait for the chain: the documents checked, fingerprinted, stored
        (encrypted) and their claims queued in the pipeline. Wait for ``futures`` (a thread, or an event
        loop), then read :meth:`QueuedSubmission.outcomes`."""
        return self.queue_stored(self.stage(member, documents), timeout=timeout)

    def stage(
        self, member: Member, documents: Sequence[Mapping[str, Any]], *, blocking: bool = True
    ) -> StagedSubmission:
        """Check and fingerprint the documents and start their write (nothing sent yet): what
        :meth:`queue_stored` takes once ``staged.stored`` is done. Not ``blocking`` (for an event loop):
        WouldBlock, before anything is written, if a step would ask the node or the store."""
        if member.role != "provider":
            raise PermissionDeniedError(f"{member.name} is a {member.role}: only providers submit claims")
        outcomes: list[ClaimOutcome | None] = [None] * len(documents)
        ready: list[tuple[int, Claim, ClaimSubmission]] = []
        keys = self.keyring.active_keys()
        for i, data in enumerate(documents):
            claim, problems = self.prepare(data, blocking=blocking)
            if problems:
                ref = claim.claim_id if claim is not None else _claim_ref(data)
                outcomes[i] = ClaimOutcome("invalid", ref, problems=[p.to_dict() for p in problems])
                continue
            prints = fingerprints_for_rotation(claim, self.keyring, keys=keys)
            current = prints[0]
            if not blocking and (len(prints) > 1 or claim.frequency is not Frequency.ORIGINAL):
                raise WouldBlock("a key being retired, or a replacement or void, asks the node")
            earlier = self._live_under_retiring_keys(prints[1:])
            if earlier is not None:
                outcomes[i] = ClaimOutcome(
                    "duplicate", claim.claim_id, exact_key=earlier["exact_key"], existing=earlier
                )
                continue
            related_key, related_version = b"\x00" * 32, 0
            if claim.frequency is not Frequency.ORIGINAL:
                try:
                    related_key, related_version = self._original_of(member, claim)
                except ClaimValidationError as exc:
                    outcomes[i] = ClaimOutcome("invalid", claim.claim_id, problems=[p.to_dict() for p in exc.problems])
                    continue
            submission = ClaimSubmission(
                exact_key=current.exact_key,
                document_hash=current.document_hash,
                line_keys=current.line_keys,
                key_id=current.key_id,
                payer_org=self.org_index(claim.payer_id),
                total_charge=claim.total_charge_cents,
                frequency=FREQUENCY_CODES[claim.frequency],
                related_key=related_key,
                related_version=related_version,
            )
            ready.append((i, claim, submission))
        stored = self.vault.put_many_future(
            [(s.document_hash, canonical_document(c)) for _, c, s in ready], claim_ids=[c.claim_id for _, c, _ in ready]
        )
        return StagedSubmission(member, outcomes, ready, stored)

    def queue_stored(
        self, staged: StagedSubmission, *, timeout: float | None = None, blocking: bool = True
    ) -> QueuedSubmission:
        """Queue a staged submission's claims in the pipeline, once its documents are stored (waits for
        that write if it is not done: a claim is never sent before its document is kept). Not
        ``blocking``: WouldBlock if the write is not done or the account's pipeline is not started."""
        if not blocking and (not staged.stored.done() or not self.pipeline_running(staged.member.account)):
            raise WouldBlock("the documents' write is under way, or the pipeline is not started")
        staged.stored.result()
        timeout = self.submit_timeout_s if timeout is None else timeout
        waiting = []
        if staged.ready:  # queued together, so a batch leaves in one piece rather than cut by the batcher's wait
            futures = self.pipeline(staged.member.account).submit_many([s for _, _, s in staged.ready])
            waiting = [(i, claim, s.document_hash, f) for (i, claim, s), f in zip(staged.ready, futures, strict=True)]
        return QueuedSubmission(staged.checked, waiting, timeout, time.monotonic() + timeout)

    def _live_under_retiring_keys(self, prints: Sequence[Any]) -> dict[str, Any] | None:
        for fp in prints:
            version = self.contract.live_version(fp.exact_key)
            if version:
                return {"exact_key": "0x" + fp.exact_key.hex(), "version": version, "key_id": fp.key_id}
        return None

    def _original_of(self, member: Member, claim: Claim) -> tuple[bytes, int]:
        """The ledger claim a replacement or void names: a ledger ref ``0x<key>:<version>``, or the
        provider's claim id (CLM01, as an 837's REF*F8 gives it) of exactly one of its live claims."""
        ref = claim.original_claim_id or ""
        parsed = parse_ledger_ref(ref)
        if parsed is not None:
            return parsed
        live = [r for r in self.claims_by_claim_id(member, ref) if r["provider_org"] == member.org and r["live"]]
        if len(live) == 1:
            return bytes.fromhex(live[0]["exact_key"][2:]), int(live[0]["version"])
        if not live:
            message = (
                f"no live claim of {member.name} has claim id {ref!r}: a replacement or void names the claim it "
                "changes by its ledger ref 0x<exact key>:<version> or the claim id it was submitted under"
            )
            rule = "original_not_found"
        else:
            shown = ", ".join(f"{r['exact_key']}:{r['version']}" for r in live)
            message = (
                f"{len(live)} live claims of {member.name} have claim id {ref!r} ({shown}): name one by its ledger ref"
            )
            rule = "original_ambiguous"
        raise ClaimValidationError([FieldProblem("original_claim_id", ref, rule, message)], claim_ref=claim.claim_id)

    def void(self, member: Member, exact_key: bytes, version: int) -> ClaimOutcome:
        """Void one of the provider's claims (through its pipeline, so its nonce stays its own)."""
        record = self.claim_for(member, exact_key, version)
        if record["provider_org"] != member.org:
            raise PermissionDeniedError(f"{member.name} did not submit claim 0x{exact_key.hex()}:{version}")
        submission = ClaimSubmission(
            exact_key=exact_key,
            document_hash=bytes.fromhex(record["document_hash"][2:]),
            line_keys=(),
            key_id=0,
            payer_org=0,
            total_charge=0,
            frequency=8,
            related_key=exact_key,
            related_version=version,
        )
        try:
            r = self.pipeline(member.account).submit(submission).result(timeout=self.submit_timeout_s)
        except FutureTimeout:
            raise ChainUnavailableError(
                f"the chain did not confirm the void within {self.submit_timeout_s:g} s; it may still land",
                retry_after=self.submit_timeout_s,
            ) from None
        return ClaimOutcome(
            r.status, None, exact_key=r.exact_key, version=r.version, tx_hash=r.tx_hash, block_number=r.block_number
        )

    # -------------------------------------------------------------- payer

    def _payer_step(self, member: Member, exact_key: bytes, version: int, step: str, *args: Any) -> dict[str, Any]:
        self._ensure_payer(member, step)
        record = self.claim_for(member, exact_key, version)
        if record["payer_org"] != member.org:
            raise ClaimNotFoundError(f"no claim 0x{exact_key.hex()}:{version} addressed to {member.name}")
        with self._account_lock(member.account.address):
            outcome = self._send_step(member, payer_call(step, exact_key, version, *args))
        return _sent(outcome)

    def _send_step(self, member: Member, call: tuple[str, tuple[Any, ...]]) -> TransactionOutcome:
        """One transaction of ``member``'s, stored in the outbox before it is sent (:mod:`ledger.steps`)."""
        function, args = call
        return self.steps.transact(member.account, function, args, what=function)

    def _send_steps(self, member: Member, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> TransactionOutcome:
        """Several steps in one multicall transaction (all or nothing), through the outbox too."""
        data = [self.contract.abi.encode_call(name, args) for name, args in calls]
        return self._send_step(member, ("multicall", (data,)))

    def resend_lost_steps(self) -> int:
        """Send again the payer steps the node has lost (restored from an older state); how many."""
        return self.steps.resend_lost()

    @staticmethod
    def _ensure_payer(member: Member, step: str) -> None:
        if member.role != "payer":
            raise PermissionDeniedError(f"{member.name} is a {member.role}: only payers {step}")

    def payer_steps(self, member: Member, steps: Sequence[PayerStep]) -> list[dict[str, Any]]:
        """Run payer steps in order, in as few transactions as the contract allows: up to
        PAYER_STEPS_PER_TX in one multicall (all or nothing). A multicall the contract refuses is run
        again step by step, so that every step gets its own answer and the good ones still land.

        One answer per step: ``{"tx_hash", "block_number"}``, or ``{"error": {...}}`` (a claim not
        addressed to ``member``: claim_not_found; a step the contract refuses: contract_revert).
        """
        self._ensure_payer(member, "post payer steps")
        self.catch_up()
        answers: list[dict[str, Any] | None] = [None] * len(steps)
        runnable: list[int] = []
        payers: dict[tuple[bytes, int], int] = {}  # each claim's payer, read once however many steps it has
        for i, s in enumerate(steps):
            try:
                claim = (s.exact_key, s.version)
                if claim not in payers:
                    payers[claim] = self.claim(*claim)["payer_org"]
                if payers[claim] != member.org:
                    raise ClaimNotFoundError(f"no claim 0x{s.exact_key.hex()}:{s.version} addressed to {member.name}")
            except ClaimNotFoundError as exc:
                answers[i] = {"error": exc.to_dict()}
                continue
            runnable.append(i)
        calls = {i: payer_call(steps[i].step, steps[i].exact_key, steps[i].version, *steps[i].args) for i in runnable}
        with self._account_lock(member.account.address):
            for start in range(0, len(runnable), PAYER_STEPS_PER_TX):
                chunk = runnable[start : start + PAYER_STEPS_PER_TX]
                try:
                    sent = _sent(self._send_steps(member, [calls[i] for i in chunk]))
                    for i in chunk:
                        answers[i] = sent
                    continue
                except ContractRevertError:
                    pass  # one of them is refused: each alone
                for i in chunk:
                    try:
                        answers[i] = _sent(self._send_step(member, calls[i]))
                    except ContractRevertError as exc:
                        answers[i] = {"error": exc.to_dict()}
        assert all(a is not None for a in answers)  # every step: refused up front, or sent
        return [a for a in answers if a is not None]

    def acknowledge(
        self, member: Member, exact_key: bytes, version: int, accepted: bool, reason: str = ""
    ) -> dict[str, Any]:
        return self._payer_step(member, exact_key, version, "acknowledge", accepted, reason.encode("ascii"))

    def adjudicate(
        self,
        member: Member,
        exact_key: bytes,
        version: int,
        outcome: str,
        allowed_cents: int,
        carc_codes: Sequence[str],
    ) -> dict[str, Any]:
        return self._payer_step(member, exact_key, version, "adjudicate", outcome, allowed_cents, list(carc_codes))

    def record_payment(
        self, member: Member, exact_key: bytes, version: int, paid_cents: int, remittance_hash: bytes
    ) -> dict[str, Any]:
        return self._payer_step(member, exact_key, version, "record_payment", paid_cents, remittance_hash)

    def reverse_payment(self, member: Member, exact_key: bytes, version: int, remittance_hash: bytes) -> dict[str, Any]:
        """Paid -> accepted again (835 CLP02 22): the payment is taken back, a new adjudication may follow."""
        return self._payer_step(member, exact_key, version, "reverse_payment", remittance_hash)

    def _account_lock(self, address: str) -> threading.Lock:
        with self._lock:
            return self._account_locks.setdefault(address, threading.Lock())

    # -------------------------------------------------------------- reads

    def index(self) -> None:
        """Index what the chain has now."""
        self.indexer.run_once()

    def catch_up(self) -> None:
        """Before a read: the index holds every block this gateway had a receipt of, and is at most
        CATCH_UP_FRESH_S behind the chain (one run shared by the reads of that moment)."""
        self.indexer.catch_up(through=self.rpc.newest_receipt_block, known_at=self.rpc.newest_receipt_at)

    def list_claims(
        self, member: Member, where: listing.ClaimFilter, *, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the claims ``member`` may see, newest first (:func:`ledger.listing.list_claims`)."""
        self.catch_up()
        return listing.list_claims(self.engine, member, where, cursor=cursor, limit=limit)

    def duplicates_by_provider(self, start: int, end: int) -> list[dict[str, Any]]:
        """:func:`ledger.reports.duplicates_by_provider` over the index brought up to date."""
        self.catch_up()
        return reports.duplicates_by_provider(self.engine, start, end)

    def payer_figures(self, start: int, end: int) -> list[dict[str, Any]]:
        """:func:`ledger.reports.payer_figures` over the index brought up to date."""
        self.catch_up()
        return reports.payer_figures(self.engine, start, end)

    def claim_for(self, member: Member, exact_key: bytes, version: int) -> dict[str, Any]:
        """The claim if ``member`` may see it (its provider, its payer, any auditor); else not found."""
        self.catch_up()
        record = self.claim(exact_key, version)
        if may_see(member, record):
            return record
        raise ClaimNotFoundError(f"no claim 0x{exact_key.hex()}:{version} that {member.name} may see")

    def claim(self, exact_key: bytes, version: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(indexed_claims).where(
                        indexed_claims.c.exact_key == exact_key, indexed_claims.c.version == version
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise ClaimNotFoundError(f"no claim 0x{exact_key.hex()}:{version} in the index")
        return {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in row.items()}

    def claims_by_claim_id(self, member: Member, claim_id: str) -> list[dict[str, Any]]:
        """The claims recorded under a provider's claim id (CLM01) that ``member`` may see, oldest first;
        each record has ``live`` (it still holds its keys: submitted, accepted, adjudicated or paid).
        Only claims whose documents this gateway stored can be found this way."""
        return self.claims_by_claim_ids(member, [claim_id])[claim_id]

    def claims_by_claim_ids(self, member: Member, claim_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`claims_by_claim_id` for many claim ids: one index run, two queries."""
        hashes = self.vault.find_claim_ids(claim_ids)
        wanted = {h for found in hashes.values() for h in found}
        records: dict[bytes, list[dict[str, Any]]] = {}
        if wanted:
            self.catch_up()
            ordered = sorted(wanted)
            with self.engine.connect() as conn:
                rows = [
                    row
                    for start in range(0, len(ordered), IN_CHUNK)
                    for row in conn.execute(
                        select(indexed_claims).where(
                            indexed_claims.c.document_hash.in_(ordered[start : start + IN_CHUNK])
                        )
                    ).mappings()
                ]
            for r in rows:
                record = {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in r.items()}
                if may_see(member, record):
                    record["live"] = r["status"] in LIVE_STATUSES
                    records.setdefault(r["document_hash"], []).append(record)
        found: dict[str, list[dict[str, Any]]] = {}
        for claim_id, document_hashes in hashes.items():
            matched = [record for h in document_hashes for record in records.get(h, [])]
            found[claim_id] = sorted(matched, key=lambda r: (r["submitted_block"], r["exact_key"]))
        return found

    def document_of(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The claim document of a record, when this gateway stored it (None otherwise)."""
        document_hash = record["document_hash"]
        raw = bytes.fromhex(document_hash[2:]) if isinstance(document_hash, str) else bytes(document_hash)
        try:
            document = json.loads(self.vault.get(raw))
        except LedgerError:
            return None
        return document if isinstance(document, dict) else None

    def history(self, exact_key: bytes, version: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(indexed_events)
                    .where(indexed_events.c.exact_key == exact_key, indexed_events.c.version == version)
                    .order_by(indexed_events.c.block_number, indexed_events.c.log_index)
                )
                .mappings()
                .all()
            )
        return [{k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in r.items()} for r in rows]

    def verify(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Whether a claim document is one the ledger recorded, which, and its status."""
        claim = parse_claim(data)
        self.catch_up()
        for fp in fingerprints_for_rotation(claim, self.keyring):
            with self.engine.connect() as conn:
                row = (
                    conn.execute(select(indexed_claims).where(indexed_claims.c.document_hash == fp.document_hash))
                    .mappings()
                    .first()
                )
            if row is not None:
                return {
                    "matches": True,
                    "exact_key": "0x" + row["exact_key"].hex(),
                    "version": row["version"],
                    "status": row["status"],
                    "key_id": fp.key_id,
                }
        return {"matches": False}


def may_see(member: Member, record: Mapping[str, Any]) -> bool:
    """A claim is seen by its provider, its payer and any auditor."""
    return member.role == "auditor" or member.org in (record["provider_org"], record["payer_org"])


LIVE_STATUSES = frozenset({"submitted", "accepted", "adjudicated", "paid"})
"""Statuses in which a claim holds its keys (the contract's live claims)."""


_LEDGER_REF = re.compile(r"0x([0-9a-fA-F]{64}):([1-9][0-9]{0,9})")


def parse_ledger_ref(ref: str) -> tuple[bytes, int] | None:
    """``0x<64 hex exact key>:<version>`` -> (exact key, version); anything else -> None."""
    match = _LEDGER_REF.fullmatch(ref.strip())
    return None if match is None else (bytes.fromhex(match.group(1)), int(match.group(2)))


def _sent(outcome: TransactionOutcome) -> dict[str, Any]:
    return {"tx_hash": "0x" + outcome.transaction_hash.hex(), "block_number": outcome.block_number}


def _claim_ref(data: Mapping[str, Any]) -> str | None:
    ref = data.get("claim_id") if isinstance(data, Mapping) else None
    return str(ref) if ref is not None else None


def _outcome(claim: Claim, doc_hash: bytes, r: SubmissionResult) -> ClaimOutcome:
    return ClaimOutcome(
        status=r.status,
        claim_id=claim.claim_id,
        exact_key=r.exact_key,
        version=r.version or None,
        document_hash="0x" + doc_hash.hex(),
        tx_hash=r.tx_hash,
        block_number=r.block_number,
        suspects=[
            {"line_index": s.line_index, "earlier_exact_key": s.earlier_exact_key, "earlier_version": s.earlier_version}
            for s in r.suspects
        ],
        existing={"exact_key": r.exact_key, "version": r.existing_version} if r.status == "duplicate" else None,
        replaced={"exact_key": r.replaced[0], "version": r.replaced[1]} if r.replaced else None,
        error=r.error,
    )
