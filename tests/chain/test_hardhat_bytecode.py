"""Hardhat and py-solc-x must produce byte-identical contracts: what the Hardhat tests exercise is
then exactly what the Python agents deploy."""

import json
import shutil
import subprocess
from pathlib import Path

from edgetune.chain.compiler import compile_contracts

from .helpers import REPO


def _copy_of_real_project(root: Path) -> Path:
    """The real contracts in a scratch dir, so Hardhat's artifacts/ and cache/ of the checkout
    (maybe in use by `npx hardhat test`) are left alone."""
    shutil.copytree(REPO / "contracts", root / "contracts")
    if (REPO / "build" / "solc").is_dir():  # a warm Python cache stays valid: keys hash content
        shutil.copytree(REPO / "build" / "solc", root / "build" / "solc")
    shutil.copy(REPO / "hardhat.config.js", root / "hardhat.config.js")
    for linked in ("node_modules", "python", "scripts"):
        (root / linked).symlink_to(REPO / linked)
    return root


def test_hardhat_and_python_bytecode_are_identical(tmp_path: Path) -> None:
    root = _copy_of_real_project(tmp_path)
    ours = compile_contracts(root)
    done = subprocess.run(
        ["npx", "hardhat", "compile", "--quiet"], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"EdgeTune", "ScoreTallier"} <= set(ours), sorted(ours)  # EdgeTune deploys the tallier
    for name, artifact in ours.items():
        theirs = json.loads((root / "artifacts" / artifact.source / f"{name}.json").read_text())
        assert theirs["deployedBytecode"] == artifact.deployed_bytecode, name
        assert theirs["bytecode"] == artifact.bytecode, name
        assert theirs["abi"] == artifact.abi, name
