"""The committed contract artifact is the compilation of the sources as they are now."""

import shutil

import pytest

from ledger.compiler import ARTIFACT_PATH, artifact_is_current, compile_contracts, load_artifact, source_hash


def test_artifact_hash_matches_sources() -> None:
    artifact = load_artifact()
    assert artifact["sourceHash"] == source_hash(artifact["sourceUnits"]), (
        f"{ARTIFACT_PATH} is stale: run `.venv/bin/python scripts/compile.py` and commit it"
    )
    assert artifact_is_current()
    assert "contracts/ClaimLedger.sol" in artifact["sourceUnits"]
    assert any("@openzeppelin/contracts/access" in u for u in artifact["sourceUnits"])


def test_hash_changes_with_any_source(tmp_path, monkeypatch) -> None:
    import ledger.compiler as compiler

    artifact = load_artifact()
    fake_root = tmp_path / "root"
    shutil.copytree(compiler.PROJECT_ROOT / "contracts", fake_root / "contracts")
    monkeypatch.setattr(compiler, "PROJECT_ROOT", fake_root)
    units = [u for u in artifact["sourceUnits"] if u.startswith("contracts/")]
    before = source_hash(units)
    path = fake_root / "contracts" / "ClaimLedger.sol"
    path.write_text(path.read_text() + "\n// changed\n")
    assert source_hash(units) != before


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run solcjs")
def test_recompiling_gives_the_committed_artifact() -> None:
    fresh = compile_contracts()
    committed = load_artifact()
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
