"""Gas per claim of the ClaimLedger contract, on a real anvil (prints a table).

Run: .venv/bin/python scripts/bench_gas.py
Batches of 100 claims: one-line and five-line claims, a refused exact duplicate, a claim
flagged suspect (a line that matches a live claim). Keys are random 32-byte values: the
contract's cost does not depend on what the fingerprints hash.
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.chain import ClaimLedgerContract, ClaimSubmission, connect
from ledger.node import LocalNode, NodeConfig

BATCH = 100
KEY_ID = 7


def claims(payer: int, lines: int, n: int = BATCH) -> list[ClaimSubmission]:
    return [
        ClaimSubmission(
            os.urandom(32), os.urandom(32), tuple(os.urandom(32) for _ in range(lines)), KEY_ID, payer, 12_500
        )
        for _ in range(n)
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalNode(NodeConfig(data_dir=Path(tmp), gas_limit=100_000_000)) as node:
        w3 = connect(node.rpc_url)
        admin, provider, payer_account = w3.eth.accounts[:3]
        ledger, deployed = ClaimLedgerContract.deploy(w3, admin)
        prov = ledger.register_organisation("PROV-BENCH", "provider", sender=admin)
        payer = ledger.register_organisation("PAYER-BENCH", "payer", sender=admin)
        ledger.add_account(prov, provider, sender=admin)
        ledger.add_account(payer, payer_account, sender=admin)
        ledger.set_fingerprint_key(KEY_ID, True, sender=admin)
        ledger.submit_claims(claims(payer, 1, 1), sender=provider)  # warm the provider's first-use slots

        def per_claim(batch: list[ClaimSubmission]) -> float:
            return ledger.submit_claims(batch, sender=provider).gas_used / len(batch)

        one = claims(payer, 1)
        g1 = per_claim(one)
        g5 = per_claim(claims(payer, 5))
        dup = per_claim(one)
        suspect = per_claim(
            [ClaimSubmission(os.urandom(32), os.urandom(32), c.line_keys, KEY_ID, payer, 12_500) for c in one]
        )
        rows = [
            ("deployment (total)", deployed.gas_used, None),
            ("one-line claim, batch of 100", g1, 55_000),
            ("each further line (5-line claim)", (g5 - g1) / 4, 23_500),
            ("five-line claim, batch of 100", g5, None),
            ("refused exact duplicate (one line)", dup, 8_000),
            ("claim flagged suspect (one line)", suspect, None),
        ]
        print(f"{'what':40} {'gas':>10} {'goal':>10}")
        for what, gas, goal in rows:
            mark = "" if goal is None else ("  ok" if gas <= goal else "  OVER")
            print(f"{what:40} {gas:10,.0f} {goal if goal else '':>10}{mark}")


if __name__ == "__main__":
    main()
