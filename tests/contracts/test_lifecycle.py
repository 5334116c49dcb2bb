"""Task creation and validation, registration (allowlist, full tasks), start, cancel, exits,
stake release, pool refund and withdraw."""

from dataclasses import replace

import pytest

from edgetune.chain.types import InvalidTaskConfig, Phase

from .rounds import BASE_CONFIG, ETHER, bytes32, expect_revert, update_of


def test_create_task_stores_config_and_funds(harness, owner, w3):
    task_id = harness.create(pool=10 * ETHER + 1)
    assert owner.task_count() == task_id == 1
    assert owner.task_config(task_id) == BASE_CONFIG
    funds = owner.task_funds(task_id)
    assert (funds.owner, funds.pool, funds.carry) == (owner.sender_address, 10 * ETHER + 1, 0)
    assert funds.reward_per_round == (10 * ETHER + 1) // BASE_CONFIG.rounds
    assert w3.eth.get_balance(owner.address) == 10 * ETHER + 1
    status = owner.status(task_id)
    assert (status.phase, status.round, status.global_hash, status.global_cid) == (
        Phase.REGISTRATION, 1, BASE_CONFIG.initial_global_hash, BASE_CONFIG.initial_global_cid,
    )  # fmt: skip
    assert status.phase_end == w3.eth.block_number + BASE_CONFIG.registration_blocks
    assert owner.max_edges() == 256


@pytest.mark.parametrize(
    ("fields", "pool", "field", "value"),
    [
        ({"rounds": 0}, ETHER, "rounds", 0),
        ({"rounds": 3}, 2, "pool", 2),  # less than one wei per round
        ({"rounds": 1}, 0, "pool", 0),
        ({"maxEdges": 0}, ETHER, "maxEdges", 0),
        ({"maxEdges": 257}, ETHER, "maxEdges", 257),
        ({"quorumBps": 5000}, ETHER, "quorumBps", 5000),  # half: two candidates could both pass
        ({"quorumBps": 10_001}, ETHER, "quorumBps", 10_001),
        ({"minTurnoutBps": 10_001}, ETHER, "minTurnoutBps", 10_001),
        ({"validatorShareBps": 10_001}, ETHER, "validatorShareBps", 10_001),
        ({"commitBlocks": 0}, ETHER, "phaseBlocks", 0),  # the value is the stage index
        ({"revealBlocks": 0}, ETHER, "phaseBlocks", 1),
        ({"scoreCommitBlocks": 0}, ETHER, "phaseBlocks", 2),
        ({"scoreRevealBlocks": 0}, ETHER, "phaseBlocks", 3),
        ({"tallyBlocks": 0}, ETHER, "phaseBlocks", 4),
        # one block per tally part of a full round: 33 edges take 2 parts, 256 take 8
        ({"maxEdges": 33, "tallyBlocks": 1}, ETHER, "tallyBlocks", 1),
        ({"maxEdges": 256, "tallyBlocks": 7}, ETHER, "tallyBlocks", 7),
        ({"initialGlobalCid": "b" * 129}, ETHER, "initialGlobalCid", 129),
        ({"attestCommitBlocks": 0}, ETHER, "phaseBlocks", 5),
        ({"attestRevealBlocks": 0}, ETHER, "phaseBlocks", 6),
        ({"minStake": 0, "slashAbsent": 0, "slashNonReveal": 0, "slashInvalid": 0}, ETHER,
         "minStake", 0),
        ({"slashAbsent": ETHER + 1}, ETHER, "slashAbsent", ETHER + 1),
        ({"slashNonReveal": ETHER + 1}, ETHER, "slashNonReveal", ETHER + 1),
        ({"slashInvalid": ETHER + 1}, ETHER, "slashInvalid", ETHER + 1),
    ],
)  # fmt: skip
def test_create_task_names_the_bad_field_and_its_value(harness, owner, fields, pool, field, value):
    with expect_revert("EdgeTuneInvalidConfig", field=bytes32(field), value=value):
        harness.create_raw(pool, **fields)
    assert owner.task_count() == 0


