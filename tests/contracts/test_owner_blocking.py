"""An owner that also runs edges gains nothing by blocking (docs/protocol.md, "End").

The owner runs 2 of 5 equal-stake edges (40%) in a 3-round task with the default quorum and
turnouts (simple majority, 50%). Blocking, its edges either attest reject in every round, or
commit in every stage and never reveal. The rounds are still accepted, and the owner's total
(its pool refund, plus its edges' stakes and credits after slashing) ends no higher than with
honest play: each variant is played from the same snapshot and compared to the wei.
"""

from edgetune.chain.types import Attestation, Phase

from .rounds import AGGREGATE, ETHER, ballot, finalized, update_of

ROUNDS = 3
POOL = ROUNDS * 3 * ETHER + 2  # 2 wei of dust: the honest refund is not zero
STAKE = 2 * ETHER  # survives two non-reveal slashes of 0.5 ETH while staying active
SCORES = [500_000, 400_000, 300_000, 200_000, 100_000]
REJECT = Attestation(AGGREGATE.aggregate_hash, AGGREGATE.aggregate_cid, False)


def play_round(harness, task_id: int, round_: int, honest, owned, behaviour: str):
    """One round: honest edges play by the rules; the owner's edges as `behaviour` says."""
    everyone = [*owned, *honest]
    silent = owned if behaviour == "withhold" else []
    revealing = [e for e in everyone if e not in silent]

    def stage(stage: Phase, values: dict) -> None:
        for edge in everyone:
            harness.commit(task_id, round_, stage, edge, values[edge])
        for edge in revealing:
            harness.reveal(task_id, round_, stage, edge)
        harness.mine_until_phase(task_id, Phase(stage + 2))

    stage(Phase.UPDATE_COMMIT, {e: update_of(task_id, round_, e) for e in everyone})
    reveals = harness.owner.status(task_id).reveals
    consensus = ballot(SCORES[-reveals:])
    stage(Phase.SCORE_COMMIT, dict.fromkeys(everyone, consensus))
    harness.tally(task_id, round_)
    attestations = dict.fromkeys(everyone, AGGREGATE)
    if behaviour == "reject":
        attestations |= dict.fromkeys(owned, REJECT)
    stage(Phase.ATTEST_COMMIT, attestations)
    return harness.owner.finalize(task_id)


def owner_total(harness, owner, task_id: int, owned) -> int:
    """What the owner holds at the end: its refund plus its edges' stakes and credits."""
    if owner.task_funds(task_id).pool:
        owner.refund_pool(task_id)
    edges = sum(harness.worth(task_id, e.sender_address) for e in owned)
    return owner.owed(owner.sender_address) + edges


def test_an_owner_blocking_with_40_percent_gains_nothing(harness, owner):
    *owned, h1, h2, h3 = edges = harness.edges(5)
    honest = [h1, h2, h3]
    task_id = harness.started_task(edges, stake=STAKE, pool=POOL, rounds=ROUNDS)
    totals = {}
    for behaviour in ("honest", "reject", "withhold"):
        with harness.what_if():
            for round_ in range(1, ROUNDS + 1):
                receipt = play_round(harness, task_id, round_, honest, owned, behaviour)
                event = finalized(owner, receipt)
                approving = (5 if behaviour == "honest" else 3) * STAKE
                assert (event.accepted, event.approvingStake) == (True, approving), behaviour
                paid = {e.edge for e in owner.receipt_events(receipt, "RewardCredited")}
                assert {e.sender_address for e in honest} <= paid
            assert owner.phase(task_id) == Phase.FINISHED
            totals[behaviour] = owner_total(harness, owner, task_id, owned)
            harness.assert_funds_conserved([task_id], [e.sender_address for e in edges])
    assert totals["reject"] <= totals["honest"]
    assert totals["withhold"] <= totals["honest"]
    # What blocking costs, exactly: rejecting forfeits the owner's validator shares (2/5 of each
    # round's validator pool); withholding forfeits everything it would have earned and pays
    # three non-reveal slashes per edge, of which only the last round's return in the refund.
    validator_shares = ROUNDS * 2 * (3 * ETHER * 2000 // 10_000 // 5)
    assert totals["honest"] - totals["reject"] == validator_shares
