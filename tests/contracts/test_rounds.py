"""Rounds: the seven stages, early close and deadlines, wrong phase or round, reveal and tally
checks, the stage-1 outcome, rewards to the wei, quorum and turnout at their thresholds,
slashing into the carry-over, and the end of a task."""

import pytest

from edgetune.chain.types import Phase, RewardKind, ScoreBallot, SlashReason, Step

from .rounds import (
    AGGREGATE,
    BASE_CONFIG,
    ETHER,
    MILLION,
    Attestation,
    ballot,
    credits,
    expect_revert,
    expected_credits,
    expected_tally,
    finalized,
    h,
    slashes,
    tallied,
    update_of,
)

TAU = BASE_CONFIG.harm_tolerance


def test_every_stage_closes_early_once_every_edge_has_acted(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    commit_blocks = BASE_CONFIG.commit_blocks

    def status():
        return owner.status(task_id, edges[0].sender_address)

    for stage, values in [
        (Phase.UPDATE_COMMIT, {e: update_of(task_id, 1, e) for e in edges}),
        (Phase.SCORE_COMMIT, {e: ballot([1, 2, 3]) for e in edges}),
    ]:
        for edge in edges[:2]:
            harness.commit(task_id, 1, stage, edge, values[edge])
        assert status().phase == stage
        harness.commit(task_id, 1, stage, edges[2], values[edges[2]])
        s = status()
        reveal_blocks = BASE_CONFIG.reveal_blocks  # == score_reveal_blocks
        assert (s.phase, s.phase_end) == (
            stage + 1,
            harness.w3.eth.block_number - 1 + reveal_blocks,
        )
        for edge in edges[:2]:
            harness.reveal(task_id, 1, stage, edge)
        assert status().phase == stage + 1
        harness.reveal(task_id, 1, stage, edges[2])
        assert status().phase == stage + 2
    s = status()
    assert (s.reveals, s.score_reveals, s.done) == (3, 3, Step(0b1111))
    assert s.phase_end == harness.w3.eth.block_number - 1 + BASE_CONFIG.tally_blocks
    harness.tally(task_id, 1)
    assert status().phase == Phase.ATTEST_COMMIT
    assert status().included_mask == 0b111
    for edge in edges:
        harness.commit(task_id, 1, Phase.ATTEST_COMMIT, edge, AGGREGATE)
    assert status().phase == Phase.ATTEST_REVEAL
    for edge in edges:
        harness.reveal(task_id, 1, Phase.ATTEST_COMMIT, edge)
    assert (status().phase, status().done) == (Phase.FINALIZABLE, Step(0b111111))
    receipt = edges[1].finalize(task_id)  # anyone may finalize
    s = status()
    assert (s.phase, s.round, s.done, s.global_hash, s.global_cid) == (
        Phase.UPDATE_COMMIT, 2, Step(0), AGGREGATE.aggregate_hash, AGGREGATE.aggregate_cid,
    )  # fmt: skip
    assert s.phase_end == receipt["blockNumber"] + commit_blocks


def test_deadlines_move_every_stage_when_an_edge_is_silent(harness, owner):
    """Edge c never acts and edge b never reveals: every stage waits for its deadline (the
    deadline block still belongs to it) and then moves on without a transaction. a holds 3/5 of
    the stake, so the turnouts hold on a alone."""
    a, b, c = edges = harness.edges(3)
    task_id = harness.create()
    for edge, stake in zip(edges, [3 * ETHER, ETHER, ETHER], strict=True):
        edge.register(task_id, stake)
    owner.start(task_id)

    def at_deadline(expected: Phase) -> None:
        status = owner.status(task_id)
        assert status.phase == expected
        harness.mine(status.phase_end - harness.w3.eth.block_number)
        assert owner.phase(task_id) == expected
        harness.mine(1)
        assert owner.phase(task_id) == expected + 1

    for edge in (a, b):
        harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edge, update_of(task_id, 1, edge))
    at_deadline(Phase.UPDATE_COMMIT)
    with expect_revert(
        "EdgeTuneWrongPhase", current=Phase.UPDATE_REVEAL, required=Phase.UPDATE_COMMIT
    ):
        harness.commit(task_id, 1, Phase.UPDATE_COMMIT, c, update_of(task_id, 1, c))
    harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, a)
    at_deadline(Phase.UPDATE_REVEAL)  # b committed and has not revealed yet: the stage waits
    for edge in (a, b):
        harness.commit(task_id, 1, Phase.SCORE_COMMIT, edge, ballot([MILLION]))
    at_deadline(Phase.SCORE_COMMIT)
    harness.reveal(task_id, 1, Phase.SCORE_COMMIT, a)
    at_deadline(Phase.SCORE_REVEAL)
    harness.tally(task_id, 1)
    for edge in (a, b):
        harness.commit(task_id, 1, Phase.ATTEST_COMMIT, edge, AGGREGATE)
    at_deadline(Phase.ATTEST_COMMIT)
    harness.reveal(task_id, 1, Phase.ATTEST_COMMIT, a)
    at_deadline(Phase.ATTEST_REVEAL)
    assert owner.phase(task_id) == Phase.FINALIZABLE
    receipt = owner.finalize(task_id)
    assert slashes(owner, receipt) == {
        b.sender_address: [(SlashReason.NOT_REVEALED, BASE_CONFIG.slash_non_reveal)],
        c.sender_address: [(SlashReason.ABSENT, BASE_CONFIG.slash_absent)],
    }  # once per round each, however many stages were skipped
    assert finalized(owner, receipt).accepted


