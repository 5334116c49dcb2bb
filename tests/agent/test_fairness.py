"""Who earns what, end to end on real LoRA edges (the shared six-edge federation of
conftest.py: honest edge 0, its twin 1 holding the same training data, honest edge 2, a lazy
validator 3, a copier 4 of edge 0 and a free rider 5), and what colluders below half the stake
can do to it (real scores from that federation's first round, colluders' ballots scripted
through the real contract)."""

import hashlib
from dataclasses import replace

import pytest

from edgetune.chain.connect import connect
from edgetune.chain.deploy import deploy
from edgetune.chain.types import Attestation, Phase, ScoreBallot
from edgetune.learning import adapter_from_bytes, adapter_to_bytes, aggregate
from edgetune.storage import content_cid, fetch_verified

from ..contracts.rounds import TaskHarness, finalized, one_run_gas_estimates, tallied
from .conftest import COPIER, FREE_RIDER, HONEST, LAZY, OTHER, TWIN
from .federations import (
    ETHER,
    expected_tally,
    rewards_of,
    total_rewards,
)

pytestmark = pytest.mark.anvil  # the shared federation runs on a local anvil

INT32_MAX = 2**31 - 1
INT32_MIN_SYMMETRIC = -(2**31) + 1


def wei_by_edge(result, rewards: dict[str, int]) -> list[int]:
    return [rewards.get(agent.address, 0) for agent in result.agents]


def test_two_edges_with_identical_data_are_paid_within_two_percent(
    mixed_federation, mixed_chronicle
):
    result, rounds = mixed_federation, mixed_chronicle.rounds
    a, b = result.agents[HONEST].address, result.agents[TWIN].address
    per_round = [
        (rewards_of(r).get((a, 0), 0) / ETHER, rewards_of(r).get((b, 0), 0) / ETHER) for r in rounds
    ]
    trainer = total_rewards(rounds, 0)
    gap = abs(trainer[a] - trainer[b]) / max(trainer[a], trainer[b])
    figures = (
        f"twins paid {trainer[a] / ETHER:.6f} and {trainer[b] / ETHER:.6f} ETH as trainers: "
        f"gap {gap:.2%}; per round (edge 0, twin): {per_round}"
    )
    print(figures)  # shown with pytest -rP
    assert trainer[a] > 0 and trainer[b] > 0
    assert gap <= 0.02, figures


def test_a_free_rider_earns_exactly_zero_as_a_trainer(mixed_federation, mixed_chronicle):
    result, rounds = mixed_federation, mixed_chronicle.rounds
    free_rider = result.agents[FREE_RIDER].address
    for record in rounds:
        index = record.authors.index(free_rider)
        # An exact null player: every validator scores the zero update exactly 0.
        assert {b.scores[index] for b in record.ballots} == {0}
        assert record.tallied.medians[index] == 0 and record.tallied.includedMask >> index & 1
    trainer = total_rewards(rounds, 0)
    print(f"trainer rewards by edge (wei): {wei_by_edge(result, trainer)}")  # pytest -rP
    assert trainer.get(free_rider, 0) == 0, f"trainer rewards: {wei_by_edge(result, trainer)}"
    assert all(trainer[result.agents[i].address] > 0 for i in (HONEST, TWIN, OTHER, LAZY))


def test_a_copier_earns_nothing_as_a_trainer_and_its_source_is_still_paid(
    mixed_federation, mixed_chronicle
):
    result = mixed_federation
    copier, source = result.agents[COPIER].address, result.agents[HONEST].address
    for record in mixed_chronicle.rounds:
        index = record.authors.index(copier)
        assert record.authors.index(source) < index  # it revealed after its source
        assert record.tallied.copyMask == 1 << index  # flagged by the stake majority
        assert not record.tallied.includedMask >> index & 1
        credited = rewards_of(record)
        assert (copier, 0) not in credited
        assert credited[(source, 0)] > 0, f"round {record.round}: source unpaid: {credited}"


def test_a_lazy_validator_earns_at_most_a_tenth_of_an_honest_one(mixed_federation, mixed_chronicle):
    result, rounds = mixed_federation, mixed_chronicle.rounds
    validator = total_rewards(rounds, 1)
    honest = [validator.get(result.agents[i].address, 0) for i in (HONEST, TWIN, OTHER)]
    mean_honest = sum(honest) / len(honest)
    lazy = validator.get(result.agents[LAZY].address, 0)
    assert mean_honest > 0
    figures = (
        f"lazy validator paid {lazy / ETHER:.6f} ETH, honest mean {mean_honest / ETHER:.6f} "
        f"({lazy / mean_honest:.1%}); validator rewards by edge: {wei_by_edge(result, validator)}"
    )
    print(figures)  # shown with pytest -rP
    assert lazy <= 0.1 * mean_honest, figures
    # It is still paid for its (honest) training: the two roles are paid apart.
    assert total_rewards(rounds, 0)[result.agents[LAZY].address] > 0


# ---------------------------------------------------------------------- colluders


# Round 1 of the shared federation: whose real update plays scenario position k (honest edges
# first, colluders after), and whose real ballot plays the k-th honest scorer. All five really
# evaluated (the copier and the free rider cheat as trainers only); the lazy edge 3 did not.
UPDATE_EDGES = [HONEST, TWIN, OTHER, LAZY, COPIER, FREE_RIDER]
SCORER_EDGES = [HONEST, TWIN, OTHER, COPIER, FREE_RIDER]