def test_largest_valid_config_is_accepted(harness, owner):
    """The bounds themselves are allowed: 256 edges, 100% quorum, turnout and validator share,
    slashes equal to the minimum stake, one block per phase (per part for the tally), a
    128-byte CID, one wei per round."""
    ones = {
        f"{name}Blocks": 1
        for name in ("commit", "reveal", "scoreCommit", "scoreReveal", "tally", "attestCommit",
                     "attestReveal")
    }  # fmt: skip
    harness.create_raw(
        3, rounds=3, maxEdges=256, quorumBps=10_000, minTurnoutBps=10_000,
        validatorShareBps=10_000, slashAbsent=ETHER, slashNonReveal=ETHER, slashInvalid=ETHER,
        initialGlobalCid="b" * 128, **{**ones, "tallyBlocks": 8},
    )  # fmt: skip
    assert owner.task_funds(1).reward_per_round == 1


def test_client_refuses_what_the_contract_would_refuse():
    with pytest.raises(InvalidTaskConfig, match="quorum_bps"):
        replace(BASE_CONFIG, quorum_bps=5000)
    with pytest.raises(InvalidTaskConfig, match="rounds"):
        replace(BASE_CONFIG, rounds=0)
    with pytest.raises(InvalidTaskConfig, match="slash_invalid"):
        replace(BASE_CONFIG, slash_invalid=BASE_CONFIG.min_stake + 1)
    with pytest.raises(InvalidTaskConfig, match=r"tally_blocks must be at least 8 .* got 7"):
        replace(BASE_CONFIG, max_edges=256, tally_blocks=7)
    with pytest.raises(InvalidTaskConfig, match="initial_global_cid is longer than 128 bytes"):
        replace(BASE_CONFIG, initial_global_cid="b" * 129)


def test_register_records_stake_and_rejects_duplicates_and_low_stake(harness, owner):
    task_id = harness.create()
    edge, other = harness.edges(2)
    receipt = edge.register(task_id, 2 * ETHER)
    (event,) = owner.receipt_events(receipt, "EdgeRegistered")
    assert (event.taskId, event.edge, event.stake) == (task_id, edge.sender_address, 2 * ETHER)
    status = owner.status(task_id, edge.sender_address)
    assert (status.registered, status.active, status.stake) == (True, True, 2 * ETHER)
    assert owner.task_funds(task_id).active_stake == 2 * ETHER
    with expect_revert("EdgeTuneAlreadyRegistered", taskId=task_id, edge=edge.sender_address):
        edge.register(task_id, ETHER)
    with expect_revert("EdgeTuneStakeTooLow", taskId=task_id, stake=ETHER - 1, minStake=ETHER):
        other.register(task_id, ETHER - 1)
    with expect_revert("EdgeTuneUnknownTask", taskId=99):
        other.register(99, ETHER)
    assert owner.edges_of(task_id) == [edge.sender_address]


def test_full_task_refuses_more_edges_but_keeps_registering(harness, owner):
    task_id = harness.create(max_edges=2)
    first, second, third = harness.edges(3)
    first.register(task_id, ETHER)
    second.register(task_id, ETHER)
    assert owner.phase(task_id) == Phase.REGISTRATION  # no auto-start when full
    with expect_revert("EdgeTuneTaskFull", taskId=task_id, maxEdges=2):
        third.register(task_id, ETHER)
    owner.start(task_id)
    with expect_revert(
        "EdgeTuneWrongPhase", taskId=task_id, current=Phase.UPDATE_COMMIT,
        required=Phase.REGISTRATION,
    ):  # fmt: skip
        third.register(task_id, ETHER)


def test_allowlisted_task_refuses_strangers(harness, owner):
    member, stranger = harness.edges(2)
    task_id = harness.create(allowlist=[member.sender_address])
    with expect_revert("EdgeTuneNotAllowed", taskId=task_id, edge=stranger.sender_address):
        stranger.register(task_id, ETHER)
    member.register(task_id, ETHER)
    assert owner.edges_of(task_id) == [member.sender_address]


