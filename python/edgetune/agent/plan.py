"""A federation as data: the task to publish, the model it pins, and every edge's settings.

Both executors (`federation.execute_in_process`, `processes.launch(...).run`) run a
`FederationPlan`. The process executor writes it to a JSON file and each `edgetune agent --plan
FILE --edge I` rebuilds its `EdgeSpec` from that file, so an agent process runs with exactly the
settings an in-process agent would get. The JSON codec walks `dataclasses.fields` and requires
every field on reading, so a field added to any of these dataclasses travels without anyone
touching this module, and an old file that lacks it is refused rather than silently defaulted.
"""

import json
import types
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from edgetune.agent.edge import AgentSettings
from edgetune.chain.types import TaskConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec, TrainConfig

ModelKindName = Literal["text", "vision"]
Utility = Literal["loss", "accuracy"]


class PlanFileError(EdgetuneError):
    """A plan file is missing, is not valid JSON, or does not describe the plan's fields."""


@dataclass(frozen=True)
class ModelSpec:
    kind: ModelKindName = "text"
    # None: the agent fetches the base model by the task's CID (and checks its hash).
    model_dir: Path | None = None
    adapter: AdapterSpec = field(default_factory=AdapterSpec)


@dataclass(frozen=True)
class EdgeSpec:
    index: int
    dev_account: int  # index into the local chain's dev accounts
    data_dir: Path  # train.jsonl and validation.jsonl (text), and the agent's state file
    train: TrainConfig
    settings: AgentSettings  # stake, Shapley settings, demo role, polling and fetch retries
    # The Shapley utility on the edge's validation data: validation loss (text default) or
    # accuracy (the case study's diagnosis accuracy).
    utility: Utility = "loss"

    @property
    def behaviour(self) -> str:
        return self.settings.role.behaviour


@dataclass(frozen=True)
class FederationPlan:
    task: TaskConfig  # every parameter but the hashes and CIDs, which publishing fills in
    pool_wei: int
    model: ModelSpec
    edges: tuple[EdgeSpec, ...]
    workdir: Path
    store: str  # embedded[:PATH] | ipfs[:MULTIADDR], as every agent opens it

    def roles(self, addresses: dict[int, str]) -> dict[str, str]:
        """address -> role name, for the views; `addresses`: dev account -> address."""
        return {addresses[e.dev_account]: e.behaviour for e in self.edges}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(encode(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "FederationPlan":
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise PlanFileError(f"cannot read plan {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise PlanFileError(f"plan {path} is not JSON: {exc}") from None
        return decode(cls, data, str(path))

    def edge(self, index: int) -> EdgeSpec:
        for edge in self.edges:
            if edge.index == index:
                return edge
        known = ", ".join(str(e.index) for e in self.edges)
        raise PlanFileError(f"the plan has no edge {index} (edges: {known})")


def encode(value: Any) -> Any:
    """A dataclass tree as JSON values: bytes as hex, paths and tuples as strings and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(kind: Any, value: Any, where: str) -> Any:
    """The inverse of `encode` for the declared type `kind`; names the first field it rejects."""
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise PlanFileError(f"{where}: expected an object for {kind.__name__}")
        names = {f.name for f in fields(kind)}
        missing, unknown = names - set(value), set(value) - names
        if missing or unknown:
            raise PlanFileError(
                f"{where}: {kind.__name__} fields missing {sorted(missing)}, unknown "
                f"{sorted(unknown)}"
            )
        hints = get_type_hints(kind)
        try:
            return kind(**{n: decode(hints[n], value[n], f"{where}.{n}") for n in names})
        except (TypeError, ValueError) as exc:
            raise PlanFileError(f"{where}: {exc}") from None
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (other,) = [a for a in args if a is not type(None)]
        return decode(other, value, where)
    if origin is tuple:
        item = args[0]
        return tuple(decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in args:
            raise PlanFileError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if kind is bytes:
        return bytes.fromhex(value)
    if kind is Path:
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not _is(value, kind):
        raise PlanFileError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
