"""Task creation, registration, start, cancel, exit, stake release, pool refund, withdraw."""

from dataclasses import replace

import pytest

from edgetune.chain.types import Phase

from .rounds import BASE_CONFIG, ETHER, expect_revert


def test_create_task_stores_config_and_funds(harness, owner, w3):
    task_id = harness.create(pool=10 * ETHER + 1)
    assert owner.task_count() == task_id == 1
    assert owner.task_config(task_id) == BASE_CONFIG
    funds = owner.task_funds(task_id)
    assert (funds.owner, funds.pool, funds.carry) == (owner.sender_address, 10 * ETHER + 1, 0)
    assert funds.reward_per_round == (10 * ETHER + 1) // BASE_CONFIG.rounds
    assert w3.eth.get_balance(owner.address) == 10 * ETHER + 1
    status = owner.status(task_id)
    assert (status.phase, status.round, status.global_hash) == (
        Phase.REGISTRATION, 1, BASE_CONFIG.initial_global_hash,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"max_edges": 0}, "maxEdges"),
        ({"max_edges": 65}, "maxEdges"),
        ({"commit_blocks": 0}, "phaseBlocks"),
        ({"vote_reveal_blocks": 0}, "phaseBlocks"),
        ({"max_samples": 0}, "maxSamples"),
        ({"min_turnout_bps": 10_001}, "minTurnoutBps"),
        ({"validator_share_bps": 10_001}, "validatorShareBps"),
    ],
)
def test_create_task_rejects_bad_config(harness, override, field):
    with expect_revert("EdgeTuneInvalidConfig", field=field.encode().ljust(32, b"\0")):
        harness.create(**override)


def test_create_task_rejects_empty_pool(harness):
    with expect_revert("EdgeTuneInvalidConfig", field=b"pool".ljust(32, b"\0")):
        harness.create(pool=0)


def test_quorum_at_or_below_half_is_refused_client_side():
    from edgetune.chain.types import InvalidTaskConfig

    with pytest.raises(InvalidTaskConfig, match="quorum_bps"):
        replace(BASE_CONFIG, quorum_bps=5000)


def test_register_records_stake_and_rejects_duplicates_and_low_stake(harness, owner):
    task_id = harness.create()
    edge, other = harness.edges(2)
    edge.register(task_id, 2 * ETHER)
    status = owner.status(task_id, edge.sender_address)
    assert (status.registered, status.active, status.stake) == (True, True, 2 * ETHER)
    assert owner.task_funds(task_id).active_stake == 2 * ETHER
    with expect_revert("EdgeTuneAlreadyRegistered", edge=edge.sender_address):
        edge.register(task_id, ETHER)
    with expect_revert("EdgeTuneStakeTooLow", stake=ETHER - 1, minStake=ETHER):
        other.register(task_id, ETHER - 1)
    with expect_revert("EdgeTuneUnknownTask", taskId=99):
        other.register(99, ETHER)


def test_registration_closes_when_full_and_round_one_opens(harness, owner):
    task_id = harness.create(max_edges=2)
    first, second, third = harness.edges(3)
    first.register(task_id, ETHER)
    second.register(task_id, ETHER)
    assert owner.phase(task_id) == Phase.UPDATE_COMMIT
    with expect_revert(
        "EdgeTuneWrongPhase", current=Phase.UPDATE_COMMIT, required=Phase.REGISTRATION
    ):
        third.register(task_id, ETHER)


def test_registration_deadline_opens_round_one_without_a_transaction(harness, owner):
    task_id = harness.create(registration_blocks=5)
    registration_end = owner.status(task_id).phase_end
    harness.mine(registration_end - harness.w3.eth.block_number)
    assert owner.phase(task_id) == Phase.REGISTRATION  # the deadline block still belongs to it
    harness.mine(1)
    status = owner.status(task_id)
    assert (status.phase, status.phase_end) == (
        Phase.UPDATE_COMMIT, registration_end + BASE_CONFIG.commit_blocks,
    )  # fmt: skip
    harness.mine(BASE_CONFIG.commit_blocks)
    assert owner.phase(task_id) == Phase.FINALIZABLE  # nobody committed: nothing to wait for


def test_only_owner_starts_or_cancels(harness, owner):
    task_id = harness.create()
    (edge,) = harness.edges(1)
    with expect_revert("EdgeTuneNotTaskOwner", taskId=task_id, caller=edge.sender_address):
        edge.start(task_id)
    with expect_revert("EdgeTuneNotTaskOwner"):
        edge.cancel(task_id)
    owner.start(task_id)
    assert owner.phase(task_id) == Phase.UPDATE_COMMIT
    with expect_revert("EdgeTuneWrongPhase", required=Phase.REGISTRATION):
        owner.cancel(task_id)


def test_cancel_releases_stakes_and_refunds_pool(harness, owner, w3):
    task_id = harness.create(pool=3 * ETHER)
    (edge,) = harness.edges(1)
    edge.register(task_id, ETHER)
    with expect_revert("EdgeTuneStakeLocked", edge=edge.sender_address):
        edge.release_stake(task_id)
    with expect_revert("EdgeTuneWrongPhase", required=Phase.FINISHED):
        owner.refund_pool(task_id)
    owner.cancel(task_id)
    assert owner.phase(task_id) == Phase.CANCELLED
    edge.release_stake(task_id)
    owner.refund_pool(task_id)
    assert owner.owed(edge.sender_address) == ETHER
    assert owner.owed(owner.sender_address) == 3 * ETHER
    with expect_revert("EdgeTuneNothingToRefund", taskId=task_id):
        owner.refund_pool(task_id)
    before = w3.eth.get_balance(edge.sender_address)
    receipt = edge.withdraw()
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(edge.sender_address) == before + ETHER - fee
    assert w3.eth.get_balance(owner.address) == 3 * ETHER
    with expect_revert("EdgeTuneNothingToWithdraw", account=edge.sender_address):
        edge.withdraw()


def test_exit_during_registration_frees_stake_at_once(harness, owner):
    task_id = harness.create()
    (edge,) = harness.edges(1)
    edge.register(task_id, ETHER)
    edge.request_exit(task_id)
    assert owner.task_funds(task_id).active_stake == 0
    edge.release_stake(task_id)
    assert owner.owed(edge.sender_address) == ETHER
    with expect_revert("EdgeTuneNotActiveEdge"):
        edge.request_exit(task_id)


def test_exit_mid_round_keeps_duties_until_the_round_is_finalized(harness, owner):
    edges = harness.edges(3)
    task_id = harness.started_task(edges)
    leaver = edges[2]
    leaver.request_exit(task_id)
    with expect_revert("EdgeTuneStakeLocked"):
        leaver.release_stake(task_id)
    assert owner.status(task_id).active_edges == 3
    harness.full_round(task_id, 1, edges, [100, 100, 100])
    assert owner.status(task_id).active_edges == 2
    leaver.release_stake(task_id)
    assert owner.stake_of(task_id, leaver.sender_address) == 0
    with expect_revert("EdgeTuneNotActiveEdge"):
        harness.commit(task_id, 2, leaver)
