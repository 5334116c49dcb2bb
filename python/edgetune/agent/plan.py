"""A federation as data: the task to publish, the model it pins, and every edge's settings.

Both executors (`federation.execute_in_process`, `processes.launch(...).run`) run a
`FederationPlan`. The process executor writes it to a JSON file and each `edgetune agent --plan
FILE --edge I` rebuilds its `EdgeSpec` from that file, so an agent process runs with exactly the
settings an in-process agent would get. The JSON codec (`codec.py`) walks `dataclasses.fields`
and requires every field on reading, so a field added to any of these dataclasses travels without
anyone touching this module, and an old file that lacks it is refused rather than silently
defaulted.
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edgetune.agent.codec import Undecodable, decode, encode
from edgetune.agent.settings import AgentSettings
from edgetune.chain.types import TaskConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec, TrainConfig

ModelKindName = Literal["text", "vision", "linear"]
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

    def registering_in_order(self) -> "FederationPlan":
        """This plan with each edge registering only after the edges before it: agent processes
        start together and would register in whatever order they get ready, while every table,
        JSON file and figure names an edge by its registration index. Edge indices are plan
        positions (0..n-1), so the index is one name everywhere."""
        edges = tuple(
            replace(edge, settings=replace(edge.settings, register_after=position))
            for position, edge in enumerate(self.edges)
        )
        return replace(self, edges=edges)

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
        except ValueError as exc:  # not UTF-8, or not JSON
            raise PlanFileError(f"plan {path} is not JSON: {exc}") from None
        try:
            return decode(cls, data, str(path))
        except Undecodable as exc:
            raise PlanFileError(str(exc)) from None

    def edge(self, index: int) -> EdgeSpec:
        for edge in self.edges:
            if edge.index == index:
                return edge
        known = ", ".join(str(e.index) for e in self.edges)
        raise PlanFileError(f"the plan has no edge {index} (edges: {known})")
