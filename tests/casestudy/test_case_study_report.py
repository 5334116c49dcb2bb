"""`run_case_study` end to end at toy scale: four arms, the on-chain collaborative round, and a
report whose reward table holds what the chain paid."""

from pathlib import Path

import pytest

from edgetune.casestudy.collaborative import run_case_study
from edgetune.casestudy.report import FIGURES
from edgetune.casestudy.results import ETHER, CaseStudyResults
from edgetune.casestudy.settings import CaseStudySettings

TOY = CaseStudySettings(
    quick=True,
    hospitals=2,
    hospital_sizes=(12, 10),
    noisy_hospital=1,
    noise_rate=0.5,
    test_per_class=1,
    rounds=1,
    steps_per_round=2,
    batch_size=4,
    pretrain_pairs=16,
    pretrain_steps=2,
    pretrain_tune_steps=2,  # the default 1200 end-to-end steps were 100 s of the suite
    utility="loss",
)


@pytest.fixture(scope="module")
def case_study(tmp_path_factory) -> tuple[Path, CaseStudyResults]:
    root = Path(tmp_path_factory.mktemp("case-study"))
    return run_case_study(TOY, root / "docs", root / "work", root / "models", log=lambda _: None)


def test_report_has_all_four_arms_and_the_on_chain_rewards(case_study):
    report, results = case_study
    text = report.read_text()
    for arm in ("base", "pooled", "collaborative", *(h.name for h in results.hospitals)):
        assert arm in text
    rewards = [h.reward_wei for h in results.hospitals]
    assert all(f"{reward / ETHER:.6f}" in text for reward in rewards)
    # Per-hospital credits (RewardCredited) add up to what the round paid (RoundFinalized).
    assert 0 < sum(rewards) == results.pool.paid_wei
    assert results.pool.paid_wei <= results.pool.funded_wei == 3 * ETHER
    assert f"paid {results.pool.paid_wei / ETHER:.6f} ETH" in text
    assert [r for r, _ in results.by_round] == [0, 1]
    figures = {f.name: f for f in report.parent.glob("*.png")}
    assert set(figures) == set(FIGURES.values())  # every figure, per-finding heat map included
    assert all(f.stat().st_size > 0 for f in figures.values())
