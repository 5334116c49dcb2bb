"""One full v2 round on a real anvil node (not the embedded chain): the RPC path, anvil's mining
and the contract must agree with the independent reference of the tally and payout rules, to
the wei, and every wei must come back out through withdraw."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetune.chain.connect import Chain
from edgetune.chain.deploy import deploy
from edgetune.chain.types import Phase

from ..anvil import local_anvil
from .rounds import (
    AGGREGATE,
    ETHER,
    TaskHarness,
    ballot,
    credits,
    expected_credits,
    expected_tally,
    finalized,
    tallied,
)

pytestmark = pytest.mark.anvil

STAKES = [ETHER, 2 * ETHER, 3 * ETHER]
# SCORES[k][j]: scorer k's score (millionths) of the j-th revealed update, its own included.
SCORES = [
    [900_000, 400_000, 50_000],
    [300_000, -5, -20_000],
    [200_000, 100_000, -70_000],
]


@pytest.fixture
def anvil_chain(tmp_path: Path) -> Iterator[Chain]:
    with local_anvil(tmp_path) as chain:
        yield chain


def test_full_round_on_anvil_pays_the_reference_rules_and_conserves_funds(anvil_chain: Chain):
    owner, _ = deploy(anvil_chain, anvil_chain.accounts[0])
    harness = TaskHarness(anvil_chain, owner)
    edges = harness.edges(3)
    pool = 5 * ETHER + 8  # odd wei: rounding dust stays for the owner's refund
    task_id = harness.create(pool, rounds=1)
    for edge, stake in zip(edges, STAKES, strict=True):
        edge.register(task_id, stake)
    owner.start(task_id)

    harness.updates(task_id, 1, edges)
    assert [u.edge for u in owner.revealed_updates(task_id, 1)] == [e.sender_address for e in edges]
    ballots = [ballot(row) for row in SCORES]
    harness.scores(task_id, 1, dict(zip(edges, ballots, strict=True)))
    assert owner.score_ballots(task_id, 1) == harness.revealed_ballots[(task_id, 1)]
    event = tallied(owner, owner.tally(task_id, 1, owner.score_ballots(task_id, 1)))
    want = expected_tally(STAKES, ballots, 3)
    assert tuple(event.medians) == want.medians == (200_000, 100_000, -70_000)
    assert tuple(event.agreements) == want.agreements
    assert event.includedMask == want.included == 0b011  # the third is below -τ
    harness.attest(task_id, 1, {e: AGGREGATE for e in edges})
    assert owner.phase(task_id) == Phase.FINALIZABLE
    receipt = owner.finalize(task_id)

    authors = [e.sender_address for e in edges]
    expected = expected_credits(
        pool, authors, want, dict(zip(authors, want.agreements, strict=True))
    )
    assert credits(owner, receipt) == expected
    paid = sum(expected.values())
    event = finalized(owner, receipt)
    assert (event.accepted, event.budget, event.paid) == (True, pool, paid)
    assert owner.phase(task_id) == Phase.FINISHED
    harness.assert_funds_conserved([task_id], authors)

    for edge in edges:
        edge.release_stake(task_id)
        edge.withdraw()
    owner.refund_pool(task_id)
    assert owner.owed(owner.sender_address) == pool - paid
    owner.withdraw()
    assert anvil_chain.w3.eth.get_balance(owner.address) == 0