def test_allowlist_is_announced_at_creation(harness, owner):
    members = harness.edges(2)
    _, receipt = owner.create_task(BASE_CONFIG, ETHER, [m.sender_address for m in members])
    announced = [e.edge for e in owner.receipt_events(receipt, "EdgeAllowed")]
    assert announced == [m.sender_address for m in members]


def test_registration_deadline_opens_round_one_without_a_transaction(harness, owner):
    task_id = harness.create(registration_blocks=5)
    registration_end = owner.status(task_id).phase_end
    harness.mine(registration_end - harness.w3.eth.block_number)
    assert owner.phase(task_id) == Phase.REGISTRATION  # the deadline block still belongs to it
    harness.mine(1)
    status = owner.status(task_id)
    assert (status.phase, status.round, status.phase_end) == (
        Phase.UPDATE_COMMIT, 1, registration_end + BASE_CONFIG.commit_blocks,
    )  # fmt: skip
    harness.mine(BASE_CONFIG.commit_blocks)
    assert owner.phase(task_id) == Phase.FINALIZABLE  # nobody committed: nothing to wait for


def test_only_owner_starts_or_cancels(harness, owner):
    task_id = harness.create()
    (edge,) = harness.edges(1)
    edge.register(task_id, ETHER)
    with expect_revert("EdgeTuneNotTaskOwner", taskId=task_id, caller=edge.sender_address):
        edge.start(task_id)
    with expect_revert("EdgeTuneNotTaskOwner", taskId=task_id, caller=edge.sender_address):
        edge.cancel(task_id)
    with expect_revert("EdgeTuneUnknownTask", taskId=7):
        owner.start(7)
    receipt = owner.start(task_id)
    (started,) = owner.receipt_events(receipt, "TaskStarted")
    assert (started.edges, started.activeStake) == (1, ETHER)
    status = owner.status(task_id)
    assert (status.phase, status.phase_end) == (
        Phase.UPDATE_COMMIT, receipt["blockNumber"] - 1 + BASE_CONFIG.commit_blocks,
    )  # fmt: skip
    with expect_revert(
        "EdgeTuneWrongPhase", current=Phase.UPDATE_COMMIT, required=Phase.REGISTRATION
    ):
        owner.cancel(task_id)
    with expect_revert("EdgeTuneWrongPhase", required=Phase.REGISTRATION):
        owner.start(task_id)


def test_cancel_releases_stakes_and_refunds_pool_to_the_wei(harness, owner, w3):
    task_id = harness.create(pool=3 * ETHER + 7)
    (edge,) = harness.edges(1)
    edge.register(task_id, ETHER + 5)
    with expect_revert("EdgeTuneStakeLocked", taskId=task_id, edge=edge.sender_address):
        edge.release_stake(task_id)
    with expect_revert("EdgeTuneWrongPhase", current=Phase.REGISTRATION, required=Phase.FINISHED):
        owner.refund_pool(task_id)
    with expect_revert("EdgeTuneNotTaskOwner", caller=edge.sender_address):
        edge.refund_pool(task_id)
    owner.cancel(task_id)
    assert owner.phase(task_id) == Phase.CANCELLED
    with expect_revert("EdgeTuneNotActiveEdge", edge=edge.sender_address):
        edge.request_exit(task_id)  # nothing to exit from
    (released,) = owner.receipt_events(edge.release_stake(task_id), "StakeReleased")
    assert released.amount == ETHER + 5
    (refunded,) = owner.receipt_events(owner.refund_pool(task_id), "PoolRefunded")
    assert (refunded.owner, refunded.amount) == (owner.sender_address, 3 * ETHER + 7)
    assert owner.owed(edge.sender_address) == ETHER + 5
    assert owner.owed(owner.sender_address) == 3 * ETHER + 7
    with expect_revert("EdgeTuneNothingToRefund", taskId=task_id):
        owner.refund_pool(task_id)
    with expect_revert("EdgeTuneNothingToWithdraw", account=edge.sender_address):
        edge.release_stake(task_id)
    before = w3.eth.get_balance(edge.sender_address)
    receipt = edge.withdraw()
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(edge.sender_address) == before + ETHER + 5 - fee
    assert w3.eth.get_balance(owner.address) == 3 * ETHER + 7
    with expect_revert("EdgeTuneNothingToWithdraw", account=edge.sender_address):
        edge.withdraw()
    owner.withdraw()
    assert w3.eth.get_balance(owner.address) == 0


