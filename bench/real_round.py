"""One real federated round on the project's tiny text model, shared by the contribution benches.

Edges get non-IID private shards as `edgetune federation` gives them (the in-memory equivalent
of `agent.federation.prepare_edge_data` with `FederationConfig`'s defaults: 600 triage examples,
Dirichlet alpha 0.5, LoRA on every linear layer, 40 balanced validation examples per edge, seed
+100 per edge), train real LoRA updates (`TextLearner.train`), and a validator scores coalitions
with the agent's own metric (`TextLearner.metric`: minus validation loss on its 40 private
examples) through the agent's utility shape (`coalition_adapter`, normalised over the valid set).
`agent.federation` itself is not imported: it pulls in the agent and the chain client.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from edgetune.agent.learner import TextLearner
from edgetune.learning import (
    AdaptedModel,
    AdapterSpec,
    TrainConfig,
    attach_adapter,
    base_model_hash,
    coalition_adapter,
    ensure_tiny_model,
    initial_global_adapter,
    load_base_model,
    shard_non_iid,
    triage_examples,
)
from edgetune.learning.config import LLAMA_ALL_LINEAR

Tensors = dict[str, torch.Tensor]


@dataclass
class Edge:
    index: int
    learner: TextLearner

    @property
    def samples(self) -> int:
        return self.learner.samples


@dataclass
class Federation:
    adapted: AdaptedModel
    initial_global: Tensors
    edges: list[Edge]

    def train_round(self, global_adapter: Tensors, round_: int) -> list[Tensors]:
        """Every edge's update from `global_adapter` (real LoRA training, its own seed)."""
        return [edge.learner.train(global_adapter, round_) for edge in self.edges]


def federation(
    edges: int,
    seed: int = 0,
    alpha: float = 0.5,
    train_examples: int = 600,
    twins: Sequence[int] = (),
    steps: int = TrainConfig().steps,
) -> Federation:
    """`edges` non-IID edges as `edgetune federation` builds them, plus, for every index in
    `twins`, one more edge holding exactly that edge's data but training with another seed."""
    adapted = attach_adapter(_base(), AdapterSpec(target_modules=LLAMA_ALL_LINEAR))
    pool = triage_examples(train_examples, seed=seed)
    shards = shard_non_iid(pool, edges, alpha, seed=seed, min_size=8)
    learners = [
        TextLearner(adapted, shard, triage_examples(8 * 5, seed=1000 + i), _train(i, steps))
        for i, shard in enumerate(shards)
    ]
    for k, twin in enumerate(twins):
        learners.append(replace(learners[twin], config=_train(edges + k, steps)))
    return Federation(
        adapted,
        initial_global_adapter(adapted),
        [Edge(i, learner) for i, learner in enumerate(learners)],
    )


def _train(index: int, steps: int) -> TrainConfig:
    """`agent.federation.edge_train_config`: each edge trains with its own seed."""
    return replace(TrainConfig(), seed=TrainConfig().seed + 100 * index, steps=steps)


def validator_utility(
    metric: Callable[[Tensors], float],
    previous_global: Tensors,
    updates: Sequence[Tensors],
    weights: Sequence[float] | None = None,
) -> Callable[[frozenset[int]], float]:
    """The agent's Shapley utility over players 0..len(updates)-1 (see agent/validation.py)."""
    baseline = metric(previous_global)

    def utility(coalition: frozenset[int]) -> float:
        return metric(coalition_adapter(previous_global, updates, coalition, weights)) - baseline

    return utility


def _base():
    path = ensure_tiny_model()
    return load_base_model(path, expected_hash=base_model_hash(path))
