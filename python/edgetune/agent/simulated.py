"""A federation of many edges in one process, on the cheap linear learner (learning/linear.py).

Real agents (`EdgeAgent`) drive the real contract through the in-process runner
(`federation.execute_in_process`); only the model is small, so a round of 64 or 256 edges costs
seconds of training and scoring instead of hours. bench/bench_scale.py measures the protocol
with it, and tests/agent/test_linear_learner.py checks that such a federation learns.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from edgetune.agent.federation import ETHER, FederationResult, execute_in_process
from edgetune.agent.learner import LinearLearner
from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
from edgetune.agent.settings import AgentSettings
from edgetune.chain.connect import Chain, dev_accounts, transfer
from edgetune.chain.types import SCORE_SCALE, TaskConfig
from edgetune.contribution import ShapleyConfig
from edgetune.learning import AdaptedModel, AdapterSpec, TrainConfig
from edgetune.learning.linear import (
    LabelledData,
    LinearModel,
    LinearRecipe,
    balanced,
    edge_class_mix,
    load_data,
    save_data,
    synthetic_split,
    write_linear_base,
)


@dataclass(frozen=True)
class SimulatedConfig:
    edges: int = 4
    rounds: int = 2
    recipe: LinearRecipe = field(default_factory=LinearRecipe)
    alpha: float = 0.5  # Dirichlet concentration of each edge's class mix: small = non-IID
    train_samples: int = 200  # per edge
    validation_per_class: int = 10  # each edge's own balanced validation set
    test_per_class: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20, batch_size=32, lr=0.5))
    shapley: ShapleyConfig = field(default_factory=ShapleyConfig)
    harm_tolerance: float = 0.1  # nats of validation loss, as in the text demo
    # None: 2N + 30 blocks. Under automining every transaction is a block, so a stage where all
    # N edges send one needs N blocks before its deadline; stages still close early.
    phase_blocks: int | None = None
    pool_ether: float = 3.0
    stake_ether: float = 0.5
    workdir: Path = Path(".edgetune/simulated")
    server_momentum: float = 0.0  # the task's aggregation rule (AdapterSpec.server_momentum)

    def task_template(self) -> TaskConfig:
        zero, stake = bytes(32), int(self.stake_ether * ETHER)
        blocks = self.phase_blocks or 2 * self.edges + 30
        return TaskConfig(
            zero,
            zero,
            zero,
            "",
            "",
            "",
            rounds=self.rounds,
            max_edges=self.edges,
            min_stake=stake,
            slash_absent=stake // 4,
            slash_non_reveal=stake // 2,
            slash_invalid=stake,
            registration_blocks=4 * self.edges + 100,
            commit_blocks=blocks,
            reveal_blocks=blocks,
            score_commit_blocks=blocks,
            score_reveal_blocks=blocks,
            tally_blocks=blocks,
            attest_commit_blocks=blocks,
            attest_reveal_blocks=blocks,
            harm_tolerance=round(self.harm_tolerance * SCORE_SCALE),
        )

    def plan(self) -> FederationPlan:
        """Edge i signs as account i + 1 of the chain (0 is the owner's): see `fund_accounts`."""
        stake = int(self.stake_ether * ETHER)
        edges = tuple(
            EdgeSpec(
                i,
                i + 1,
                self.workdir / f"edge-{i}",
                self._train(i),
                AgentSettings(stake, self.shapley),
            )
            for i in range(self.edges)
        )
        model = ModelSpec(
            "linear", self.workdir / "base", AdapterSpec(server_momentum=self.server_momentum)
        )
        store = f"embedded:{self.workdir / 'ipfs'}"
        return FederationPlan(
            self.task_template(), int(self.pool_ether * ETHER), model, edges, self.workdir, store
        )

    def _train(self, index: int) -> TrainConfig:
        return replace(self.train, seed=self.train.seed + 100 * index)


def prepare(config: SimulatedConfig) -> LabelledData:
    """Write the base model folder and every edge's private data; returns the test set."""
    recipe = config.recipe
    write_linear_base(config.workdir / "base", recipe)
    per_class = config.validation_per_class * recipe.classes
    for index in range(config.edges):
        mix = edge_class_mix(recipe, index, config.alpha)
        train = synthetic_split(recipe, config.train_samples, mix, seed=2 * index + 1)
        validation = synthetic_split(recipe, per_class, balanced(recipe), seed=2 * index + 2)
        save_data(config.workdir / f"edge-{index}", train, validation)
    return synthetic_split(recipe, config.test_per_class * recipe.classes, balanced(recipe), 0)


def linear_learner(edge: EdgeSpec, adapted: AdaptedModel) -> LinearLearner:
    """The `LearnerFactory` for plans of kind "linear": data from `edge.data_dir`."""
    assert isinstance(adapted, LinearModel), "a linear plan attaches a LinearModel"
    train, validation = load_data(edge.data_dir)
    return LinearLearner(adapted, train, validation, edge.train)


def linear_test_metric(
    test: LabelledData,
) -> Callable[[AdaptedModel, Mapping[str, torch.Tensor]], tuple[float, float]]:
    """The runner's score of G(r) on the held-out test set: (loss, accuracy)."""

    def metric(model: AdaptedModel, adapter: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        assert isinstance(model, LinearModel)
        featurized = model.featurize(test)
        return featurized.loss(adapter), featurized.accuracy(adapter)

    return metric


def fund_accounts(chain: Chain, count: int, ether: float) -> None:
    """Give `chain` at least `count` signing accounts, topping each up to `ether` from account 0:
    a local node prefunds only 10, and the extra ones are the same dev mnemonic's next keys."""
    known = {account.address for account in chain.accounts}
    extra = [a for a in dev_accounts(count) if a.address not in known]
    chain.accounts = chain.accounts + extra[: max(0, count - len(chain.accounts))]
    wanted = int(ether * ETHER)
    for account in chain.accounts[1:count]:
        balance = chain.read(lambda a=account: chain.w3.eth.get_balance(a.address))
        if balance < wanted:
            transfer(chain, chain.accounts[0], account.address, wanted - balance)


def run_simulated(
    config: SimulatedConfig,
    chain: Chain,
    log: Callable[[str], None] = print,
    on_round: Callable[[int], None] = lambda _round: None,
) -> FederationResult:
    """`config`'s federation on `chain`, every agent in this process."""
    test = prepare(config)
    fund_accounts(chain, config.edges + 1, config.stake_ether + 1.0)
    return execute_in_process(
        config.plan(), chain, linear_test_metric(test), log, linear_learner, on_round
    )