def test_tally_deadline_without_a_tally_ends_the_round_unpaid(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    harness.updates(task_id, 1, edges)
    harness.scores(task_id, 1, {e: ballot([1, 1]) for e in edges})
    assert owner.phase(task_id) == Phase.TALLY
    harness.mine_until_phase(task_id, Phase.FINALIZABLE)
    with expect_revert("EdgeTuneWrongPhase", current=Phase.FINALIZABLE, required=Phase.TALLY):
        harness.tally(task_id, 1)
    receipt = owner.finalize(task_id)
    event = finalized(owner, receipt)
    assert (event.accepted, event.paid, event.budget) == (False, 0, 5 * ETHER)
    assert slashes(owner, receipt) == {}  # the attestation stage never opened: nobody was absent
    assert owner.medians(task_id, 1) == []
    assert owner.task_funds(task_id).carry == 5 * ETHER


@pytest.mark.parametrize("stop", ["no update reveal", "no score commit", "no score reveal"])
def test_a_stage_nobody_acts_in_ends_the_round_at_its_deadline(harness, owner, stop):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    for edge in edges:
        harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edge, update_of(task_id, 1, edge))
    expected = SlashReason.NOT_REVEALED
    if stop != "no update reveal":
        for edge in edges:
            harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, edge)
        expected = SlashReason.ABSENT
    if stop == "no score reveal":
        for edge in edges:
            harness.commit(task_id, 1, Phase.SCORE_COMMIT, edge, ballot([1, 1]))
        expected = SlashReason.NOT_REVEALED
    harness.mine_until_phase(task_id, Phase.FINALIZABLE)
    receipt = owner.finalize(task_id)
    amount = {SlashReason.ABSENT: BASE_CONFIG.slash_absent}.get(
        expected, BASE_CONFIG.slash_non_reveal
    )
    assert slashes(owner, receipt) == {e.sender_address: [(expected, amount)] for e in edges}
    assert not finalized(owner, receipt).accepted
    assert owner.status(task_id).round == 2


