"""A pipeline in a process of its own that dies at a chosen point (for test_pipeline_crash.py).

    python -m tests.integration.pipeline_worker DB RPC_URL ADDRESS CLAIMS_JSON MODE

MODE ``after_send``: the pipeline's ``after_send`` hook calls ``os._exit(9)``, so the process
dies right after the transaction went to the node, before its receipt is read.
MODE ``before_send``: ``rpc.send_raw`` is replaced by ``os._exit(9)``, so the process dies
after the signed transaction and its submission rows are stored, before anything is sent.

CLAIMS_JSON is a file with a list of claims (hex fields), submitted as one micro-batch.
Exit code 9 means the crash happened where it was meant to; 0 that the batch completed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ledger.chain import ClaimSubmission
from ledger.pipeline import SubmissionPipeline
from ledger.rpc import RpcClient
from tests.integration.pipeline_fixtures import PIPELINE_MAX_TX_GAS, PROVIDER_INDEX, dev_account, new_engine

CRASH_CODE = 9


def submission_to_json(c: ClaimSubmission) -> dict[str, object]:
    return {
        "exact_key": c.exact_key.hex(),
        "document_hash": c.document_hash.hex(),
        "line_keys": [k.hex() for k in c.line_keys],
        "key_id": c.key_id,
        "payer_org": c.payer_org,
        "total_charge": c.total_charge,
        "frequency": c.frequency,
        "related_key": c.related_key.hex(),
        "related_version": c.related_version,
    }


def submission_from_json(d: dict[str, object]) -> ClaimSubmission:
    return ClaimSubmission(
        exact_key=bytes.fromhex(str(d["exact_key"])),
        document_hash=bytes.fromhex(str(d["document_hash"])),
        line_keys=tuple(bytes.fromhex(str(k)) for k in d["line_keys"]),  # type: ignore[attr-defined]
        key_id=int(d["key_id"]),  # type: ignore[arg-type]
        payer_org=int(d["payer_org"]),  # type: ignore[arg-type]
        total_charge=int(d["total_charge"]),  # type: ignore[arg-type]
        frequency=int(d["frequency"]),  # type: ignore[arg-type]
        related_key=bytes.fromhex(str(d["related_key"])),
        related_version=int(d["related_version"]),  # type: ignore[arg-type]
    )


def main(argv: list[str]) -> int:
    db, rpc_url, address, claims_file, mode = argv
    claims = [submission_from_json(d) for d in json.loads(Path(claims_file).read_text())]

    def die(_tx_hash: str) -> None:
        os._exit(CRASH_CODE)

    pipeline = SubmissionPipeline(
        RpcClient(rpc_url),
        address,
        dev_account(PROVIDER_INDEX),
        new_engine(Path(db)),
        max_wait_ms=500,  # all the claims in one batch
        max_tx_gas=PIPELINE_MAX_TX_GAS,
        after_send=die if mode == "after_send" else None,
    )
    pipeline.start()
    if mode == "before_send":
        pipeline.rpc.send_raw = lambda raw: os._exit(CRASH_CODE)  # type: ignore[method-assign]
    elif mode != "after_send":
        raise SystemExit(f"unknown mode {mode!r}")
    for f in pipeline.submit_many(claims):
        f.result(60)
    pipeline.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
