"""The case study's collaborative arm runs a vision-language task through the same plan,
executor, contract, store and agents as text tasks: hospitals train LoRA on X-ray dialogues and
are paid on chain."""

from dataclasses import replace
from hashlib import sha256
from pathlib import Path

import pytest

from edgetune.casestudy.arms import SHORT_ANSWERS, to_cases
from edgetune.casestudy.collaborative import HospitalData, collaborative_plan, run_collaborative
from edgetune.casestudy.hospitals import balanced_test_set, make_hospitals
from edgetune.chain.connect import Chain
from edgetune.chain.history import load_history
from edgetune.learning import TrainConfig
from edgetune.learning.vision.encode import VisionSample
from edgetune.learning.vision.evaluate import evaluate_vlm
from edgetune.learning.vision.model import (
    ALL_LINEAR,
    LM_HEAD,
    ensure_tiny_vlm,
    load_vlm,
    vlm_adapter_spec,
    vlm_hash,
)

from ..anvil import local_anvil

pytestmark = pytest.mark.anvil


def short(cases) -> list[VisionSample]:
    return to_cases("cases", cases).samples


@pytest.fixture(scope="module")
def collaboration(tmp_path_factory):
    workdir = Path(tmp_path_factory.mktemp("case-study"))
    # anvil, kept up for the module's tests: py-evm took most of the fixture's 12 s
    with local_anvil(workdir) as chain:
        yield _collaborate(workdir, chain)


def _collaborate(workdir: Path, chain: Chain):
    base_dir = ensure_tiny_vlm(cache_dir=workdir / "models")
    spec = vlm_adapter_spec(load_vlm(base_dir).model, modules=(*ALL_LINEAR, LM_HEAD))
    hospitals = [
        HospitalData(h.name, short(h.samples[:16]), short(h.samples[16:21]))
        for h in make_hospitals(2, [24, 24], alpha=1.0, seed=3)
    ]
    test = short(balanced_test_set(2, seed=5))
    plan = collaborative_plan(
        base_dir,
        spec,
        hospitals,
        TrainConfig(steps=4, batch_size=8),
        rounds=1,
        workdir=workdir,
        diagnosis_scored=False,  # 5 audit cases, 4 steps: accuracy does not move, loss does
    )
    federation = run_collaborative(plan, hospitals, test, SHORT_ANSWERS, chain, log=lambda _: None)
    return federation, base_dir


def test_hospitals_complete_a_paid_round_on_the_pinned_vision_model(collaboration):
    result, base_dir = collaboration
    config = result.owner.task_config(result.task.task_id)
    assert config.base_model_hash == vlm_hash(base_dir)  # the VLM, processor files included
    history = load_history(result.owner, result.task.task_id, result.deployment_block)
    assert [r.accepted for r in history.rounds] == [True]
    assert all(len(e.rounds_joined) == 1 and e.earned > 0 for e in history.edges)
    assert set(result.test_metrics) == {0, 1}
    (finalized,) = history.rounds
    aggregate = result.agents[0].store.get(finalized.global_cid)
    assert "0x" + sha256(aggregate).hexdigest() == finalized.global_hash


def test_the_diagnosis_accuracy_utility_matches_evaluate_vlm(collaboration):
    result, _ = collaboration
    learner = result.agents[0].learner
    final = result.agents[0].fetch_global(result.owner.status(result.task.task_id))
    expected = evaluate_vlm(learner.adapted, learner.validation_samples, final, SHORT_ANSWERS)
    # The plan's "loss" utility leaves the learner without candidates: it scores minus loss.
    assert learner.candidates is None
    assert learner.metric(final) == -expected.loss
    # With the diagnoses as candidates it scores what evaluate_vlm calls accuracy.
    scored = replace(learner, candidates=SHORT_ANSWERS)
    assert scored.metric(final) == expected.accuracy
