import json
import os
import subprocess
from pathlib import Path

import pytest
import solcx

from edgetune.chain import compiler
from edgetune.chain.compiler import (
    CompilerError,
    collect_sources,
    compile_contracts,
    load_artifact,
)

from .helpers import REPO, make_project

SHIM = REPO / "scripts" / "solc-shim.js"


def test_shim_reports_the_pinned_version_like_native_solc() -> None:
    version = solcx.wrapper.get_solc_version(SHIM, with_commit_hash=True)
    assert version.base_version == compiler.SOLC_VERSION
    assert version.local is not None and version.local.startswith("commit.")


def test_shim_standard_json_prints_only_the_json() -> None:
    source = "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract A {}\n"
    request = {
        "language": "Solidity",
        "sources": {"A.sol": {"content": source}},
        "settings": {"outputSelection": {"*": {"*": ["abi"]}}},
    }
    out = subprocess.run(
        [SHIM, "--standard-json"], input=json.dumps(request), capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "A" in json.loads(out.stdout)["contracts"]["A.sol"]  # nothing but JSON on stdout


def test_sources_follow_relative_and_package_imports(project: Path) -> None:
    sources = collect_sources(project)
    assert "contracts/lib/Adder.sol" in sources
    assert "@openzeppelin/contracts/access/Ownable.sol" in sources
    # Ownable imports "../utils/Context.sol": resolved relative to its source unit name.
    assert "@openzeppelin/contracts/utils/Context.sol" in sources


def test_compile_returns_own_contracts_with_deployable_bytecode(project: Path) -> None:
    artifacts = compile_contracts(project)
    assert set(artifacts) == {"Counter", "Adder"}  # not OpenZeppelin's Ownable/Context
    counter = artifacts["Counter"]
    assert counter.source == "contracts/Counter.sol"
    assert {e["name"] for e in counter.abi if e["type"] == "error"} >= {"CounterTooBig"}
    assert counter.bytecode.startswith("0x6080") and len(counter.deployed_bytecode) > 1000
    assert load_artifact("Counter", project) == counter


def test_second_compile_is_a_cache_hit(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = compile_contracts(project)

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiler ran on a cache hit")

    monkeypatch.setattr(solcx, "compile_standard", no_compiler)
    assert compile_contracts(project) == first


def test_editing_a_source_recompiles(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    before = compile_contracts(root)["Counter"]
    counter = root / "contracts" / "Counter.sol"
    counter.write_text(counter.read_text().replace("function inc(", "function bump(", 1))
    after = compile_contracts(root)["Counter"]
    names = {e.get("name") for e in after.abi}
    assert "bump" in names and "inc" not in names
    assert after.deployed_bytecode != before.deployed_bytecode
    assert len(list((root / "build" / "solc").glob("*.json"))) == 1  # the stale one is gone


def test_compile_error_names_file_and_line(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    bad = "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n\ncontract Bad {\n"
    bad += "  uint x = ;\n}\n"  # line 5
    (root / "contracts" / "Bad.sol").write_text(bad)
    with pytest.raises(CompilerError) as caught:
        compile_contracts(root)
    message = str(caught.value)
    assert message.startswith("contracts/Bad.sol:5: ParserError:")
    assert "\n" not in message


def test_unknown_contract_name_is_a_compiler_error(project: Path) -> None:
    with pytest.raises(CompilerError, match="no contract named Nope"):
        load_artifact("Nope", project)


def _fake_solc(directory: Path, script: str) -> None:
    directory.mkdir()
    path = directory / "solc"
    path.write_text(script)
    path.chmod(0o755)


def test_native_solc_at_the_pinned_version_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = tmp_path / "pinned"
    _fake_solc(pinned, f"#!/bin/sh\necho 'Version: {compiler.SOLC_VERSION}+commit.0'\n")
    wrapper = tmp_path / "wrapper"
    _fake_solc(wrapper, "#!/usr/bin/env python3\nfrom solc_select.__main__ import solc\n")
    for directory, expected in ((pinned, pinned / "solc"), (wrapper, None)):
        monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
        compiler._native_solc.cache_clear()
        assert compiler._native_solc() == expected
    compiler._native_solc.cache_clear()
