"""One full EdgeTune round on a real anvil node (not the embedded chain): the RPC path, anvil's
mining and the contract must agree with an independent recomputation of the median reward rule."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetune.chain.connect import Chain, connect
from edgetune.chain.deploy import deploy
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.types import BPS, Ballot, Phase, RewardKind

from ..ports import free_port
from .rounds import ETHER, TaskHarness, h

pytestmark = pytest.mark.anvil

STAKES = [ETHER, 2 * ETHER, 3 * ETHER]
# SCORES[v][i]: voter v's score (millionths) of the i-th revealed update; own scores are ignored.
SCORES = [
    [900_000, 400_000, 50_000],
    [300_000, -5, -20_000],
    [200_000, 100_000, -70_000],
]


@pytest.fixture
def anvil_chain(tmp_path: Path) -> Iterator[Chain]:
    with AnvilNode(port=free_port(), state_file=tmp_path / "anvil-state.json") as node:
        yield connect("anvil", url=node.url)


def lower_weighted_median(pairs: list[tuple[int, int]]) -> int:
    """Smallest score whose cumulative weight reaches half of the total weight."""
    pairs = sorted(pairs)
    total = sum(weight for _, weight in pairs)
    cumulative = 0
    for score, weight in pairs:
        cumulative += weight
        if 2 * cumulative >= total:
            return score
    return 0


def expected_credits(budget: int, validator_share_bps: int) -> tuple[list[int], list[int], int]:
    """(median scores, trainer credits, validator share) when everyone reveals and agrees."""
    medians = [
        lower_weighted_median([(SCORES[v][i], STAKES[v]) for v in range(3) if v != i])
        for i in range(3)
    ]
    contributions = [max(m, 0) for m in medians]
    trainer_pool = budget * (BPS - validator_share_bps) // BPS
    trainer = [trainer_pool * c // sum(contributions) for c in contributions]
    return medians, trainer, (budget - trainer_pool) // 3


def test_full_round_on_anvil_pays_the_median_rule_and_conserves_funds(anvil_chain: Chain) -> None:
    owner, _ = deploy(anvil_chain, anvil_chain.accounts[0])
    harness = TaskHarness(anvil_chain, owner)
    edges = harness.edges(3)
    pool = 5 * ETHER + 8  # leaves 1 wei of rounding dust for the owner's refund
    task_id = harness.create(pool, rounds=1)
    for edge, stake in zip(edges, STAKES, strict=True):
        edge.register(task_id, stake)
    owner.start(task_id)

    harness.run_updates(task_id, 1, edges)
    assert [u.edge for u in owner.revealed_updates(task_id, 1)] == [e.sender_address for e in edges]
    ballots = {
        e.sender_address: Ballot(0b111, 0b111, h("agg-1"), "bafyagg1", True, tuple(SCORES[v]))
        for v, e in enumerate(edges)
    }
    harness.vote_all(task_id, 1, ballots, edges)
    assert owner.phase(task_id) == Phase.FINALIZABLE
    receipt = owner.finalize(task_id)

    medians, trainer, validator = expected_credits(pool, 2000)
    assert medians == [200_000, 100_000, -20_000]  # lower median, weighted 1:2:3 ether
    scored = {e.edge: e.medianScore for e in owner.receipt_events(receipt, "ContributionScored")}
    assert scored == {e.sender_address: m for e, m in zip(edges, medians, strict=True)}
    credits = {
        (e.edge, RewardKind(e.kind)): e.amount
        for e in owner.receipt_events(receipt, "RewardCredited")
    }
    want = {(e.sender_address, RewardKind.TRAINER): t for e, t in zip(edges, trainer, strict=True)}
    want = {k: v for k, v in want.items() if v} | {
        (e.sender_address, RewardKind.VALIDATOR): validator for e in edges
    }
    assert credits == want
    (finalized,) = owner.receipt_events(receipt, "RoundFinalized")
    paid = sum(trainer) + 3 * validator
    assert pool - paid == 1
    assert (finalized.accepted, finalized.budget, finalized.paid) == (True, pool, paid)
    assert owner.phase(task_id) == Phase.FINISHED
    accounts = [e.sender_address for e in edges]
    harness.assert_funds_conserved([task_id], accounts)

    for edge in edges:
        edge.release_stake(task_id)
        edge.withdraw()
    owner.refund_pool(task_id)
    assert owner.owed(owner.sender_address) == pool - paid
    owner.withdraw()
    assert anvil_chain.w3.eth.get_balance(owner.address) == 0