def test_actions_in_the_wrong_phase_or_round_revert(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    a = edges[0]
    update_hash, cid = update_of(task_id, 1, a)
    with expect_revert(
        "EdgeTuneWrongPhase", taskId=task_id, current=Phase.UPDATE_COMMIT,
        required=Phase.UPDATE_REVEAL,
    ):  # fmt: skip
        a.reveal_update(task_id, 1, update_hash, cid, h("s"))
    with expect_revert("EdgeTuneWrongPhase", required=Phase.SCORE_REVEAL):
        a.reveal_scores(task_id, 1, ballot([1]), h("s"))
    with expect_revert("EdgeTuneWrongPhase", required=Phase.ATTEST_REVEAL):
        a.reveal_attestation(task_id, 1, AGGREGATE, h("s"))
    with expect_revert("EdgeTuneWrongPhase", required=Phase.TALLY):
        owner.tally(task_id, 1, [])
    with expect_revert(
        "EdgeTuneWrongPhase", current=Phase.UPDATE_COMMIT, required=Phase.FINALIZABLE
    ):
        owner.finalize(task_id)
    with expect_revert("EdgeTuneWrongPhase", required=Phase.SCORE_COMMIT):
        a.commit(task_id, 1, Phase.SCORE_COMMIT, h("c"))
    with expect_revert("EdgeTuneNotCommitPhase", given=Phase.UPDATE_REVEAL):
        a.commit(task_id, 1, Phase.UPDATE_REVEAL, h("c"))
    with expect_revert("EdgeTuneNotCommitPhase", given=Phase.FINALIZABLE):
        a.commit(task_id, 1, Phase.FINALIZABLE, h("c"))
    with expect_revert("EdgeTuneWrongRound", taskId=task_id, current=1, given=2):
        a.commit(task_id, 2, Phase.UPDATE_COMMIT, h("c"))
    with expect_revert("EdgeTuneWrongRound", current=1, given=0):
        a.commit(task_id, 0, Phase.UPDATE_COMMIT, h("c"))
    with expect_revert("EdgeTuneUnknownTask", taskId=task_id + 1):
        a.commit(task_id + 1, 1, Phase.UPDATE_COMMIT, h("c"))
    with expect_revert("EdgeTuneNotActiveEdge", taskId=task_id, edge=owner.sender_address):
        owner.commit(task_id, 1, Phase.UPDATE_COMMIT, h("c"))
    a.commit(task_id, 1, Phase.UPDATE_COMMIT, h("c"))
    with expect_revert(
        "EdgeTuneAlreadyCommitted", taskId=task_id, round=1, edge=a.sender_address,
        stage=Phase.UPDATE_COMMIT,
    ):  # fmt: skip
        a.commit(task_id, 1, Phase.UPDATE_COMMIT, h("again"))
    assert owner.status(task_id).phase == Phase.UPDATE_COMMIT  # nothing above counted


def test_update_reveal_checks_the_commitment_and_keeps_the_order(harness, owner):
    a, b, c = edges = harness.edges(3)
    task_id = harness.started_task(edges)
    for edge in (a, b):
        harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edge, update_of(task_id, 1, edge))
    harness.mine_until_phase(task_id, Phase.UPDATE_REVEAL)
    update_hash, cid = update_of(task_id, 1, a)
    salt = harness.opened[(task_id, 1, Phase.UPDATE_COMMIT, a.sender_address)].salt
    with expect_revert(
        "EdgeTuneNotCommitted", round=1, edge=c.sender_address, stage=Phase.UPDATE_COMMIT
    ):
        c.reveal_update(task_id, 1, update_hash, cid, salt)
    for wrong in [(update_hash, cid, h("wrong")), (update_hash, cid + "x", salt),
                  (h("other"), cid, salt)]:  # fmt: skip
        with expect_revert(
            "EdgeTuneCommitmentMismatch", edge=a.sender_address, stage=Phase.UPDATE_COMMIT
        ):
            a.reveal_update(task_id, 1, *wrong)
    harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, b)
    with expect_revert("EdgeTuneAlreadyRevealed", edge=b.sender_address, stage=Phase.UPDATE_COMMIT):
        harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, b)
    receipt = a.reveal_update(task_id, 1, update_hash, cid, salt)
    (event,) = owner.receipt_events(receipt, "UpdateRevealed")
    assert (event.edge, event.index, event.updateHash, event.cid) == (
        a.sender_address, 1, update_hash, cid,
    )  # fmt: skip
    revealed = owner.revealed_updates(task_id, 1)
    assert [(u.edge, u.index) for u in revealed] == [(b.sender_address, 0), (a.sender_address, 1)]
    assert owner.phase(task_id) == Phase.SCORE_COMMIT  # both committers revealed: closed early
    status = owner.status(task_id, a.sender_address)
    assert status.done == Step.UPDATE_COMMITTED | Step.UPDATE_REVEALED


