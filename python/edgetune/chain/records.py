"""Where a contract and a run live, as small JSON files: `deployments/<chainId>.json` (per chain)
and `.edgetune/federation/last-run.json` (the last federation: its node, contract and task).

No web3 here: `edgetune chain status` reads the last run to find its node, and must start fast.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from edgetune.chain.errors import DeploymentNotFound, RecordUnreadable
from edgetune.chain.project import find_project_root, state_dir

_R = TypeVar("_R")


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    address: str
    block: int
    tx_hash: str
    abi_hash: str


def deployments_dir(root: Path | None = None) -> Path:
    return (root or find_project_root()) / "deployments"


def save_deployment(deployment: Deployment, root: Path | None = None) -> Path:
    path = deployments_dir(root) / f"{deployment.chain_id}.json"
    _write_json(path, asdict(deployment))
    return path


def read_deployment(chain_id: int, root: Path | None = None) -> Deployment | None:
    """The deployment recorded for `chain_id`, None when there is none."""
    path = deployments_dir(root) / f"{chain_id}.json"
    fields = _read_json(path)
    return None if fields is None else _record(Deployment, fields, path)


@dataclass(frozen=True)
class RunRecord:
    """Where a federation lives (its node, contract, task), so later commands can find it."""

    rpc_url: str
    contract: str
    task_id: int
    from_block: int

    @staticmethod
    def path(root: Path | None = None) -> Path:
        return state_dir(root or find_project_root()) / "federation" / "last-run.json"

    def save(self, path: Path | None = None) -> None:
        _write_json(path or self.path(), asdict(self))

    @classmethod
    def find(cls, root: Path | None = None) -> "RunRecord | None":
        """The last run, None when none was recorded."""
        path = cls.path(root)
        fields = _read_json(path)
        return None if fields is None else _record(cls, fields, path)

    @classmethod
    def load(cls, path: Path | None = None) -> "RunRecord":
        path = path or cls.path()
        fields = _read_json(path)
        if fields is None:
            raise DeploymentNotFound(f"no federation run recorded at {path}; pass --task")
        return _record(cls, fields, path)


def _write_json(path: Path, fields: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fields, indent=2) + "\n")
    except OSError as exc:
        raise RecordUnreadable(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecordUnreadable(
            f"{path} is not UTF-8 ({exc.reason} at byte {exc.start}); delete it"
        ) from None
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise RecordUnreadable(f"{path} is not JSON ({exc}); delete it") from None
    if not isinstance(values, dict):
        raise RecordUnreadable(f"{path} is not a JSON object; delete it")
    return values


def _record(kind: type[_R], values: dict[str, Any], path: Path) -> _R:
    """`kind` from a file's fields, each of its declared type (a record edited by hand, or
    written by another version, fails here by name rather than later as an AttributeError)."""
    try:
        record = kind(**values)
    except TypeError:
        raise RecordUnreadable(f"{path} does not hold a {kind.__name__}; delete it") from None
    types = get_type_hints(kind)
    for field in fields(record):  # type: ignore[arg-type]
        value = getattr(record, field.name)
        if type(value) is not types[field.name]:  # exact: JSON's true is no block number
            raise RecordUnreadable(
                f"{path}: {field.name} is {value!r}, not {types[field.name].__name__}; delete it"
            )
    return record
