"""A whole federation on one machine: deploy, publish a task, give N edges their private data,
run their agents until the task finishes, and report what happened.

What runs is a `FederationPlan` (agent/plan.py). `FederationConfig` is the text demo's plan
template: N edges with non-IID triage data and demo roles. There are two executors:
`execute_in_process` steps every agent in one process (on the embedded chain, mining a block
whenever nobody had anything to do, so deadlines still pass when an edge is silent), and
`processes.launch(plan, ...).run(url)` runs each edge as its own `edgetune agent` process on a
node.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from edgetune.agent.edge import EdgeAgent
from edgetune.agent.launch import LearnerFactory, build_agent, clear_agent_state, text_learner
from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
from edgetune.agent.publish import MODEL_KINDS, PublishedTask, publish_task
from edgetune.agent.roles import Behaviour, Role
from edgetune.agent.settings import AgentSettings, RoundTimings
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, connect
from edgetune.chain.deploy import deploy
from edgetune.chain.records import Deployment
from edgetune.chain.types import SCORE_SCALE, Phase, TaskConfig
from edgetune.contribution import ShapleyConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import (
    AdaptedModel,
    AdapterSpec,
    Example,
    TrainConfig,
    ensure_tiny_model,
    evaluate,
    save_jsonl,
    shard_non_iid,
    triage_examples,
)
from edgetune.learning.config import LLAMA_ALL_LINEAR
from edgetune.storage import ContentStore, open_store

ETHER = 10**18
# The runner's own score of a global adapter on its held-out test set: (loss, accuracy).
TestMetric = Callable[[AdaptedModel, Mapping[str, torch.Tensor]], tuple[float, float]]


class TooManyEdges(EdgetuneError):
    """More edges than the chain has dev accounts to sign with (one is the owner's)."""


@dataclass(frozen=True)
class FederationConfig:
    edges: int = 3
    rounds: int = 3
    # Roles of the last edges (see agent/roles.py), in this order from the end: free riders,
    # copiers (of edge 0), lazy validators, poisoners. Edge 0 is always honest.
    free_riders: int = 0
    copiers: int = 0
    lazy: int = 0
    poisoners: int = 0
    # How far below zero an update's median Shapley value may fall before the contract leaves
    # it out of the aggregate, in metric units (nats of loss). The included set is fixed on chain
    # from the medians, so honest validators can no longer split on it whatever its value.
    harm_tolerance: float = 0.1
    # Each phase's deadline. Phases close early once every edge acted, so a long one costs time
    # only when an edge is silent; what it buys is patience: an agent waits out a content outage
    # until a phase is nearly over, and the process runner mines a block a second (90 s).
    phase_blocks: int = 90
    alpha: float = 0.5  # Dirichlet concentration of each edge's class mix: small = non-IID
    train_examples: int = 600
    validation_per_class: int = 8  # each edge's own private, balanced validation set
    test_per_class: int = 40  # the held-out test set the report evaluates G(r) on
    seed: int = 0
    pool_ether: float = 3.0
    stake_ether: float = 0.5
    model_dir: Path | None = None  # None: the tiny model the project builds
    # LoRA on every linear layer: on the tiny model it reached 0.775 test accuracy after 5 rounds
    # (4 edges, 60 steps) where attention-only LoRA reached 0.39, for 3x the training time.
    spec: AdapterSpec = field(default_factory=lambda: AdapterSpec(target_modules=LLAMA_ALL_LINEAR))
    train: TrainConfig = field(default_factory=TrainConfig)
    shapley: ShapleyConfig = field(default_factory=ShapleyConfig)
    workdir: Path = Path(".edgetune/federation")
    store: str = "embedded"

    def task_template(self) -> TaskConfig:
        zero, stake = bytes(32), int(self.stake_ether * ETHER)
        blocks = self.phase_blocks
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
            registration_blocks=1000,
            commit_blocks=blocks,
            reveal_blocks=blocks,
            score_commit_blocks=blocks,
            score_reveal_blocks=blocks,
            tally_blocks=blocks,
            attest_commit_blocks=blocks,
            attest_reveal_blocks=blocks,
            harm_tolerance=round(self.harm_tolerance * SCORE_SCALE),
        )

    def behaviour(self, index: int) -> Behaviour:
        """Edge `index`'s role: counted from the last edge backwards, edge 0 always honest."""
        from_end = self.edges - 1 - index
        for behaviour, count in (
            ("free-rider", self.free_riders),
            ("copier", self.copiers),
            ("lazy", self.lazy),
            ("poisoner", self.poisoners),
        ):
            if from_end < count and index > 0:
                return behaviour  # type: ignore[return-value]
            from_end -= count
        return "honest"

    def data_source(self, index: int) -> int:
        """Whose data edge `index` trains on: a copier holds a copy of edge 0's."""
        return 0 if self.behaviour(index) == "copier" else index

    def check_accounts(self, count: int) -> None:
        """Refuse, before anything is deployed, a federation the chain's `count` dev accounts
        cannot sign for: edge i signs as dev account i + 1, 0 is the owner's."""
        if self.edges >= count:
            raise TooManyEdges(
                f"{self.edges} edges need {self.edges + 1} dev accounts (one is the owner's); "
                f"the chain has {count}, so at most {count - 1} edges"
            )

    def plan(self, accounts: Sequence[str]) -> FederationPlan:
        """The plan on a chain whose dev account i has address `accounts[i]`: edge i signs as
        dev account i + 1 (0 is the owner's), and a copier copies edge 0."""
        self.check_accounts(len(accounts))
        return FederationPlan(
            task=self.task_template(),
            pool_wei=int(self.pool_ether * ETHER),
            model=ModelSpec("text", self.model_dir or ensure_tiny_model(), self.spec),
            edges=tuple(self._edge(i, accounts[1]) for i in range(self.edges)),
            workdir=self.workdir,
            store=f"embedded:{self.workdir / 'ipfs'}" if self.store == "embedded" else self.store,
        )

    def _edge(self, index: int, source: str) -> EdgeSpec:
        behaviour = self.behaviour(index)
        role = Role(behaviour, self.seed + index, source if behaviour == "copier" else None)
        settings = AgentSettings(
            stake=int(self.stake_ether * ETHER), shapley=self.shapley, role=role
        )
        # Each edge trains with its own seed; a copier with its source's, as a Sybil would.
        train = replace(self.train, seed=self.train.seed + 100 * self.data_source(index))
        return EdgeSpec(index, index + 1, self.workdir / f"edge-{index}", train, settings)