def test_score_reveal_checks_masks_and_length(harness, owner):
    a, b, c = edges = harness.edges(3)
    task_id = harness.started_task(edges)
    harness.updates(task_id, 1, [a, b])  # c trains nothing: two updates, masks of two bits
    bad = {
        a: (ScoreBallot(0b111, 0, (1, 2)), "EdgeTuneInvalidMask"),  # bit 2: no such update
        b: (ScoreBallot(0b01, 0b10, (1, 2)), "EdgeTuneInvalidMask"),  # a copy must be valid
        c: (ScoreBallot(0b11, 0, (1, 2, 3)), "EdgeTuneScoresLength"),
    }
    for edge, (values, _) in bad.items():
        harness.commit(task_id, 1, Phase.SCORE_COMMIT, edge, values)
    assert owner.phase(task_id) == Phase.SCORE_REVEAL
    with expect_revert("EdgeTuneInvalidMask", validMask=0b111, copyMask=0, reveals=2):
        harness.reveal(task_id, 1, Phase.SCORE_COMMIT, a)
    with expect_revert("EdgeTuneInvalidMask", validMask=0b01, copyMask=0b10, reveals=2):
        harness.reveal(task_id, 1, Phase.SCORE_COMMIT, b)
    with expect_revert("EdgeTuneScoresLength", length=12, expected=8):
        harness.reveal(task_id, 1, Phase.SCORE_COMMIT, c)
    salt = harness.opened[(task_id, 1, Phase.SCORE_COMMIT, a.sender_address)].salt
    with expect_revert(
        "EdgeTuneCommitmentMismatch", edge=a.sender_address, stage=Phase.SCORE_COMMIT
    ):
        a.reveal_scores(task_id, 1, ScoreBallot(0b11, 0, (1, 2)), salt)
    assert owner.status(task_id).score_reveals == 0


