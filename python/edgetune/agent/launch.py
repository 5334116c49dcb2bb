"""Building one edge agent from what a user hands it: a chain client, a store, and its
`EdgeSpec` (a data folder, training and agent settings), plus optionally a local copy of the base
model. Everything else comes from the chain (the task's pinned hashes), and anything that does
not match them is refused before training starts. Both federation executors and a hand-started
`edgetune agent` build their agents here."""

from collections.abc import Callable
from pathlib import Path

from edgetune.agent.edge import EdgeAgent
from edgetune.agent.learner import Learner, TextLearner
from edgetune.agent.plan import EdgeSpec, ModelSpec
from edgetune.agent.publish import MODEL_KINDS, fetch_base_model
from edgetune.agent.state import AgentState
from edgetune.chain.client import EdgeTuneClient
from edgetune.errors import EdgetuneError
from edgetune.learning import AdaptedModel, load_jsonl
from edgetune.learning.model import default_cache_dir
from edgetune.storage import ContentStore

TRAIN_FILE, VALIDATION_FILE, STATE_FILE = "train.jsonl", "validation.jsonl", "agent-state.json"

# How an edge's learner is made from its spec and its copy of the adapted model.
LearnerFactory = Callable[[EdgeSpec, AdaptedModel], Learner]


class TaskMismatch(EdgetuneError):
    """What the edge was given does not match what the task pins on chain."""


def text_learner(edge: EdgeSpec, adapted: AdaptedModel) -> TextLearner:
    """Trains on `data_dir/train.jsonl`, scores on `data_dir/validation.jsonl`."""
    return TextLearner(
        adapted,
        load_jsonl(edge.data_dir / TRAIN_FILE),
        load_jsonl(edge.data_dir / VALIDATION_FILE),
        edge.train,
        edge.utility,
    )


def load_task_model(
    client: EdgeTuneClient, task_id: int, store: ContentStore, model: ModelSpec
) -> AdaptedModel:
    """The task's base model with its adapter attached, refusing a spec or model whose hash
    differs from the task's; without a local `model_dir` the base model is fetched by CID."""
    config = client.task_config(task_id)
    if model.adapter.spec_hash() != config.adapter_spec_hash:
        raise TaskMismatch(
            f"adapter spec hash {model.adapter.spec_hash().hex()} differs from task {task_id}'s "
            f"{config.adapter_spec_hash.hex()}; pass the task's spec"
        )
    model_dir = model.model_dir
    if model_dir is None:
        cache = default_cache_dir() / f"task-base-{config.base_model_hash.hex()[:16]}"
        model_dir = fetch_base_model(store, config.base_model_cid, config.base_model_hash, cache)
    kind = MODEL_KINDS[model.kind]
    return kind.attach(kind.load(model_dir, config.base_model_hash), model.adapter)


def build_agent(
    client: EdgeTuneClient,
    task_id: int,
    store: ContentStore,
    edge: EdgeSpec,
    model: ModelSpec,
    log: Callable[[str], None] = print,
    learner: LearnerFactory = text_learner,
) -> EdgeAgent:
    """Edge `edge` working on `task_id`, remembering its commitments in
    `edge.data_dir/agent-state.json`."""
    adapted = load_task_model(client, task_id, store, model)
    state = AgentState(edge.data_dir / STATE_FILE, client.address, task_id, client.sender_address)
    return EdgeAgent(
        client,
        task_id,
        store,
        learner(edge, adapted),
        state,
        edge.settings,
        log=log,
        server_momentum=model.adapter.server_momentum,
    )


def clear_agent_state(data_dir: Path) -> None:
    """Forget an earlier federation's commitments: a fresh chain even reuses the contract
    address and task ids, so they would otherwise be taken for this one's."""
    for stale in [data_dir / STATE_FILE, *data_dir.glob("agent-state.round-*")]:
        stale.unlink(missing_ok=True)
