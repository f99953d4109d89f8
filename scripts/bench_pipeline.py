"""Throughput of the submission pipeline on a real anvil (prints a table).

Run: .venv/bin/python scripts/bench_pipeline.py [--claims N] [--fill N]
- pipeline, already fingerprinted claims, batches of 1 / 100 / 1,000, one-line and three-line;
- validate + fingerprint + submit (parse, clean-claim rules, HMAC keys, pipeline) at batch 1,000;
- a naive loop: one web3 contract transaction per claim, waiting for its receipt;
- the same claims into SQL only (a unique insert per exact key, SQLite), what a user
  without a chain would run;
- with --fill N: the batch-1,000 rate again after N claims are on chain.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account
from sqlalchemy import Column, LargeBinary, MetaData, Table, create_engine, insert

from ledger.chain import ClaimLedgerContract, ClaimSubmission, connect
from ledger.claim import parse_claim
from ledger.fingerprint import FingerprintKey, fingerprint
from ledger.node import DEV_MNEMONIC, LocalNode, NodeConfig
from ledger.pipeline import SubmissionPipeline
from ledger.rpc import RpcClient
from ledger.store import make_engine, sqlite_url
from ledger.validation import find_problems

Account.enable_unaudited_hdwallet_features()
NPI = "1234567893"


def claim_document(i: int, lines: int) -> dict:
    day = date(2026, 1, 1) + timedelta(days=i % 300)
    return {
        "claim_id": f"BENCH-{i}",
        "billing_npi": NPI,
        "payer_id": "PAYER-BENCH",
        "responsibility": "P",
        "member_id": f"M{i:09d}",
        "patient_birth_date": "1970-05-17",
        "place_of_service": "11",
        "diagnoses": ["E119", "I10"],
        "service_lines": [
            {
                "service_date_from": day.isoformat(),
                "procedure_code": code,
                "units": 1,
                "charge_cents": 12_500,
                "diagnosis_pointers": [1],
            }
            for code in ("99213", "80053", "G0008")[:lines]
        ],
        "total_charge_cents": 12_500 * lines,
    }


def submissions(key: FingerprintKey, payer: int, start: int, n: int, lines: int) -> list[ClaimSubmission]:
    out = []
    for i in range(start, start + n):
        fp = fingerprint(parse_claim(claim_document(i, lines)), key)
        out.append(ClaimSubmission(fp.exact_key, fp.document_hash, fp.line_keys, fp.key_id, payer, 12_500 * lines))
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--fill", type=int, default=0)
    args = ap.parse_args()
    n = args.claims
    key = FingerprintKey.generate()
    signer = Account.from_mnemonic(DEV_MNEMONIC, account_path="m/44'/60'/0'/0/1")
    rows: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalNode(NodeConfig(data_dir=Path(tmp), gas_limit=1_000_000_000)) as node,
    ):
        w3 = connect(node.rpc_url)
        admin, provider, payer_account = w3.eth.accounts[:3]
        ledger, _ = ClaimLedgerContract.deploy(w3, admin)
        prov = ledger.register_organisation("PROV-BENCH", "provider", sender=admin)
        payer = ledger.register_organisation("PAYER-BENCH", "payer", sender=admin)
        ledger.add_account(prov, provider, sender=admin)
        ledger.add_account(payer, payer_account, sender=admin)
        ledger.set_fingerprint_key(key.key_id, True, sender=admin)
        engine = make_engine(sqlite_url(Path(tmp) / "ledger.db"))
        rpc = RpcClient(node.rpc_url)
        cursor = 0

        def through_pipeline(batch: int, lines: int, count: int) -> float:
            nonlocal cursor
            claims = submissions(key, payer, cursor, count, lines)
            cursor += count
            pipe = SubmissionPipeline(rpc, ledger.address, signer, engine, max_batch=batch, max_tx_gas=200_000_000)
            pipe.start()
            t = time.perf_counter()
            results = [f.result(timeout=600) for f in pipe.submit_many(claims)]
            dt = time.perf_counter() - t
            pipe.stop()
            assert all(r.status == "recorded" for r in results), {r.status for r in results}
            return dt

        for lines in (1, 3):
            for batch, count in ((1, min(n, 500)), (100, n), (1000, n)):
                dt = through_pipeline(batch, lines, count)
                rows.append((f"pipeline, {lines}-line, batch {batch} (claims/s)", rate(count, dt)))
        empty_rate = n / through_pipeline(1000, 1, n)

        # validate + fingerprint + submit
        docs = [claim_document(i, 1) for i in range(cursor, cursor + n)]
        cursor += n
        pipe = SubmissionPipeline(rpc, ledger.address, signer, engine, max_batch=1000, max_tx_gas=200_000_000)
        pipe.start()
        t = time.perf_counter()
        futures = []
        for d in docs:
            c = parse_claim(d)
            if find_problems(c):
                raise SystemExit(f"benchmark claim is not clean: {find_problems(c)}")
            fp = fingerprint(c, key)
            futures.append(
                pipe.submit(ClaimSubmission(fp.exact_key, fp.document_hash, fp.line_keys, fp.key_id, payer, 12_500))
            )
        results = [f.result(timeout=600) for f in futures]
        dt_full = time.perf_counter() - t
        pipe.stop()
        assert all(r.status == "recorded" for r in results)
        rows.append(("validate + fingerprint + submit, 1-line, batch 1000", rate(n, dt_full)))

        # naive: one web3 contract transaction per claim, waiting for each receipt
        naive_n = 200
        naive = submissions(key, payer, cursor, naive_n, 1)
        cursor += naive_n
        t = time.perf_counter()
        for c in naive:
            ledger.submit_claims([c], sender=provider)
        naive_rate = naive_n / (time.perf_counter() - t)
        rows.append(("naive loop, web3 tx per claim + receipt", f"{naive_rate:10,.0f}"))

        # SQL only: a unique insert per exact key, batches of 1,000
        sql = create_engine(sqlite_url(Path(tmp) / "sql-only.db"))
        md = MetaData()
        table = Table("claims", md, Column("exact_key", LargeBinary(32), primary_key=True), Column("doc", LargeBinary))
        md.create_all(sql)
        only = submissions(key, payer, cursor, n, 1)
        t = time.perf_counter()
        with sql.begin() as conn:
            for k in range(0, n, 1000):
                conn.execute(
                    insert(table), [{"exact_key": c.exact_key, "doc": c.document_hash} for c in only[k : k + 1000]]
                )
        sql_rate = n / (time.perf_counter() - t)
        rows.append(("SQL only (SQLite unique insert), batch 1000", rate(n, 1 / sql_rate * n)))
        rows.append(("ratio pipeline(batch 1000) / naive", f"{empty_rate / naive_rate:10,.1f}"))
        rows.append(("ratio chain / no chain (SQLite)", f"{empty_rate / sql_rate:10,.2f}"))

        if args.fill:
            filled = 0
            pipe = SubmissionPipeline(rpc, ledger.address, signer, engine, max_batch=1000, max_tx_gas=200_000_000)
            pipe.start()
            while filled < args.fill:
                chunk = [
                    ClaimSubmission(os.urandom(32), os.urandom(32), (os.urandom(32),), key.key_id, payer, 100)
                    for _ in range(min(20_000, args.fill - filled))
                ]
                for f in pipe.submit_many(chunk):
                    f.result(timeout=600)
                filled += len(chunk)
            pipe.stop()
            dt = through_pipeline(1000, 1, n)
            rows.append((f"pipeline, 1-line, batch 1000, {args.fill:,} claims on chain", rate(n, dt)))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':{width}}  {'figure':>10}")
    for what, figure in rows:
        print(f"{what:{width}}  {figure}")


if __name__ == "__main__":
    main()