def test_tally_takes_exactly_the_revealed_ballots_in_order(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    harness.updates(task_id, 1, edges)
    harness.scores(task_id, 1, {e: ballot([i, 2 * i, 3 * i]) for i, e in enumerate(edges)})
    ballots = owner.score_ballots(task_id, 1)
    assert [b.scorer for b in ballots] == [e.sender_address for e in edges]
    assert [b.scores for b in ballots] == [(0, 0, 0), (1, 2, 3), (2, 4, 6)]
    with expect_revert("EdgeTuneBallotCount", given=2, expected=3):
        owner.tally(task_id, 1, ballots[:2])
    forged = ScoreBallot(ballots[0].valid_mask, 0, (9, 9, 9), ballots[0].scorer)
    impostor = ScoreBallot(0b111, 0, (2, 4, 6), edges[0].sender_address)  # c's, under a's name
    reordered = [ballots[1], ballots[0], ballots[2]]
    for wrong in ([forged, *ballots[1:]], reordered, [*ballots[:2], impostor]):
        with expect_revert("EdgeTuneBallotsMismatch", taskId=task_id, round=1):
            owner.tally(task_id, 1, wrong)
    edges[2].tally(task_id, 1, ballots)  # anyone may tally
    with expect_revert("EdgeTuneWrongPhase", current=Phase.ATTEST_COMMIT, required=Phase.TALLY):
        owner.tally(task_id, 1, ballots)


def test_accepted_round_pays_trainers_by_median_and_validators_by_agreement(harness, owner):
    """Stakes 1:2:3; every scorer's own score counts in its update's median. The third update's
    median is below -τ: valid, counted for agreement, but not included (and not paid)."""
    edges = harness.edges(3)
    stakes = [ETHER, 2 * ETHER, 3 * ETHER]
    task_id = harness.create()
    for edge, stake in zip(edges, stakes, strict=True):
        edge.register(task_id, stake)
    owner.start(task_id)
    scores = [
        [900_000, 400_000, 50_000],
        [300_000, -5, -20_000],
        [200_000, 100_000, -70_000],
    ]
    ballots = [ballot(row) for row in scores]
    harness.updates(task_id, 1, edges)
    harness.scores(task_id, 1, dict(zip(edges, ballots, strict=True)))
    event = tallied(owner, harness.tally(task_id, 1))
    want = expected_tally(stakes, ballots, 3)
    assert want.medians == (200_000, 100_000, -70_000)  # the reference, checked by hand
    # spread around the medians' median (100_000): 100_000 + 0 + 170_000
    assert want.agreements == (0, (270_000 - 250_005) * MILLION // 270_000, MILLION)
    assert (event.scoreStake, event.validMask, event.copyMask, event.includedMask) == (
        6 * ETHER, 0b111, 0, 0b011,
    )  # fmt: skip
    assert tuple(event.medians) == want.medians == tuple(owner.medians(task_id, 1))
    assert tuple(event.agreements) == want.agreements
    assert owner.status(task_id).included_mask == 0b011
    harness.attest(task_id, 1, {e: AGGREGATE for e in edges})
    receipt = owner.finalize(task_id)
    authors = [e.sender_address for e in edges]
    approvers = dict(zip(authors, want.agreements, strict=True))
    expected = expected_credits(5 * ETHER, authors, want, approvers)
    assert credits(owner, receipt) == expected
    assert (authors[0], RewardKind.VALIDATOR) not in expected  # agreement 0: unpaid
    assert expected[(authors[0], RewardKind.TRAINER)] == 4 * ETHER * 2 // 3
    event = finalized(owner, receipt)
    paid = sum(expected.values())
    assert (event.accepted, event.candidate, event.globalHash, event.globalCid) == (
        True, AGGREGATE.candidate(), AGGREGATE.aggregate_hash, AGGREGATE.aggregate_cid,
    )  # fmt: skip
    assert (event.approvingStake, event.attestStake, event.budget, event.paid) == (
        6 * ETHER, 6 * ETHER, 5 * ETHER, paid,
    )  # fmt: skip
    funds = owner.task_funds(task_id)
    assert (funds.pool, funds.carry) == (10 * ETHER - paid, 5 * ETHER - paid)
    assert slashes(owner, receipt) == {}
    for author in authors:
        owed = sum(v for (who, _), v in expected.items() if who == author)
        assert owner.owed(author) == owed


def test_negative_and_zero_medians_earn_nothing_and_carry_over(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, pool=10 * ETHER)
    first = harness.full_round(task_id, 1, edges, [-5, 0, -1])
    assert owner.medians(task_id, 1) == [-5, 0, -1]
    validator_share = ETHER // 3  # agreement is perfect for all three: the medians are theirs
    assert credits(owner, first) == {
        (e.sender_address, RewardKind.VALIDATOR): validator_share for e in edges
    }
    carry = 5 * ETHER - 3 * validator_share  # the whole trainer pool, plus 1 wei of dust
    assert owner.task_funds(task_id).carry == carry == 4 * ETHER + 1
    second = harness.full_round(task_id, 2, edges, [MILLION, MILLION, 2 * MILLION])
    assert finalized(owner, second).budget == 5 * ETHER + carry


def test_harm_tolerance_bounds_the_included_set(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    harness.updates(task_id, 1, edges)
    harness.scores(task_id, 1, {e: ballot([-TAU, -TAU - 1, 0]) for e in edges})
    event = tallied(owner, harness.tally(task_id, 1))
    assert (event.validMask, event.includedMask) == (0b111, 0b101)


def test_split_attestation_without_quorum_rejects_the_round(harness, owner):
    edges = harness.edges(4)
    task_id = harness.started_task(edges)
    other = Attestation(h("other"), "bafyother", True)
    attestations = {e: (AGGREGATE if i % 2 else other) for i, e in enumerate(edges)}
    receipt = harness.full_round(task_id, 1, edges, [1, 1, 1, 1], attestations=attestations)
    event = finalized(owner, receipt)
    assert (event.accepted, event.paid, event.candidate) == (False, 0, bytes(32))
    assert (event.approvingStake, event.attestStake) == (2 * ETHER, 4 * ETHER)
    assert (event.globalHash, event.globalCid) == (h("global-0"), "bafyglobal0")  # G(r) = G(r-1)
    assert owner.task_funds(task_id).carry == 5 * ETHER
    assert credits(owner, receipt) == {}
    assert slashes(owner, receipt) == {}


@pytest.mark.parametrize(("wei_below", "accepted"), [(0, True), (1, False)])
def test_quorum_exactly_at_threshold_and_one_wei_below(harness, owner, wei_below, accepted):
    yes, no = harness.edges(2)
    task_id = harness.create(quorum_bps=6000)
    yes.register(task_id, 3 * ETHER - wei_below)
    no.register(task_id, 2 * ETHER + wei_below)
    owner.start(task_id)
    rival = Attestation(h("B"), "bafyB", True)
    receipt = harness.full_round(
        task_id, 1, [yes, no], [MILLION, MILLION], attestations={yes: AGGREGATE, no: rival}
    )
    event = finalized(owner, receipt)
    assert event.approvingStake * 10_000 - event.attestStake * 6000 == -10_000 * wei_below
    assert event.accepted is accepted


@pytest.mark.parametrize(("wei_below", "included"), [(0, 0b11), (1, 0)])
def test_score_turnout_exactly_at_threshold_and_one_wei_below(harness, owner, wei_below, included):
    scorer, silent = harness.edges(2)
    task_id = harness.create(min_turnout_bps=5000)
    scorer.register(task_id, 2 * ETHER - wei_below)
    silent.register(task_id, 2 * ETHER + wei_below)
    owner.start(task_id)
    harness.updates(task_id, 1, [scorer, silent])
    harness.scores(task_id, 1, {scorer: ballot([MILLION, MILLION])})
    event = tallied(owner, harness.tally(task_id, 1))
    assert (event.validMask, event.includedMask) == (0b11, included)
    expected = Phase.ATTEST_COMMIT if included else Phase.FINALIZABLE
    assert owner.phase(task_id) == expected


@pytest.mark.parametrize(("wei_below", "accepted"), [(0, True), (1, False)])
def test_attest_turnout_exactly_at_threshold_and_one_wei_below(harness, owner, wei_below, accepted):
    voter, silent = harness.edges(2)
    task_id = harness.create(min_turnout_bps=5000)
    voter.register(task_id, 2 * ETHER - wei_below)
    silent.register(task_id, 2 * ETHER + wei_below)
    owner.start(task_id)
    harness.updates(task_id, 1, [voter, silent])
    harness.scores(task_id, 1, {e: ballot([MILLION, MILLION]) for e in (voter, silent)})
    harness.tally(task_id, 1)
    harness.attest(task_id, 1, {voter: AGGREGATE})
    harness.mine_until_phase(task_id, Phase.FINALIZABLE)
    event = finalized(owner, owner.finalize(task_id))
    assert event.accepted is accepted
    assert event.attestStake == 2 * ETHER - wei_below


def test_disapproving_attestations_count_for_turnout_but_back_no_candidate(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    reject = Attestation(AGGREGATE.aggregate_hash, AGGREGATE.aggregate_cid, False)
    attestations = {e: (AGGREGATE if i == 0 else reject) for i, e in enumerate(edges)}
    receipt = harness.full_round(task_id, 1, edges, [1, 1, 1], attestations=attestations)
    event = finalized(owner, receipt)
    assert (event.accepted, event.approvingStake, event.attestStake) == (False, ETHER, 3 * ETHER)
    revealed = owner.round_events(task_id, 1, "AttestationRevealed")
    assert [e.approve for e in revealed] == [True, False, False]
    assert {e.candidate for e in revealed} == {AGGREGATE.candidate()}


def test_slashes_go_into_the_pool_and_the_next_rounds_budget(harness, owner):
    """Honest, invalid (every scorer marks it invalid), silent_update (commits, never reveals)
    and absent (skips the attestation): one slash each, added to the next round's budget."""
    edges = harness.edges(4)
    task_id = harness.started_task(edges, stake=2 * ETHER, rounds=2, pool=10 * ETHER)
    honest, invalid, silent_update, absent = edges
    for edge in edges:
        harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edge, update_of(task_id, 1, edge))
    for edge in (honest, invalid, absent):
        harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, edge)
    harness.mine_until_phase(task_id, Phase.SCORE_COMMIT)
    harness.scores(task_id, 1, {e: ballot([MILLION, 0, MILLION], valid=0b101) for e in edges})
    harness.tally(task_id, 1)
    harness.attest(task_id, 1, {e: AGGREGATE for e in (honest, invalid, silent_update)})
    pool_before = owner.task_funds(task_id).pool
    receipt = owner.finalize(task_id)
    assert slashes(owner, receipt) == {
        invalid.sender_address: [(SlashReason.INVALID_UPDATE, ETHER)],
        silent_update.sender_address: [(SlashReason.NOT_REVEALED, ETHER // 2)],
        absent.sender_address: [(SlashReason.ABSENT, ETHER // 4)],
    }
    slashed = ETHER + ETHER // 2 + ETHER // 4
    assert owner.stake_of(task_id, invalid.sender_address) == ETHER
    assert owner.stake_of(task_id, absent.sender_address) == 2 * ETHER - ETHER // 4
    event = finalized(owner, receipt)
    funds = owner.task_funds(task_id)
    assert funds.pool == pool_before - event.paid + slashed
    assert funds.carry == event.budget - event.paid + slashed
    assert funds.active_stake == 8 * ETHER - slashed
    harness.assert_funds_conserved([task_id], [e.sender_address for e in edges])
    second = harness.full_round(task_id, 2, edges, [MILLION] * 4)
    assert finalized(owner, second).budget == 5 * ETHER + funds.carry


def test_slashing_below_min_stake_deactivates_the_edge(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, stake=ETHER, rounds=3)
    harness.full_round(
        task_id, 1, edges, [1, 1, 1], ballots={e: ballot([1, 1, 1], 0b011) for e in edges}
    )
    cheater = owner.status(task_id, edges[2].sender_address)
    assert (cheater.stake, cheater.active) == (0, False)
    assert owner.status(task_id).active_edges == 2
    assert owner.task_funds(task_id).active_stake == 2 * ETHER
    with expect_revert("EdgeTuneNothingToWithdraw", account=edges[2].sender_address):
        edges[2].release_stake(task_id)


def test_last_round_finishes_the_task_and_the_rest_is_refundable(harness, owner, w3):
    edges = harness.edges(2)
    task_id = harness.started_task(edges, pool=10 * ETHER + 1)
    harness.full_round(task_id, 1, edges, [MILLION, 3 * MILLION])  # pays 1 + 3 and 0.5 + 0.5
    with expect_revert("EdgeTuneWrongPhase", required=Phase.FINISHED):
        owner.refund_pool(task_id)
    receipt = harness.full_round(task_id, 2, edges, [0, 0])  # no contribution, no agreement
    (finished,) = owner.receipt_events(receipt, "TaskFinished")
    assert (finished.globalHash, finished.globalCid) == (h("aggregate"), "bafyagg")
    assert owner.phase(task_id) == Phase.FINISHED
    with expect_revert("EdgeTuneWrongPhase", current=Phase.FINISHED, required=Phase.FINALIZABLE):
        owner.finalize(task_id)
    leftover = owner.task_funds(task_id).pool
    assert leftover == 5 * ETHER + 1  # round 2's whole budget (all medians 0) and the dust
    owner.refund_pool(task_id)
    assert owner.owed(owner.sender_address) == leftover
    for edge in edges:
        edge.release_stake(task_id)
        edge.withdraw()
    owner.withdraw()
    assert w3.eth.get_balance(owner.address) == 0
