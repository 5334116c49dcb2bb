"""The collaborative arm of the medical case study: hospitals fine-tune the pinned vision-language
model together through exactly the same contract, content store and agents as any other task
(`VisionLearner` instead of `TextLearner`), on the embedded chain in one process."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgetune.agent.edge import AgentSettings, EdgeAgent
from edgetune.agent.federation import drive
from edgetune.agent.learner import VisionLearner
from edgetune.agent.publish import VISION, publish_task
from edgetune.agent.state import AgentState
from edgetune.casestudy.arms import (
    SHORT_ANSWERS,
    CaseStudySettings,
    evaluate_arm,
    prepare_arms,
    run_local_arms,
    to_cases,
)
from edgetune.casestudy.hospitals import balanced_test_set
from edgetune.casestudy.report import write_report
from edgetune.casestudy.vlm import VisionSample, attach_vlm_adapter, load_vlm
from edgetune.casestudy.vlm_train import evaluate_vlm
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import connect
from edgetune.chain.deploy import deploy
from edgetune.chain.history import load_history
from edgetune.chain.types import SCORE_SCALE, TaskConfig
from edgetune.learning import AdapterSpec, TrainConfig
from edgetune.storage import EmbeddedStore

ETHER = 10**18


@dataclass(frozen=True)
class HospitalData:
    name: str
    train: Sequence[VisionSample]
    validation: Sequence[VisionSample]
    sample_weights: Sequence[float] | None = None  # how often each training sample is drawn


@dataclass
class CollaborativeResult:
    owner: EdgeTuneClient
    task_id: int
    deployment_block: int
    agents: list[EdgeAgent]
    by_round: dict[int, tuple[float, float]]  # round -> (test loss, test accuracy) of G(r)


def run_collaborative(
    base_dir: Path,
    spec: AdapterSpec,
    hospitals: Sequence[HospitalData],
    test: Sequence[VisionSample],
    candidates: dict[str, str],
    train: TrainConfig,
    rounds: int,
    workdir: Path,
    log: Callable[[str], None] = print,
    pool_ether: float = 3.0,
    harm_tolerance: float = 0.1,
    diagnosis_scored: bool = True,
) -> CollaborativeResult:
    """Deploy, publish the VLM task, run one agent per hospital until the last round.
    `diagnosis_scored`: validators value updates by diagnosis accuracy on their audit cases
    (else by answer loss, which moves even at toy scale, where accuracy on 5 cases does not)."""
    chain = connect("embedded")
    owner, deployment = deploy(chain, chain.accounts[0])
    store = EmbeddedStore(workdir / "ipfs")
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
    task = publish_task(owner, store, base_dir, spec, template, int(pool_ether * ETHER), VISION)
    agents = []
    for index, hospital in enumerate(hospitals):
        client = owner.as_sender(chain.accounts[1 + index])
        learner = VisionLearner(
            attach_vlm_adapter(load_vlm(base_dir, task.config.base_model_hash), spec),
            hospital.train,
            hospital.validation,
            replace(train, seed=train.seed + 100 * index),
            hospital.sample_weights,
            diagnosis_scored,
        )
        state_file = workdir / f"{hospital.name}.json"
        state_file.unlink(missing_ok=True)  # an earlier run's: a fresh chain reuses the address
        state = AgentState(state_file, client.address, task.task_id, client.sender_address)
        agent = EdgeAgent(
            client,
            task.task_id,
            store,
            learner,
            state,
            AgentSettings(stake=stake),
            log=lambda line, name=hospital.name: log(f"[{name}] {line}"),
        )
        agents.append(agent)
    evaluator = agents[0].learner.adapted

    def evaluate_global(adapter) -> tuple[float, float]:
        result = evaluate_vlm(evaluator, test, adapter, candidates)
        return result.loss, result.accuracy or 0.0

    by_round = drive(chain, owner, task.task_id, agents, evaluate_global, log)
    return CollaborativeResult(owner, task.task_id, deployment.block, agents, by_round)


def run_case_study(
    settings: CaseStudySettings,
    out_dir: Path,
    workdir: Path,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Path, dict]:
    """All four arms on one balanced test set, then the report (`out_dir/case-study.md`);
    returns the report's path and the results it was written from."""
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
    collaboration = run_collaborative(
        base_dir,
        adapted.spec,
        [
            HospitalData(h.name, h.samples, v.samples, h.balanced_weights)
            for h, v in zip(hospitals, validation, strict=True)
        ],
        test.samples,
        SHORT_ANSWERS,
        TrainConfig(
            steps=settings.steps_per_round,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=settings.seed,
            max_length=settings.max_length,
        ),
        settings.rounds,
        workdir,
        log,
        harm_tolerance=settings.harm_tolerance,
        diagnosis_scored=settings.utility == "accuracy",
    )
    final = collaboration.agents[0].fetch_global(collaboration.owner.status(collaboration.task_id))
    results["collaborative"] = evaluate_arm(adapted, test, final, "collaborative")
    results["by_round"] = [
        (r, accuracy) for r, (_, accuracy) in sorted(collaboration.by_round.items())
    ]
    results["pool"] = _add_rewards(results["hospitals"], collaboration)
    results["wall_times"]["collaborative"] = time.perf_counter() - started
    return write_report(results, out_dir), results


def _add_rewards(rows: list[dict], collaboration: CollaborativeResult) -> dict:
    """Each hospital's median Shapley score by round (None: its update was left out, or the
    round found no consensus) and on-chain reward, from events; returns what the pool held,
    what the contract paid and which rounds found no consensus."""
    history = load_history(
        collaboration.owner, collaboration.task_id, collaboration.deployment_block
    )
    records = {record.address: record for record in history.edges}
    for row, agent in zip(rows, collaboration.agents, strict=True):
        record = records[agent.address]
        row["shapley_by_round"] = [record.scores.get(r.round) for r in history.rounds]
        row["reward_eth"] = record.earned / ETHER
    return {
        "funded_eth": history.pool / ETHER,
        "paid_eth": sum(r.paid for r in history.rounds) / ETHER,
        "rejected_rounds": [r.round for r in history.rounds if not r.accepted],
    }
