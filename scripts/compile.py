"""Compile contracts/ with solcjs and write ledger/artifacts/ClaimLedger.json.

Run: .venv/bin/python scripts/compile.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.compiler import compile_contracts, write_artifact


def main() -> None:
    artifact = compile_contracts()
    path = write_artifact(artifact)
    size = (len(artifact["deployedBytecode"]) - 2) // 2
    print(f"wrote {path} ({size} bytes deployed, source hash {artifact['sourceHash'][:12]})")


if __name__ == "__main__":
    main()