@pytest.fixture(scope="module")
def real_round(mixed_federation, mixed_chronicle):
    """Round 1's real updates (reveal event, tensors) and real ballots, by author edge."""
    result = mixed_federation
    record = mixed_chronicle.rounds[0]
    by_address = {agent.address: i for i, agent in enumerate(result.agents)}
    trained = result.agents[0].learner.shapes(trained_only=True)
    updates = {
        by_address[u.edge]: (
            u,
            adapter_from_bytes(fetch_verified(result.store, u.cid, u.updateHash), trained),
        )
        for u in record.reveals
    }
    ballots = {by_address[b.scorer]: b for b in record.ballots}
    config = result.task.config
    previous = adapter_from_bytes(
        fetch_verified(result.store, config.initial_global_cid, config.initial_global_hash),
        result.agents[0].learner.shapes(),
    )
    return updates, ballots, previous, config.harm_tolerance


@pytest.fixture(scope="module")
def harness():
    chain = connect("embedded")
    one_run_gas_estimates(chain)
    owner, _ = deploy(chain, chain.accounts[0])
    return TaskHarness(chain, owner)


def restricted(ballot: ScoreBallot, positions: list[int]) -> ScoreBallot:
    """A real ballot over the scenario's updates only (`positions`: their real reveal indices)."""

    def bits(mask: int) -> int:
        return sum(1 << k for k, j in enumerate(positions) if mask >> j & 1)

    scores = tuple(ballot.scores[j] for j in positions)
    return ScoreBallot(bits(ballot.valid_mask), bits(ballot.copy_mask), scores)


def candidate(previous, updates) -> Attestation:
    data = adapter_to_bytes(aggregate(previous, updates))
    return Attestation(hashlib.sha256(data).digest(), content_cid(data), True)


EXTREMES = {"zero": 0, "int32 min": INT32_MIN_SYMMETRIC, "int32 max": INT32_MAX}


@pytest.mark.parametrize("edges", [3, 4, 5, 6])
def test_colluders_below_half_the_stake_cannot_move_medians_zero_edges_or_swap_the_aggregate(
    real_round, harness, edges
):
    """floor((N-1)/2) colluders mark every honest update invalid and score it 0, -2^31+1 or
    2^31-1 (each in turn), and score their own 2^31-1; then they back an aggregate of only their
    own updates. The honest ballots are real: round 1 of the shared federation, restricted to
    the scenario's updates (Shapley values of that six-update round, on each scorer's data)."""
    updates, real_ballots, previous, tau = real_round
    colluding = (edges - 1) // 2
    honest = edges - colluding
    clients = harness.edges(edges)
    task_id = harness.started_task(clients, stake=ETHER, rounds=1, harm_tolerance=tau)
    scenario = UPDATE_EDGES[:edges]
    positions = [updates[e][0].index for e in scenario]
    harness.stage(
        task_id,
        1,
        Phase.UPDATE_COMMIT,
        {
            c: (updates[e][0].updateHash, updates[e][0].cid)
            for c, e in zip(clients, scenario, strict=True)
        },
    )
    honest_ballots = [restricted(real_ballots[e], positions) for e in SCORER_EDGES[:honest]]
    # What the honest validators alone would have decided.
    labelled = [replace(b, scorer=f"honest-{k}") for k, b in enumerate(honest_ballots)]
    honest_only = expected_tally(labelled, {b.scorer: 1 for b in labelled}, edges, tau)
    included = [k for k in range(edges) if honest_only.included >> k & 1]
    right = candidate(previous, [updates[scenario[k]][1] for k in included])
    wrong = candidate(previous, [updates[scenario[k]][1] for k in range(honest, edges)])
    ranges = [
        (min(b.scores[k] for b in honest_ballots), max(b.scores[k] for b in honest_ballots))
        for k in range(edges)
    ]
    for name, extreme in EXTREMES.items():
        with harness.what_if():
            own = sum(1 << k for k in range(honest, edges))
            scores = tuple(INT32_MAX if k >= honest else extreme for k in range(edges))
            ballots = honest_ballots + [ScoreBallot(own, 0, scores)] * colluding
            harness.scores(task_id, 1, dict(zip(clients, ballots, strict=True)))
            outcome = tallied(harness.owner, harness.tally(task_id, 1))
            figures = [
                (low, m, high) for (low, high), m in zip(ranges, outcome.medians, strict=True)
            ]
            where = f"N={edges}, colluders score honest updates {name}: (min, median, max)"
            print(where, figures)  # shown with pytest -rP
            assert all(low <= m <= high for low, m, high in figures), f"{where} {figures}"
            assert outcome.validMask == (1 << edges) - 1, where  # "invalid" marks outvoted
            assert outcome.includedMask == honest_only.included, where

            votes = {c: right if k < honest else wrong for k, c in enumerate(clients)}
            harness.attest(task_id, 1, votes)
            receipt = harness.owner.finalize(task_id)
            event = finalized(harness.owner, receipt)
            assert event.accepted, where
            assert (event.globalHash, event.globalCid) == (
                right.aggregate_hash,
                right.aggregate_cid,
            ), where
            credits = harness.owner.receipt_events(receipt, "RewardCredited")
            trainer = {e.edge: e.amount for e in credits if e.kind == 0}
            paid = [trainer.get(c.sender_address, 0) / ETHER for c in clients[:honest]]
            print(f"{where}: honest trainer rewards {paid} ETH")
            assert all(p > 0 for p in paid), f"{where}: honest trainer rewards {paid} ETH"
            slashed = {e.edge for e in harness.owner.receipt_events(receipt, "Slashed")}
            assert not slashed & {c.sender_address for c in clients[:honest]}, where
