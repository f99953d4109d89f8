"""Compiles the Solidity sources into the artifacts the chain client loads (offline, solcjs).

The compiler is solcjs from the project's npm packages, reached through ``scripts/solc``, a
``solc``-compatible front that py-solc-x's ``compile_standard`` accepts. The artifact file
records a hash of every source it was built from, so a stale artifact is caught.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ledger.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
NODE_MODULES = PROJECT_ROOT / "node_modules"
SOLC_FRONT = PROJECT_ROOT / "scripts" / "solc"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
ARTIFACT_PATH = ARTIFACTS_DIR / "ClaimLedger.json"

SOLC_VERSION = "0.8.37"
MAIN_CONTRACT = "ClaimLedger"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 1000000},
    "viaIR": True,
    "evmVersion": "prague",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def _sources() -> dict[str, str]:
    files = sorted(CONTRACTS_DIR.glob("*.sol"))
    if not files:
        raise ConfigurationError(f"no Solidity sources under {CONTRACTS_DIR}")
    return {f"contracts/{p.name}": p.read_text() for p in files}


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input for the project's contracts."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in _sources().items()},
        "settings": {**SETTINGS, "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"]},
    }


def _resolve(unit: str) -> Path:
    return PROJECT_ROOT / unit


def source_hash(units: list[str]) -> str:
    """SHA-256 over the compiler version, the settings and every source unit's path and content."""
    digest = hashlib.sha256()
    digest.update(SOLC_VERSION.encode())
    digest.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for unit in sorted(units):
        path = _resolve(unit)
        if not path.exists():
            raise ConfigurationError(f"source {unit} of the artifacts is missing at {path}: run npm ci")
        digest.update(unit.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compile_contracts() -> dict[str, Any]:
    """Compile with solcjs; return the artifact (ABI, bytecode, source units and their hash)."""
    import solcx  # build-time dependency only

    if not SOLC_FRONT.exists() or not (NODE_MODULES / "solc").exists():
        raise ConfigurationError("solcjs is not installed: run `npm ci` in the project root")
    output = solcx.compile_standard(
        standard_input(),
        solc_binary=str(SOLC_FRONT),
        base_path=str(PROJECT_ROOT),
        allow_paths=[str(PROJECT_ROOT)],
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ConfigurationError("solc: " + "\n".join(e.get("formattedMessage", str(e)) for e in errors))
    contract = output["contracts"]["contracts/ClaimLedger.sol"][MAIN_CONTRACT]
    units = sorted(output["sources"].keys())
    return {
        "contractName": MAIN_CONTRACT,
        "compiler": SOLC_VERSION,
        "sourceUnits": units,
        "sourceHash": source_hash(units),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def write_artifact(artifact: dict[str, Any], path: Path = ARTIFACT_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
    return path


def load_artifact(path: Path = ARTIFACT_PATH) -> dict[str, Any]:
    """The compiled contract as the chain client loads it."""
    try:
        artifact: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"contract artifact {path} is missing: run `.venv/bin/python scripts/compile.py`"
        ) from None
    return artifact


def artifact_is_current(path: Path = ARTIFACT_PATH) -> bool:
    """Whether the artifact was built from the sources as they are now."""
    artifact = load_artifact(path)
    return bool(artifact.get("sourceHash") == source_hash(list(artifact.get("sourceUnits", []))))
