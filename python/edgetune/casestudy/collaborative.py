"""The collaborative arm of the medical case study: hospitals fine-tune the pinned vision-language
model together through exactly the same plan, executor, contract, content store and agents as any
other federation (`VisionLearner` instead of `TextLearner`), on the embedded chain in one process.
Then `run_case_study`: all four arms and the report."""

import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from edgetune.agent.federation import FederationResult, execute_in_process
from edgetune.agent.learner import VisionLearner
from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
from edgetune.agent.settings import AgentSettings
from edgetune.casestudy.arms import (
    SHORT_ANSWERS,
    evaluate_arm,
    prepare_arms,
    prepare_base,
    run_local_arms,
    to_cases,
)
from edgetune.casestudy.hospitals import balanced_test_set
from edgetune.casestudy.report import write_report
from edgetune.casestudy.results import ETHER, CaseStudyResults, HospitalRow, Pool
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.summary import write_summary
from edgetune.chain.connect import Chain, connect
from edgetune.chain.history import load_history
from edgetune.chain.nodes import AnvilNode, free_port
from edgetune.chain.types import SCORE_SCALE, TaskConfig
from edgetune.learning import AdapterSpec, TrainConfig
from edgetune.learning.vision.encode import VisionSample
from edgetune.learning.vision.evaluate import evaluate_vlm
from edgetune.learning.vision.model import VisionAdaptedModel


@dataclass(frozen=True)
class HospitalData:
    name: str
    train: Sequence[VisionSample]
    validation: Sequence[VisionSample]
    sample_weights: Sequence[float] | None = None  # how often each training sample is drawn


def collaborative_plan(
    base_dir: Path,
    spec: AdapterSpec,
    hospitals: Sequence[HospitalData],
    train: TrainConfig,
    rounds: int,
    workdir: Path,
    pool_ether: float = 3.0,
    harm_tolerance: float = 0.1,
    diagnosis_scored: bool = True,
) -> FederationPlan:
    """One edge per hospital on the VLM task; hospital i signs as dev account i + 1."""
    stake = ETHER // 2
    template = TaskConfig(
        bytes(32),
        bytes(32),
        bytes(32),
        "tiny-llava-xray",
        "",
        "",
        rounds=rounds,
        max_edges=len(hospitals),
        min_stake=stake,
        slash_non_reveal=stake // 2,
        slash_invalid=stake,
        registration_blocks=1000,
        harm_tolerance=round(harm_tolerance * SCORE_SCALE),
    )
    edges = tuple(
        EdgeSpec(
            index,
            index + 1,
            workdir / hospital.name,
            replace(train, seed=train.seed + 100 * index),
            AgentSettings(stake=stake),
            "accuracy" if diagnosis_scored else "loss",
        )
        for index, hospital in enumerate(hospitals)
    )
    model = ModelSpec("vision", base_dir, spec)
    return FederationPlan(
        template, int(pool_ether * ETHER), model, edges, workdir, f"embedded:{workdir / 'ipfs'}"
    )


def run_collaborative(
    plan: FederationPlan,
    hospitals: Sequence[HospitalData],
    test: Sequence[VisionSample],
    candidates: dict[str, str],
    chain: Chain,
    log: Callable[[str], None] = print,
) -> FederationResult:
    """Deploy, publish the VLM task on `chain`, run one agent per hospital until the last round.
    With the plan's "accuracy" utility validators value updates by accuracy over `candidates`
    (the diagnoses) on their audit cases (else by answer loss, which moves even at toy scale,
    where accuracy on 5 cases does not)."""

    def learner(edge: EdgeSpec, adapted: VisionAdaptedModel) -> VisionLearner:
        hospital = hospitals[edge.index]
        return VisionLearner(
            adapted,
            hospital.train,
            hospital.validation,
            edge.train,
            hospital.sample_weights,
            candidates if edge.utility == "accuracy" else None,
        )

    def test_metric(
        adapted: VisionAdaptedModel, adapter: Mapping[str, torch.Tensor]
    ) -> tuple[float, float]:
        result = evaluate_vlm(adapted, test, adapter, candidates)
        return result.loss, result.accuracy or 0.0

    return execute_in_process(
        plan,
        chain,
        test_metric,  # type: ignore[arg-type]
        log,
        learner,  # type: ignore[arg-type]
    )


