"""Building one edge agent from what a user hands it: a chain client, a store, a data folder,
and optionally a local copy of the base model. Everything else comes from the chain (the task's
pinned hashes), and anything that does not match them is refused before training starts."""

from collections.abc import Callable
from pathlib import Path

from edgetune.agent.edge import AgentSettings, EdgeAgent
from edgetune.agent.learner import TextLearner
from edgetune.agent.publish import fetch_base_model
from edgetune.agent.state import AgentState
from edgetune.chain.client import EdgeTuneClient
from edgetune.errors import EdgetuneError
from edgetune.learning import (
    AdapterSpec,
    TrainConfig,
    attach_adapter,
    load_base_model,
    load_jsonl,
)
from edgetune.learning.model import default_cache_dir
from edgetune.storage import ContentStore

TRAIN_FILE, VALIDATION_FILE, STATE_FILE = "train.jsonl", "validation.jsonl", "agent-state.json"


class TaskMismatch(EdgetuneError):
    """What the edge was given does not match what the task pins on chain."""


def build_agent(
    client: EdgeTuneClient,
    task_id: int,
    store: ContentStore,
    data_dir: Path,
    settings: AgentSettings,
    train: TrainConfig,
    spec: AdapterSpec | None = None,
    model_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> EdgeAgent:
    """An agent for `task_id` training on `data_dir/train.jsonl`, validating on
    `data_dir/validation.jsonl`, remembering its commitments in `data_dir/agent-state.json`."""
    config = client.task_config(task_id)
    spec = spec or AdapterSpec()
    if spec.spec_hash() != config.adapter_spec_hash:
        raise TaskMismatch(
            f"adapter spec hash {spec.spec_hash().hex()} differs from task {task_id}'s "
            f"{config.adapter_spec_hash.hex()}; pass the task's spec"
        )
    if model_dir is None:
        cache = default_cache_dir() / f"task-base-{config.base_model_hash.hex()[:16]}"
        model_dir = fetch_base_model(store, config.base_model_cid, config.base_model_hash, cache)
    adapted = attach_adapter(load_base_model(model_dir, config.base_model_hash), spec)
    state = AgentState(data_dir / STATE_FILE, client.address, task_id, client.sender_address)
    learner = TextLearner(
        adapted, load_jsonl(data_dir / TRAIN_FILE), load_jsonl(data_dir / VALIDATION_FILE), train
    )
    return EdgeAgent(client, task_id, store, learner, state, settings, log=log)