@dataclass
class FederationResult:
    plan: FederationPlan
    chain: Chain
    owner: EdgeTuneClient
    task: PublishedTask
    deployment_block: int
    store: ContentStore
    agents: list[EdgeAgent]
    test_metrics: dict[int, tuple[float, float]]  # round -> (loss, accuracy) of G(r) on test
    timings: dict[int, RoundTimings]  # round -> summed over edges


def prepare_edge_data(config: FederationConfig) -> list[Example]:
    """Write each edge's non-IID private shard (`edge-i/train.jsonl`) and its own balanced
    `validation.jsonl`; returns the held-out test set."""
    pool = triage_examples(config.train_examples, seed=config.seed)
    shards = shard_non_iid(pool, config.edges, config.alpha, seed=config.seed, min_size=8)
    for index in range(config.edges):
        directory = config.workdir / f"edge-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        save_jsonl(shards[config.data_source(index)], directory / "train.jsonl")
        validation = triage_examples(config.validation_per_class * 5, seed=1000 + index)
        save_jsonl(validation, directory / "validation.jsonl")
    return triage_examples(config.test_per_class * 5, seed=999_999)


def text_test_metric(test: Sequence[Example]) -> TestMetric:
    def metric(adapted: AdaptedModel, adapter: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        result = evaluate(adapted, test, adapter)
        return result.loss, result.accuracy or 0.0

    return metric


def publish_plan(
    plan: FederationPlan, chain: Chain
) -> tuple[EdgeTuneClient, Deployment, ContentStore, PublishedTask]:
    """The owner's part of either executor: deploy, publish the model and the round-0 adapter,
    create and fund the task; and wipe the edges' state from any earlier federation."""
    plan.workdir.mkdir(parents=True, exist_ok=True)
    owner, deployment = deploy(chain, chain.accounts[0])
    store = open_store(plan.store)
    assert plan.model.model_dir is not None, "the owner publishes a local model"
    kind = MODEL_KINDS[plan.model.kind]
    task = publish_task(
        owner, store, plan.model.model_dir, plan.model.adapter, plan.task, plan.pool_wei, kind
    )
    for edge in plan.edges:
        edge.data_dir.mkdir(parents=True, exist_ok=True)
        clear_agent_state(edge.data_dir)
    return owner, deployment, store, task


def execute_in_process(
    plan: FederationPlan,
    chain: Chain,
    test_metric: TestMetric,
    log: Callable[[str], None] = print,
    learner: LearnerFactory = text_learner,
    on_round: Callable[[int], None] = lambda _round: None,
) -> FederationResult:
    """Run `plan` with every agent in this process, stepping them round-robin on `chain`;
    `on_round(r)` runs as round r ends (bench/bench_scale.py times rounds with it)."""
    owner, deployment, store, task = publish_plan(plan, chain)
    agents = [
        build_agent(
            owner.as_sender(chain.accounts[edge.dev_account]),
            task.task_id,
            store,
            edge,
            plan.model,
            log=_prefixed(log, edge),
            learner=learner,
        )
        for edge in plan.edges
    ]
    evaluator = agents[0].learner.adapted  # type: ignore[attr-defined]
    metrics = drive(
        chain,
        owner,
        task.task_id,
        agents,
        lambda adapter: test_metric(evaluator, adapter),
        log,
        on_round,
    )
    return FederationResult(
        plan, chain, owner, task, deployment.block, store, agents, metrics, _sum_timings(agents)
    )


def run_in_process(
    config: FederationConfig, log: Callable[[str], None] = print, chain: Chain | None = None
) -> FederationResult:
    """The text federation of `config` in one process (tests and `--chain embedded`)."""
    chain = chain or connect("embedded")
    test = prepare_edge_data(config)
    plan = config.plan([account.address for account in chain.accounts])
    return execute_in_process(plan, chain, text_test_metric(test), log)


def _prefixed(log: Callable[[str], None], edge: EdgeSpec) -> Callable[[str], None]:
    role = "" if edge.behaviour == "honest" else f" ({edge.behaviour})"
    return lambda message: log(f"[edge {edge.index}{role}] {message}")


def start_when_full(owner: EdgeTuneClient, task_id: int, expected: int) -> None:
    """The owner's move once every invited edge has registered: start round 1 now rather than
    at the registration deadline (registration by strangers never starts a task)."""
    status = owner.status(task_id)
    if status.phase == Phase.REGISTRATION and status.active_edges >= expected:
        owner.start(task_id)


def drive(
    chain: Chain,
    owner: EdgeTuneClient,
    task_id: int,
    agents: list[EdgeAgent],
    evaluate_global: Callable[[dict], tuple[float, float]],
    log: Callable[[str], None],
    on_round: Callable[[int], None] = lambda _round: None,
) -> dict[int, tuple[float, float]]:
    """Step agents round-robin until the task ends, mining a block when all are idle (so
    deadlines pass); score each new global adapter with `evaluate_global` -> (loss, accuracy),
    after calling `on_round` with the round that ended."""

    def current_global():
        return agents[0].fetch_global(owner.status(task_id))  # hash-checked like any agent's

    metrics = {0: evaluate_global(current_global())}
    seen_round = owner.status(task_id).round
    while True:
        results = [agent.step() for agent in agents]
        start_when_full(owner, task_id, len(agents))
        if not any(running for _, running in results):
            break
        if not any(acted for acted, _ in results):
            chain.mine(1)
        status = owner.status(task_id)
        if status.round != seen_round or status.phase.name == "FINISHED":
            on_round(seen_round)
            metrics[seen_round] = evaluate_global(current_global())
            loss, accuracy = metrics[seen_round]
            log(f"round {seen_round} done: test loss {loss:.4f}, accuracy {accuracy:.3f}")
            seen_round = status.round
    return metrics


def _sum_timings(agents: list[EdgeAgent]) -> dict[int, RoundTimings]:
    total: dict[int, RoundTimings] = {}
    for agent in agents:
        for round_, timing in agent.timings.items():
            summed = total.setdefault(round_, RoundTimings())
            for kind in ("training", "storage", "chain", "shapley"):
                setattr(summed, kind, getattr(summed, kind) + getattr(timing, kind))
    return total
