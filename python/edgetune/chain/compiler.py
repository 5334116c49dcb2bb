"""Compile every Solidity source under contracts/ with py-solc-x, exactly as Hardhat does.

Why this shape:
- Source unit names are the ones Hardhat uses (`contracts/...` relative to the project root,
  `@openzeppelin/contracts/...` for node_modules) and the settings come from the same
  solc_settings.json that hardhat.config.js reads, so the metadata hash (and thus the bytecode)
  is identical to Hardhat's. Python resolves the imports itself and hands solc every source's
  content, so no remappings or include paths are needed.
- No native solc can be installed offline; npm `solc` (wasm) runs behind scripts/solc-shim.js,
  which answers py-solc-x like a native binary. A native solc on PATH at the pinned version wins.
- Artifacts are cached in build/solc/<key>.json where the key hashes every source, the settings
  and the compiler, so a stale artifact can never be loaded.
"""

import functools
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcError

from edgetune.chain.errors import CompilerError
from edgetune.chain.project import find_project_root

SOLC_VERSION = "0.8.37"
SETTINGS: dict[str, Any] = json.loads(Path(__file__).with_name("solc_settings.json").read_text())
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"]
_CACHE_FORMAT = 2
_IMPORT = re.compile(r"\bimport\s+(?:[^\"';]*?\bfrom\s+)?[\"']([^\"']+)[\"']")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


@dataclass(frozen=True)
class ContractArtifact:
    """What deploying and calling a contract needs; `source` is its source unit name."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    source: str
    # solc's storage entries (label, slot, offset, type): contracts that share storage by
    # delegatecall must agree on them
    storage_layout: list[dict[str, Any]]


def compile_contracts(project_root: Path | None = None) -> dict[str, ContractArtifact]:
    """Compile (or load from build/) every contract defined under contracts/, keyed by name."""
    root = (project_root or find_project_root()).resolve()
    sources = collect_sources(root)
    binary, compiler_id = solc_binary(root)
    key = _cache_key(sources, compiler_id)
    cache_file = root / "build" / "solc" / f"{key}.json"
    if cache_file.is_file():
        return _read_cache(cache_file)
    artifacts = _compile(root, sources, binary)
    _write_cache(cache_file, artifacts)
    return artifacts


def load_artifact(name: str, project_root: Path | None = None) -> ContractArtifact:
    """One contract's artifact; compiles first when the cache is missing or stale."""
    artifacts = compile_contracts(project_root)
    if name not in artifacts:
        raise CompilerError(f"no contract named {name} under contracts/ ({', '.join(artifacts)})")
    return artifacts[name]


def collect_sources(root: Path) -> dict[str, str]:
    """Every .sol file under contracts/ plus everything they import, by source unit name."""
    pending = [p.relative_to(root).as_posix() for p in sorted((root / "contracts").rglob("*.sol"))]
    if not pending:
        raise CompilerError(f"no .sol files under {root / 'contracts'}")
    sources: dict[str, str] = {}
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        path = _unit_path(root, unit)
        if path is None:
            continue  # solc reports the unresolved import with its file:line
        # Bytes, not read_text: universal newlines would change the content hash in the metadata.
        sources[unit] = path.read_bytes().decode("utf-8")
        pending.extend(_imports(unit, sources[unit]))
    return dict(sorted(sources.items()))


def solc_binary(root: Path) -> tuple[Path, str]:
    """The compiler to run and an id for the cache key: native solc if pinned, else the shim."""
    native = _native_solc()
    if native is not None:
        return native, f"native-{SOLC_VERSION}"
    shim = root / "scripts" / "solc-shim.js"
    package = root / "node_modules" / "solc" / "package.json"
    if not shim.is_file() or not package.is_file() or shutil.which("node") is None:
        raise CompilerError(f"no solc {SOLC_VERSION}: no native solc, no node + npm solc in {root}")
    version = json.loads(package.read_text())["version"]
    if version != SOLC_VERSION:
        raise CompilerError(f"npm solc is {version}, edgetune pins {SOLC_VERSION}; run npm ci")
    return shim, f"solcjs-{version}"


@functools.cache
def _native_solc() -> Path | None:
    """A native solc on PATH that reports the pinned version (solc-select's wrapper is skipped:
    offline it hangs trying to download)."""
    found = shutil.which("solc")
    if found is None or b"solc_select" in Path(found).read_bytes()[:512]:
        return None
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(found) if f"Version: {SOLC_VERSION}+" in out.stdout else None


def _unit_path(root: Path, unit: str) -> Path | None:
    for path in (root / unit, root / "node_modules" / unit):
        if path.is_file():
            return path
    return None


def _imports(unit: str, content: str) -> list[str]:
    found = _IMPORT.findall(_COMMENT.sub("", content))
    return [
        posixpath.normpath(posixpath.join(posixpath.dirname(unit), imp))
        if imp.startswith(".")
        else imp
        for imp in found
    ]


def _cache_key(sources: dict[str, str], compiler_id: str) -> str:
    digests = {unit: hashlib.sha256(text.encode()).hexdigest() for unit, text in sources.items()}
    blob = json.dumps(
        [_CACHE_FORMAT, compiler_id, SETTINGS, _OUTPUTS, digests], sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _standard_input(sources: dict[str, str]) -> dict[str, Any]:
    own = [unit for unit in sources if unit.startswith("contracts/")]
    return {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": {**SETTINGS, "outputSelection": {unit: {"*": _OUTPUTS} for unit in own}},
    }


def _compile(root: Path, sources: dict[str, str], binary: Path) -> dict[str, ContractArtifact]:
    try:
        output = solcx.compile_standard(_standard_input(sources), solc_binary=binary)
    except SolcError as exc:
        raise CompilerError(_first_error(exc, sources)) from None
    except (OSError, ValueError) as exc:
        raise CompilerError(f"{binary} failed: {str(exc).splitlines()[0]}") from None
    artifacts: dict[str, ContractArtifact] = {}
    for unit, contracts in output.get("contracts", {}).items():
        for name, out in contracts.items():
            if name in artifacts:
                other = artifacts[name].source
                raise CompilerError(f"contract name {name} is defined in {other} and {unit}")
            artifacts[name] = ContractArtifact(
                name=name,
                abi=out["abi"],
                bytecode="0x" + out["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + out["evm"]["deployedBytecode"]["object"],
                source=unit,
                storage_layout=out.get("storageLayout", {}).get("storage", []),
            )
    return dict(sorted(artifacts.items()))


def _first_error(exc: SolcError, sources: dict[str, str]) -> str:
    """One line: `file:line: ErrorType: message` of the first error solc reported."""
    errors = [e for e in (exc.error_dict or []) if e.get("severity") == "error"]
    if not errors:
        return f"solc failed: {str(exc).strip().splitlines()[0]}"
    first = errors[0]
    where = "solc"
    if loc := first.get("sourceLocation"):
        line = sources.get(loc["file"], "").encode()[: max(loc["start"], 0)].count(b"\n") + 1
        where = f"{loc['file']}:{line}"
    return f"{where}: {first.get('type', 'Error')}: {first['message']}"


def _read_cache(path: Path) -> dict[str, ContractArtifact]:
    data = json.loads(path.read_text())
    return {name: ContractArtifact(**fields) for name, fields in data.items()}


def _write_cache(path: Path, artifacts: dict[str, ContractArtifact]) -> None:
    """Write atomically and drop older keys, so build/solc holds only the current artifacts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.json"):
        old.unlink()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({name: asdict(a) for name, a in artifacts.items()}, indent=1))
    os.replace(tmp, path)