def run_case_study(
    settings: CaseStudySettings,
    out_dir: Path,
    workdir: Path,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    chain: Chain | None = None,
) -> tuple[Path, CaseStudyResults]:
    """All four arms on one balanced test set, then the report (`out_dir/case-study.md`);
    returns the report's path and the results it was written from. The collaborative arm runs
    on `chain` if given (left running, so its events stay readable), else on a fresh
    `collaboration_chain(settings.chain)`."""
    prepared = prepare_arms(settings, cache_dir)
    results = run_local_arms(settings, prepared=prepared)
    log("base, alone and pooled arms done")
    started = time.perf_counter()
    base_dir, hospitals, test = prepared.base_dir, prepared.hospitals, prepared.test
    adapted = prepared.adapted
    validation = [
        to_cases(
            f"validation-{i}",
            balanced_test_set(
                settings.validation_per_class, settings.seed + 500 + i, settings.image_size
            ),
        )
        for i in range(len(hospitals))
    ]
    hospital_data = [
        HospitalData(h.name, h.samples, v.samples, h.balanced_weights)
        for h, v in zip(hospitals, validation, strict=True)
    ]
    train = settings.train_config(settings.steps_per_round, seed=settings.seed)
    plan = collaborative_plan(
        base_dir,
        replace(adapted.spec, server_momentum=settings.server_momentum),
        hospital_data,
        train,
        settings.rounds,
        workdir,
        harm_tolerance=settings.harm_tolerance,
        diagnosis_scored=settings.utility == "accuracy",
    )
    with _given_or_fresh(chain, settings.chain, workdir) as used:
        collaboration = run_collaborative(
            plan, hospital_data, test.samples, SHORT_ANSWERS, used, log
        )
        task_id = collaboration.task.task_id
        final = collaboration.agents[0].fetch_global(collaboration.owner.status(task_id))
        results.pool = _add_rewards(results.hospitals, collaboration)
    results.collaborative = evaluate_arm(adapted, test, final, "collaborative")
    results.by_round = [
        (r, accuracy) for r, (_, accuracy) in sorted(collaboration.test_metrics.items())
    ]
    results.federation = collaboration
    results.wall_times["collaborative"] = time.perf_counter() - started
    return write_report(results, out_dir), results


@contextmanager
def collaboration_chain(kind: str, workdir: Path) -> Iterator[Chain]:
    """The chain the collaborative arm runs on: a fresh local anvil (stopped afterwards, its
    state in `workdir`, saved only at exit: nobody restarts it) or the in-process embedded
    chain (py-evm, ~10x slower per transaction, but readable after the run)."""
    if kind == "embedded":
        yield connect("embedded")
        return
    state = workdir / "anvil-state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.unlink(missing_ok=True)
    with AnvilNode(port=free_port(), state_file=state, state_interval=86_400) as node:
        yield connect("anvil", url=node.url)


@contextmanager
def _given_or_fresh(chain: Chain | None, kind: str, workdir: Path) -> Iterator[Chain]:
    if chain is not None:
        yield chain
        return
    with collaboration_chain(kind, workdir) as fresh:
        yield fresh


def run_case_studies(
    settings: CaseStudySettings,
    seeds: Sequence[int],
    out_dir: Path,
    workdir: Path,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    chain: Chain | None = None,
) -> tuple[Path, list[CaseStudyResults]]:
    """`run_case_study` once per seed (its report in `out_dir/seed-N/`), `jobs` seeds at a time
    in worker processes of one thread each, then the summary over all seeds
    (`out_dir/case-study.md`); returns its path and every seed's results. A given `chain`
    serves every seed, in this process (it does not cross into workers)."""
    prepare_base(settings, cache_dir)  # once, before workers would race to build the cache
    if jobs <= 1 or len(seeds) <= 1 or chain is not None:
        runs = [_one_seed(settings, s, out_dir, workdir, cache_dir, log, chain) for s in seeds]
    else:
        spawn = multiprocessing.get_context("spawn")  # no forked torch or chain state
        with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
            futures = [
                pool.submit(_seed_in_worker, settings, s, out_dir, workdir, cache_dir)
                for s in seeds
            ]
            runs = [future.result() for future in futures]
    return write_summary(runs, out_dir), runs


def _one_seed(
    settings: CaseStudySettings,
    seed: int,
    out_dir: Path,
    workdir: Path,
    cache_dir: Path | None,
    log: Callable[[str], None],
    chain: Chain | None = None,
) -> CaseStudyResults:
    log(f"seed {seed}")
    seeded = replace(settings, seed=seed)
    where = f"seed-{seed}"
    return run_case_study(seeded, out_dir / where, workdir / where, cache_dir, log, chain)[1]


def _seed_in_worker(
    settings: CaseStudySettings, seed: int, out_dir: Path, workdir: Path, cache_dir: Path | None
) -> CaseStudyResults:
    torch.set_num_threads(1)

    def log(line: str) -> None:
        print(f"[seed {seed}] {line}", flush=True)

    results = _one_seed(settings, seed, out_dir, workdir, cache_dir, log)
    results.federation = None  # a chain client does not cross processes
    return results


def _add_rewards(rows: list[HospitalRow], collaboration: FederationResult) -> Pool:
    """Each hospital's median Shapley score by round (None: its update was left out, or the
    round found no consensus) and on-chain reward, from events; returns what the pool held,
    what the contract paid and which rounds found no consensus."""
    history = load_history(
        collaboration.owner, collaboration.task.task_id, collaboration.deployment_block
    )
    records = {record.address: record for record in history.edges}
    for row, agent in zip(rows, collaboration.agents, strict=True):
        record = records[agent.address]
        row.shapley_by_round = [record.scores.get(r.round) for r in history.rounds]
        row.reward_wei = record.earned
    return Pool(
        funded_wei=history.funded,
        paid_wei=sum(r.paid for r in history.rounds),
        rejected_rounds=[r.round for r in history.rounds if not r.accepted],
    )
