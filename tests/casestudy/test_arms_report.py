"""The chain-free arms (settings, data, evaluation, ROUGE-L) and the markdown/PNG report."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetune.casestudy.arms import (
    SHORT_ANSWERS,
    alone_arms,
    evaluate_arm,
    hospital_samples,
    load_adapted,
    prepare_base,
    scenario_hospitals,
)
from edgetune.casestudy.dialogues import rouge_l
from edgetune.casestudy.hospitals import lacked_findings
from edgetune.casestudy.report import FIGURES, REPORT_NAME, write_report
from edgetune.casestudy.results import (
    ETHER,
    ArmResult,
    CaseStudyResults,
    DisplayCase,
    HospitalRow,
    Pool,
)
from edgetune.casestudy.settings import CaseStudySettings, CaseStudySettingsError
from edgetune.casestudy.xray import FINDINGS
from edgetune.learning import initial_global_adapter

TINY = dataclasses.replace(
    CaseStudySettings.quick_run(),
    hospitals=2,
    hospital_sizes=(12, 8),
    noisy_hospital=1,
    noise_rate=1.0,
    test_per_class=2,
    rounds=1,
    steps_per_round=2,
    alone_rounds=1,
    alone_round_steps=2,
    batch_size=4,
    pretrain_pairs=8,
    pretrain_steps=2,
    pretrain_tune_steps=2,  # the default 1200 end-to-end steps were 100 s of the suite
)


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ("Diagnosis: pneumonia.", "diagnosis pneumonia", 1.0),
        ("the cat sat on the mat", "the cat was on the mat", 5 / 6),
        # LCS "a c" (2): precision 2/3, recall 2/4 -> F1 4/7
        ("a b c", "a x c y", 4 / 7),
        ("normal chest", "pleural effusion", 0.0),
        ("", "anything", 0.0),
    ],
)
def test_rouge_l_known_values(candidate: str, reference: str, expected: float) -> None:
    assert rouge_l(candidate, reference) == pytest.approx(expected)


def test_rouge_l_is_order_sensitive() -> None:
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "change",
    [
        {"hospital_sizes": (10, 10)},
        {"alpha": 0.0},
        {"noisy_hospital": 5},
        {"scenario": "iid"},
        {"server_momentum": 1.0},
        {"alone_rounds": 0},
        {"noise_rate": 1.5},
        {"rounds": 0},
        {"lr": 0.0},
        {"image_size": 60},
    ],
)
def test_settings_reject_out_of_range(change: dict) -> None:
    with pytest.raises(CaseStudySettingsError, match="violate"):
        dataclasses.replace(CaseStudySettings.quick_run(), **change)


@pytest.mark.parametrize("scenario", ["headroom", "dominant"])
def test_quick_and_full_runs_are_valid_and_distinct(scenario) -> None:
    quick, full = CaseStudySettings.quick_run(scenario), CaseStudySettings.full_run(scenario)
    assert quick.quick and not full.quick
    assert quick.scenario == full.scenario == scenario
    assert full.rounds * full.steps_per_round > quick.rounds * quick.steps_per_round
    assert full.test_per_class > quick.test_per_class


def test_hospital_samples_teach_the_labelled_finding_and_keep_the_true_one() -> None:
    hospitals, test = hospital_samples(TINY)
    assert [len(h.samples) for h in hospitals] == [12, 8]
    noisy = hospitals[1]
    assert noisy.noise_rate == 1.0
    for sample, dialogue in zip(noisy.samples, noisy.dialogues, strict=True):
        assert sample.answer in SHORT_ANSWERS.values()
        assert sample.answer != SHORT_ANSWERS[sample.label]  # every label flipped
        assert dialogue.startswith(sample.answer)  # the short answer is the dialogue's opening
    assert sorted({s.label for s in test.samples}) == sorted(FINDINGS)


@pytest.fixture(scope="module")
def tiny_run() -> tuple:
    base_dir = prepare_base(TINY)
    hospitals, test = hospital_samples(TINY)
    return load_adapted(base_dir, TINY), hospitals, test


def test_evaluate_arm_scores_every_finding(tiny_run: tuple) -> None:
    adapted, _, test = tiny_run
    result = evaluate_arm(adapted, test, initial_global_adapter(adapted), "base")
    assert set(result.per_finding) == set(FINDINGS)
    assert all(0.0 <= v <= 1.0 for v in result.per_finding.values())
    assert result.accuracy == pytest.approx(np.mean(list(result.per_finding.values())))
    assert 0.0 <= result.rouge_l <= 1.0 and 0.0 <= result.rouge_l_dialogue <= 1.0
    assert result.loss > 0
    assert set(result.dialogues) == set(FINDINGS)


def test_alone_arms_train_each_hospital_from_the_same_start(tiny_run: tuple) -> None:
    adapted, hospitals, test = tiny_run
    initial = initial_global_adapter(adapted)
    results = alone_arms(adapted, hospitals, test, TINY)
    assert [r.name for r in results] == ["alone: hospital-0", "alone: hospital-1"]
    b_keys = [k for k in initial if ".lora_B." in k]
    for result in results:
        assert any(not torch.equal(result.adapter[k], initial[k]) for k in b_keys)
        a_keys = [k for k in initial if ".lora_A." in k]
        assert all(torch.equal(result.adapter[k], initial[k]) for k in a_keys)


def _arm(name: str, accuracy: float) -> ArmResult:
    return ArmResult(
        name=name,
        accuracy=accuracy,
        per_finding={f: accuracy for f in FINDINGS},
        generated_accuracy=accuracy,
        loss=1.0 - accuracy,
        rouge_l=accuracy,
        rouge_l_dialogue=accuracy / 2,
        complete_answers=accuracy / 4,
        dialogues={f: f"Diagnosis: {f} | {name}." for f in FINDINGS},
    )


def _synthetic_results() -> CaseStudyResults:
    hospitals = [
        HospitalRow(
            name=f"hospital-{i}",
            size=10,
            class_counts={f: 2 for f in FINDINGS},
            noise_rate=0.6 if i == 2 else 0.0,
            shapley_by_round=[0.1 * (3 - i), 0.05 if i < 2 else None],
            reward_wei=(3 - i) * ETHER // 100,
        )
        for i in range(3)
    ]
    rng = np.random.default_rng(0)
    return CaseStudyResults(
        settings=CaseStudySettings.quick_run(),
        base_model="models/vlm-pre-x",
        base=_arm("base", 0.2),
        alone=[_arm(f"alone: hospital-{i}", 0.3 + 0.1 * i) for i in range(3)],
        pooled=_arm("pooled", 0.8),
        collaborative=_arm("collaborative", 0.7),
        by_round=[(1, 0.4), (2, 0.6), (3, 0.7)],
        hospitals=hospitals,
        pool=Pool(funded_wei=3 * ETHER, paid_wei=6 * ETHER // 100, rejected_rounds=[]),
        wall_times={"base": 1.0, "alone": 2.0, "collaborative": 3.0},
        display=[
            DisplayCase(f, rng.uniform(size=(16, 16)), "What is it?", f"Diagnosis: {f}.")
            for f in FINDINGS
        ],
    )


def test_write_report_has_every_table_dialogue_and_figure(tmp_path: Path) -> None:
    path = write_report(_synthetic_results(), tmp_path)
    text = path.read_text()
    assert path.name == REPORT_NAME
    for heading in (
        "## Accuracy per arm",
        "## Accuracy per finding",
        "## Collaborative accuracy by round",
        "## Hospitals: data, contribution and reward",
        "## Diagnostic dialogues, side by side",
        "## Wall times",
        "## How to reproduce",
    ):
        assert heading in text
    assert "| collaborative | 0.700 |" in text
    assert text.count("| complete answers |") == 1
    assert "| 0.700 | 0.350 | 18% |" in text  # collaborative: ROUGE-L (dialogue), complete
    assert "| 3 | 0.700 |" in text  # by-round row
    assert "0.030000" in text  # hospital-0's reward
    assert "yes (60%)" in text
    assert "| 0.100, out | 0.100 |" in text  # hospital-2 left out of round 2
    assert "the contract paid 0.060000 ETH" in text
    assert "collaboration beats every hospital alone" in text
    assert "The noisy-label hospital-2 earns the least: 0.010000 ETH" in text
    assert "Diagnosis: pneumonia \\| pooled." in text  # dialogue cell, pipe escaped
    assert "| **total** | 6.0 |" in text
    assert "edgetune case-study --quick" in text
    for name in FIGURES.values():
        assert (tmp_path / name).stat().st_size > 1000
        assert f"]({name})" in text


def test_write_report_without_collaborative_run_omits_its_parts(tmp_path: Path) -> None:
    results = dataclasses.replace(_synthetic_results(), collaborative=None, by_round=[])
    del results.wall_times["collaborative"]
    for hospital in results.hospitals:
        hospital.reward_wei, hospital.shapley_by_round = None, None
    text = write_report(results, tmp_path).read_text()
    assert "| collaborative |" not in text
    assert "## Collaborative accuracy by round" not in text
    assert "## Verdict" not in text
    assert not (tmp_path / FIGURES["rounds"]).exists()
    assert not (tmp_path / FIGURES["rewards"]).exists()
    assert (tmp_path / FIGURES["arms"]).exists()


def test_verdict_says_so_when_collaboration_loses_or_the_noisy_hospital_earns_more(
    tmp_path: Path,
) -> None:
    results = _synthetic_results()
    results.collaborative = _arm("collaborative", 0.5)  # hospital-2 alone has 0.5 too
    results.hospitals[2].reward_wei = ETHER // 2
    text = write_report(results, tmp_path).read_text()
    assert "(hospital-2) 0.500: the collaboration does not beat every hospital" in text
    assert "All data pooled centrally (the upper bound) reaches 0.800." in text
    results.pooled = _arm("pooled", 0.45)
    text = write_report(results, tmp_path).read_text()
    assert "reaches 0.450, no better than hospital-2 alone" in text
    assert "The noisy-label hospital-2 does not earn the least: 0.500000 ETH" in text


def test_a_round_without_consensus_is_named_so_not_left_out(tmp_path: Path) -> None:
    results = _synthetic_results()
    results.pool = dataclasses.replace(results.pool, rejected_rounds=[2])
    for hospital in results.hospitals:
        hospital.shapley_by_round[1] = None  # no ContributionScored in a rejected round
    text = write_report(results, tmp_path).read_text()
    assert "| 0.100, no consensus | 0.100 |" in text  # hospital-2: round 2 had no consensus
    assert "| 0.300, no consensus | 0.300 |" in text


def test_the_headroom_scenario_skews_every_hospital_and_the_dominant_one_does_not_search() -> None:
    settings = dataclasses.replace(CaseStudySettings.quick_run(), seed=1)
    seed, hospitals = scenario_hospitals(settings)
    assert 100 <= seed < 200  # searched from seed * 100 on, by case mix alone
    assert [len(h.samples) for h in hospitals] == list(settings.hospital_sizes)
    assert all(lacked_findings(h) for h in hospitals)
    dominant = CaseStudySettings.quick_run("dominant")
    seed, hospitals = scenario_hospitals(dominant)
    assert seed == dominant.seed and [len(h.samples) for h in hospitals] == [160, 100, 100]
    assert not all(lacked_findings(h) for h in hospitals)  # hospital 0 has the broad mix


def test_set_overrides_parse_each_field_by_its_type() -> None:
    settings = CaseStudySettings.quick_run().overridden(
        ["hospitals=2", "hospital_sizes=10,8", "noisy_hospital=none", "leave_one_out=false"]
    )
    assert (settings.hospitals, settings.hospital_sizes) == (2, (10, 8))
    assert settings.noisy_hospital is None and settings.leave_one_out is False


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("colour=red", "NAME=VALUE"),
        ("seed=3", "NAME=VALUE"),
        ("rounds=many", "rounds=many"),
        ("leave_one_out=yes", "true or false"),
        ("rounds=0", "violate"),
    ],
)
def test_a_bad_override_is_refused_by_name(assignment: str, named: str) -> None:
    with pytest.raises(CaseStudySettingsError, match=named):
        CaseStudySettings.quick_run().overridden([assignment])
