"""`run_case_study` end to end at toy scale: four arms, the on-chain collaborative round, and a
report whose reward table holds what the chain paid."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetune.casestudy.collaborative import run_case_studies
from edgetune.casestudy.report import FIGURES
from edgetune.casestudy.results import ETHER, CaseStudyResults
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.summary import SUMMARY_FIGURES

from ..agent.federations import Chronicle, expected_rewards, expected_tally
from ..anvil import local_anvil

pytestmark = pytest.mark.anvil

TOY = CaseStudySettings(
    quick=True,
    hospitals=2,
    hospital_sizes=(12, 10),
    noisy_hospital=1,
    noise_rate=0.5,
    test_per_class=1,
    rounds=2,
    steps_per_round=2,
    alone_rounds=1,
    alone_round_steps=2,
    batch_size=4,
    pretrain_pairs=16,
    pretrain_steps=2,
    pretrain_tune_steps=2,  # the default 1200 end-to-end steps were 100 s of the suite
    utility="loss",
)


@pytest.fixture(scope="module")
def case_studies(tmp_path_factory) -> Iterator[tuple[Path, list[CaseStudyResults]]]:
    root = Path(tmp_path_factory.mktemp("case-study"))
    # A node kept up past the run, so the tests can read its events (on the embedded chain
    # the round's py-evm transactions were 20 of the fixture's 35 s).
    with local_anvil(root) as chain:
        yield run_case_studies(
            TOY,
            [3],
            root / "docs",
            root / "work",
            root / "models",
            log=lambda _: None,
            chain=chain,
        )


@pytest.fixture(scope="module")
def case_study(case_studies) -> tuple[Path, CaseStudyResults]:
    summary, (results,) = case_studies
    return summary.parent / "seed-3" / summary.name, results


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
    assert [r for r, _ in results.by_round] == [0, 1, 2]
    figures = {f.name: f for f in report.parent.glob("*.png")}
    assert set(figures) == set(FIGURES.values())  # every figure, per-finding heat map included
    assert all(f.stat().st_size > 0 for f in figures.values())


def test_every_reward_in_the_report_is_recomputed_from_the_chain_events(case_study):
    _, results = case_study
    federation = results.federation
    config = federation.task.config
    chronicle = Chronicle(federation)
    stakes = chronicle.stakes_by_round()
    earned: dict[str, int] = {}
    for record in chronicle.rounds:
        assert record.finalized.accepted, f"round {record.round} found no consensus"
        tally = expected_tally(
            record.ballots, stakes[record.round], len(record.reveals), config.harm_tolerance
        )
        for (edge, _kind), wei in expected_rewards(
            record, tally, config.validator_share_bps
        ).items():
            earned[edge] = earned.get(edge, 0) + wei
    by_address = [earned.get(agent.address, 0) for agent in federation.agents]
    assert by_address == [h.reward_wei for h in results.hospitals]
    assert sum(by_address) == results.pool.paid_wei > 0


def test_the_summary_judges_each_seed_from_its_own_results(case_studies):
    summary, (results,) = case_studies
    text = summary.read_text()
    best = max(a.accuracy for a in results.alone)
    margin = results.collaborative.accuracy - best
    assert f"| 3 | {best:.3f} | {results.pooled.accuracy:.3f} |" in text
    assert f"{margin:+.3f}" in text
    assert all(h.loo_value is not None for h in results.hospitals)
    for h in results.hospitals:
        assert f"| 3 | {h.name} | {h.size} |" in text
        assert f"{h.reward_wei / ETHER:.6f}" in text
    pngs = {p.name for p in summary.parent.glob("*.png")}
    assert pngs == set(SUMMARY_FIGURES.values())
    assert "[seed-3/case-study.md](seed-3/case-study.md)" in text