def test_exit_during_registration_frees_the_slot_and_credits_the_stake(harness, owner):
    task_id = harness.create(max_edges=3)
    a, b, c, d = harness.edges(4)
    for edge in (a, b, c):
        edge.register(task_id, ETHER + 1)
    (left,) = owner.receipt_events(a.request_exit(task_id), "EdgeLeft")
    assert (left.edge, left.stake) == (a.sender_address, ETHER + 1)
    assert owner.edges_of(task_id) == [c.sender_address, b.sender_address]  # swap and pop
    assert owner.owed(a.sender_address) == ETHER + 1  # credited at once, nothing to release
    assert owner.status(task_id, a.sender_address).registered is False
    funds = owner.task_funds(task_id)
    assert (funds.active_stake, owner.status(task_id).active_edges) == (2 * ETHER + 2, 2)
    with expect_revert("EdgeTuneNotActiveEdge", edge=a.sender_address):
        a.request_exit(task_id)
    with expect_revert("EdgeTuneNothingToWithdraw", account=a.sender_address):
        a.release_stake(task_id)
    d.register(task_id, ETHER)  # the freed slot
    c.request_exit(task_id)  # the last one leaves: the moved index stays consistent
    b.request_exit(task_id)
    assert owner.edges_of(task_id) == [d.sender_address]
    harness.assert_funds_conserved([task_id], [e.sender_address for e in (a, b, c, d)])


def test_exit_mid_round_keeps_duties_until_the_round_is_finalized(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges, rounds=3)
    leaver = edges[2]
    (event,) = owner.receipt_events(leaver.request_exit(task_id), "ExitRequested")
    assert (event.edge, event.round) == (leaver.sender_address, 1)
    with expect_revert("EdgeTuneNotActiveEdge", edge=leaver.sender_address):
        leaver.request_exit(task_id)  # already exiting
    with expect_revert("EdgeTuneStakeLocked", edge=leaver.sender_address):
        leaver.release_stake(task_id)
    assert owner.status(task_id).active_edges == 3
    harness.full_round(task_id, 1, edges, [100_000, 100_000, 100_000])
    assert owner.status(task_id).active_edges == 2
    assert owner.task_funds(task_id).active_stake == 2 * ETHER
    owed = owner.owed(leaver.sender_address)
    assert owed > 0  # it did its round's duties and was paid for them
    leaver.release_stake(task_id)
    assert owner.stake_of(task_id, leaver.sender_address) == 0
    assert owner.owed(leaver.sender_address) == owed + ETHER
    with expect_revert("EdgeTuneNotActiveEdge", edge=leaver.sender_address):
        leaver.commit(task_id, 2, Phase.UPDATE_COMMIT, b"\1" * 32)
    # The two who stay close the commit phase early by themselves now.
    for edge in edges[:2]:
        harness.commit(task_id, 2, Phase.UPDATE_COMMIT, edge, update_of(task_id, 2, edge))
    assert owner.phase(task_id) == Phase.UPDATE_REVEAL


def test_stake_is_locked_while_running_and_released_when_finished(harness, owner, w3):
    edges = harness.edges(2)
    task_id = harness.started_task(edges, rounds=1, pool=ETHER)
    with expect_revert("EdgeTuneStakeLocked", taskId=task_id, edge=edges[0].sender_address):
        edges[0].release_stake(task_id)
    harness.full_round(task_id, 1, edges, [100_000, 300_000])
    assert owner.phase(task_id) == Phase.FINISHED
    with expect_revert("EdgeTuneNotActiveEdge"):
        edges[0].request_exit(task_id)
    for edge in edges:
        owed = owner.owed(edge.sender_address)
        edge.release_stake(task_id)
        assert owner.owed(edge.sender_address) == owed + ETHER
        assert owner.status(task_id, edge.sender_address).active is False
    assert owner.task_funds(task_id).active_stake == 0
    harness.assert_funds_conserved([task_id], [e.sender_address for e in edges])
