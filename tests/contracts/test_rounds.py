"""Rounds: commit/reveal of updates and votes, phases and deadlines, finalize, rewards, slashing."""

import pytest

from edgetune.chain.types import Ballot, Phase, RewardKind, SlashReason

from .rounds import ETHER, expect_revert, h

MILLION = 1_000_000


def credited(owner, receipt, kind: RewardKind | None = None) -> dict[str, int]:
    events = owner.receipt_events(receipt, "RewardCredited")
    return {e.edge: e.amount for e in events if kind is None or e.kind == kind}


def finalize_event(owner, receipt):
    (event,) = owner.receipt_events(receipt, "RoundFinalized")
    return event


def test_phases_close_early_when_every_edge_has_acted(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    for edge in edges[:2]:
        harness.commit(task_id, 1, edge)
    assert owner.status(task_id).phase == Phase.UPDATE_COMMIT
    harness.commit(task_id, 1, edges[2])
    assert owner.status(task_id).phase == Phase.UPDATE_REVEAL
    for edge in edges:
        harness.reveal(task_id, 1, edge)
    assert owner.status(task_id).phase == Phase.VOTE_COMMIT
    ballot = harness.agreeing_ballot([1, 1, 1])
    harness.vote_all(task_id, 1, {e.sender_address: ballot for e in edges}, edges)
    status = owner.status(task_id)
    assert (status.phase, status.vote_commits, status.vote_reveals) == (Phase.FINALIZABLE, 3, 3)


def test_deadlines_move_the_phase_when_an_edge_is_silent(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    harness.commit(task_id, 1, edges[0])
    harness.commit(task_id, 1, edges[1])
    end = owner.status(task_id).phase_end
    harness.mine(end - harness.w3.eth.block_number)
    assert owner.phase(task_id) == Phase.UPDATE_COMMIT
    harness.mine(1)
    assert owner.phase(task_id) == Phase.UPDATE_REVEAL
    with expect_revert(
        "EdgeTuneWrongPhase", current=Phase.UPDATE_REVEAL, required=Phase.UPDATE_COMMIT
    ):
        harness.commit(task_id, 1, edges[2])


def test_actions_in_the_wrong_phase_or_round_revert(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    with expect_revert("EdgeTuneWrongPhase", required=Phase.UPDATE_REVEAL):
        edges[0].reveal_update(task_id, 1, h("x"), "cid", 1, h("s"))
    with expect_revert("EdgeTuneWrongRound", current=1, given=2):
        edges[0].commit_update(task_id, 2, h("c"))
    with expect_revert("EdgeTuneWrongPhase", required=Phase.FINALIZABLE):
        owner.finalize(task_id)
    with expect_revert("EdgeTuneNotActiveEdge", edge=owner.sender_address):
        owner.commit_update(task_id, 1, h("c"))
    harness.commit(task_id, 1, edges[0])
    with expect_revert("EdgeTuneAlreadyCommitted", round=1, edge=edges[0].sender_address):
        edges[0].commit_update(task_id, 1, h("again"))


def test_reveal_checks_commitment_samples_and_duplicates(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, max_samples=500)
    update = harness.commit(task_id, 1, edges[0], samples=100)
    harness.commit(task_id, 1, edges[1], samples=501)
    harness.mine_until_phase(task_id, "UPDATE_REVEAL")
    with expect_revert("EdgeTuneNotCommitted", edge=edges[2].sender_address):
        harness.updates[(task_id, 1, edges[2].sender_address)] = update
        harness.reveal(task_id, 1, edges[2])
    with expect_revert("EdgeTuneCommitmentMismatch", edge=edges[0].sender_address):
        edges[0].reveal_update(task_id, 1, update.update_hash, update.cid, 99, update.salt)
    with expect_revert("EdgeTuneSamplesOutOfRange", samples=501, maxSamples=500):
        harness.reveal(task_id, 1, edges[1])
    harness.reveal(task_id, 1, edges[0])
    with expect_revert("EdgeTuneAlreadyRevealed"):
        harness.reveal(task_id, 1, edges[0])
    (revealed,) = owner.revealed_updates(task_id, 1)
    assert (revealed.edge, revealed.update_hash, revealed.cid, revealed.samples) == (
        edges[0].sender_address, update.update_hash, update.cid, 100,
    )  # fmt: skip


def test_vote_reveal_checks_masks_and_score_count(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    harness.run_updates(task_id, 1, edges)
    bad_ballots = [
        (Ballot(0b111, 0b011, h("a"), "cid", True, (1, 2)), "EdgeTuneInvalidMask"),
        (Ballot(0b01, 0b11, h("a"), "cid", True, (1, 2)), "EdgeTuneInvalidMask"),
        (Ballot(0b11, 0b11, h("a"), "cid", True, (1,)), "EdgeTuneScoresLength"),
    ]
    salts = [
        harness.commit_vote(task_id, 1, e, b) for e, (b, _) in zip(edges, bad_ballots, strict=False)
    ]
    harness.mine_until_phase(task_id, "VOTE_REVEAL")
    for edge, (ballot, error), salt in zip(edges, bad_ballots, salts, strict=False):
        with expect_revert(error):
            edge.reveal_vote(task_id, 1, ballot, salt)
    good = harness.agreeing_ballot([1, 2])
    with expect_revert("EdgeTuneCommitmentMismatch"):
        edges[0].reveal_vote(task_id, 1, good, salts[0])


def test_accepted_round_pays_trainers_by_median_and_validators_equally(harness, owner):
    edges = harness.edges(3)
    pool = 10 * ETHER
    task_id = harness.started_task(edges, pool=pool, validator_share_bps=2000)
    harness.run_updates(task_id, 1, edges)
    own_inflated = {  # each voter grades its own update 9.0; the median must ignore that
        e.sender_address: harness.agreeing_ballot(
            [
                9 * MILLION if j == i else s
                for j, s in enumerate([MILLION, 2 * MILLION, 3 * MILLION])
            ]
        )
        for i, e in enumerate(edges)
    }
    # Ballots differ only in scores, so they share the candidate (masks, aggregate hash).
    harness.vote_all(task_id, 1, own_inflated, edges)
    receipt = owner.finalize(task_id)
    budget = pool // 2
    trainer_pool, validator_pool = budget * 8000 // 10_000, budget * 2000 // 10_000
    trainers = credited(owner, receipt, RewardKind.TRAINER)
    validators = credited(owner, receipt, RewardKind.VALIDATOR)
    addresses = [e.sender_address for e in edges]
    assert [trainers[a] for a in addresses] == [trainer_pool * k // 6 for k in (1, 2, 3)]
    assert [validators[a] for a in addresses] == [validator_pool // 3] * 3
    event = finalize_event(owner, receipt)
    assert event.accepted and event.globalHash == h("aggregate") and event.globalCid == "bafyagg"
    assert event.paid == sum(trainers.values()) + sum(validators.values())
    funds = owner.task_funds(task_id)
    assert funds.carry == budget - event.paid
    assert owner.status(task_id).round == 2
    scored = owner.receipt_events(receipt, "ContributionScored")
    assert [e.medianScore for e in scored] == [MILLION, 2 * MILLION, 3 * MILLION]


def test_negative_and_zero_contributions_earn_nothing_and_carry_over(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, pool=10 * ETHER)
    harness.full_round(task_id, 1, edges, [-5, 0, -1])
    budget = 5 * ETHER
    validator_share = budget * 2000 // 10_000 // 3
    funds = owner.task_funds(task_id)
    assert funds.carry == budget - 3 * validator_share  # the whole trainer pool, plus dust
    assert all(owner.owed(e.sender_address) == validator_share for e in edges)
    harness.run_updates(task_id, 2, edges)
    ballot = harness.agreeing_ballot([MILLION, MILLION, MILLION])
    harness.vote_all(task_id, 2, {e.sender_address: ballot for e in edges}, edges)
    receipt_round_two = owner.finalize(task_id)
    assert finalize_event(owner, receipt_round_two).budget == 5 * ETHER + funds.carry


def test_split_vote_without_quorum_rejects_the_round(harness, owner):
    edges = harness.edges(4)
    task_id = harness.started_task(edges)
    harness.run_updates(task_id, 1, edges)
    ballots = {
        e.sender_address: Ballot(0b1111, 0b1111, h(f"agg{i % 2}"), "cid", True, (1, 1, 1, 1))
        for i, e in enumerate(edges)
    }
    harness.vote_all(task_id, 1, ballots, edges)
    receipt = owner.finalize(task_id)
    event = finalize_event(owner, receipt)
    assert not event.accepted and event.paid == 0
    assert event.globalHash == h("global-0")  # G(r) = G(r-1)
    assert owner.task_funds(task_id).carry == 5 * ETHER
    assert credited(owner, receipt) == {}


@pytest.mark.parametrize(("wei_below", "accepted"), [(0, True), (1, False)])
def test_quorum_exactly_at_threshold_and_one_wei_below(harness, owner, wei_below, accepted):
    yes, no = harness.edges(2)
    task_id = harness.create(quorum_bps=6000, min_turnout_bps=0)
    yes.register(task_id, 3 * ETHER - wei_below)
    no.register(task_id, 2 * ETHER + wei_below)
    owner.start(task_id)
    harness.run_updates(task_id, 1, [yes, no])
    ballots = {
        yes.sender_address: Ballot(0b11, 0b11, h("A"), "cid", True, (1, 1)),
        no.sender_address: Ballot(0b11, 0b11, h("B"), "cid", True, (1, 1)),
    }
    harness.vote_all(task_id, 1, ballots, [yes, no])
    event = finalize_event(owner, owner.finalize(task_id))
    assert event.approvingStake * 10_000 - event.revealedStake * 6000 == -10_000 * wei_below
    assert event.accepted is accepted


@pytest.mark.parametrize(("wei_below", "accepted"), [(0, True), (1, False)])
def test_turnout_exactly_at_threshold_and_one_wei_below(harness, owner, wei_below, accepted):
    voter, silent = harness.edges(2)
    task_id = harness.create(min_turnout_bps=5000)
    voter.register(task_id, 2 * ETHER - wei_below)
    silent.register(task_id, 2 * ETHER + wei_below)
    owner.start(task_id)
    harness.run_updates(task_id, 1, [voter, silent])
    ballot = harness.agreeing_ballot([1, 1])
    harness.vote_all(task_id, 1, {voter.sender_address: ballot}, [voter])
    harness.mine_until_phase(task_id, "FINALIZABLE")
    assert finalize_event(owner, owner.finalize(task_id)).accepted is accepted


def test_disapproving_votes_count_for_turnout_but_back_no_candidate(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    harness.run_updates(task_id, 1, edges)
    ballots = {
        e.sender_address: harness.agreeing_ballot([1, 1, 1], approve=i == 0)
        for i, e in enumerate(edges)
    }
    harness.vote_all(task_id, 1, ballots, edges)
    event = finalize_event(owner, owner.finalize(task_id))
    assert (event.accepted, event.approvingStake, event.revealedStake) == (False, ETHER, 3 * ETHER)


def test_non_revealers_and_invalid_updates_are_slashed_into_the_pool(harness, owner, w3):
    edges = harness.edges(4)
    task_id = harness.started_task(edges, stake=2 * ETHER)
    honest, invalid, silent_update, silent_vote = edges
    for edge in edges:
        harness.commit(task_id, 1, edge)
    for edge in (honest, invalid, silent_vote):
        harness.reveal(task_id, 1, edge)
    harness.mine_until_phase(task_id, "VOTE_COMMIT")
    # reveal order: honest=0, invalid=1, silent_vote=2; voters drop the invalid one.
    ballot = harness.agreeing_ballot([MILLION, 0, MILLION], valid=0b101)
    for voter in (honest, invalid, silent_update):
        harness.commit_vote(task_id, 1, voter, ballot)
    harness.commit_vote(task_id, 1, silent_vote, ballot)
    harness.mine_until_phase(task_id, "VOTE_REVEAL")
    for voter in (honest, invalid, silent_update):
        voter.reveal_vote(task_id, 1, ballot, h(f"vote/{voter.sender_address}"))
    harness.mine_until_phase(task_id, "FINALIZABLE")
    pool_before = owner.task_funds(task_id).pool
    receipt = owner.finalize(task_id)
    slashes = {
        e.edge: (SlashReason(e.reason), e.amount) for e in owner.receipt_events(receipt, "Slashed")
    }
    assert slashes == {
        invalid.sender_address: (SlashReason.INVALID_UPDATE, ETHER),
        silent_update.sender_address: (SlashReason.UPDATE_NOT_REVEALED, ETHER // 2),
        silent_vote.sender_address: (SlashReason.VOTE_NOT_REVEALED, ETHER // 2),
    }
    assert owner.stake_of(task_id, invalid.sender_address) == ETHER
    paid = finalize_event(owner, receipt).paid
    assert owner.task_funds(task_id).pool == pool_before - paid + 2 * ETHER
    harness.assert_funds_conserved([task_id], [e.sender_address for e in edges])


def test_slashing_below_min_stake_deactivates_the_edge(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, stake=ETHER)
    harness.run_updates(task_id, 1, edges)
    ballot = harness.agreeing_ballot([1, 1, 1], valid=0b011)
    harness.vote_all(task_id, 1, {e.sender_address: ballot for e in edges}, edges)
    owner.finalize(task_id)
    cheater = owner.status(task_id, edges[2].sender_address)
    assert (cheater.stake, cheater.active) == (0, False)
    assert owner.status(task_id).active_edges == 2
    assert owner.task_funds(task_id).active_stake == 2 * ETHER


def test_rejected_round_only_slashes_non_revealers(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    for edge in edges:
        harness.commit(task_id, 1, edge)
    harness.mine_until_phase(task_id, "UPDATE_REVEAL")
    harness.reveal(task_id, 1, edges[0])
    harness.mine_until_phase(task_id, "VOTE_COMMIT")
    harness.mine_until_phase(task_id, "FINALIZABLE")  # nobody votes: no quorum
    receipt = owner.finalize(task_id)
    slashed = {e.edge for e in owner.receipt_events(receipt, "Slashed")}
    assert slashed == {edges[1].sender_address, edges[2].sender_address}
    assert not finalize_event(owner, receipt).accepted


def test_last_round_finishes_the_task_and_the_rest_is_refundable(harness, owner, w3):
    edges = harness.edges(2)
    task_id = harness.started_task(edges, pool=10 * ETHER + 1)
    harness.full_round(task_id, 1, edges, [MILLION, MILLION])
    harness.full_round(task_id, 2, edges, [0, 0])  # no contribution: trainer pool unpaid
    assert owner.phase(task_id) == Phase.FINISHED
    leftover = owner.task_funds(task_id).pool
    assert leftover == 1 + 5 * ETHER * 8000 // 10_000  # division dust + unpaid trainer pool
    owner.refund_pool(task_id)
    assert owner.owed(owner.sender_address) == leftover
    for edge in edges:
        edge.release_stake(task_id)
        edge.withdraw()
    owner.withdraw()
    assert w3.eth.get_balance(owner.address) == 0
