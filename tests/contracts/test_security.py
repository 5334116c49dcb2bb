"""Reentrancy on withdraw, and commitments that cannot be replayed by another sender, in another
round, task, stage or contract; the Python commitment is the contract's, bit for bit."""

import pytest
from eth_utils import function_signature_to_4byte_selector

from edgetune.chain.connect import send
from edgetune.chain.deploy import deploy
from edgetune.chain.types import Phase, commitment, update_payload

from .rounds import (
    AGGREGATE,
    ETHER,
    TaskHarness,
    ballot,
    deploy_helper,
    expect_revert,
    h,
    update_of,
)

STAGES = [Phase.UPDATE_COMMIT, Phase.SCORE_COMMIT, Phase.ATTEST_COMMIT]


def test_withdraw_cannot_be_reentered(harness, owner, w3):
    attacker = deploy_helper(harness.chain, "ReentrantWithdrawer", owner.address)
    task_id = harness.create()
    (edge,) = harness.edges(1)
    send(harness.chain, attacker.functions.becomeOwed(task_id), edge.sender, value=ETHER)
    assert owner.owed(attacker.address) == ETHER
    send(harness.chain, attacker.functions.attack(), edge.sender, gas=500_000)
    assert attacker.functions.reentryAttempts().call() == 1
    lock_error = function_signature_to_4byte_selector("ReentrancyGuardReentrantCall()")
    assert attacker.functions.lastRevertData().call() == lock_error
    assert w3.eth.get_balance(attacker.address) == ETHER  # paid exactly once
    assert owner.owed(attacker.address) == 0
    assert w3.eth.get_balance(owner.address) == 10 * ETHER  # only the pool is left


def _to_stage(harness, task_id: int, edges, stage: Phase) -> None:
    """Plays round 1 honestly up to the commit phase `stage`."""
    if stage >= Phase.SCORE_COMMIT:
        harness.updates(task_id, 1, edges)
    if stage >= Phase.ATTEST_COMMIT:
        harness.scores(task_id, 1, {e: ballot([1] * len(edges)) for e in edges})
        harness.tally(task_id, 1)
    assert harness.owner.phase(task_id) == stage


def _values(task_id: int, stage: Phase, edge, edges):
    if stage == Phase.UPDATE_COMMIT:
        return update_of(task_id, 1, edge)
    return ballot([1] * len(edges)) if stage == Phase.SCORE_COMMIT else AGGREGATE


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_commitment_copied_by_another_sender_does_not_open(harness, owner, stage):
    """The copier commits the honest edge's commitment and, once it is opened, replays the
    values and salt: the commitment binds the sender, so it cannot open it."""
    honest, copier = edges = harness.edges(2)
    task_id = harness.started_task(edges)
    _to_stage(harness, task_id, edges, stage)
    digest = harness.commit(task_id, 1, stage, honest, _values(task_id, stage, honest, edges))
    copier.commit(task_id, 1, stage, digest)
    harness.reveal(task_id, 1, stage, honest)
    opened = harness.opened[(task_id, 1, stage, honest.sender_address)]
    harness.opened[(task_id, 1, stage, copier.sender_address)] = opened
    with expect_revert(
        "EdgeTuneCommitmentMismatch", taskId=task_id, round=1, edge=copier.sender_address,
        stage=stage,
    ):  # fmt: skip
        harness.reveal(task_id, 1, stage, copier)


def test_an_update_commitment_cannot_be_replayed_in_a_later_round(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges, stake=2 * ETHER)  # stays active after one slash
    values = update_of(task_id, 1, edges[0])
    digest = harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edges[0], values)
    salt = harness.opened[(task_id, 1, Phase.UPDATE_COMMIT, edges[0].sender_address)].salt
    harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edges[1], update_of(task_id, 1, edges[1]))
    harness.mine_until_phase(task_id, Phase.FINALIZABLE)  # nobody reveals: round 1 ends
    owner.finalize(task_id)
    edges[0].commit(task_id, 2, Phase.UPDATE_COMMIT, digest)  # round 2's slot is fresh
    harness.commit(task_id, 2, Phase.UPDATE_COMMIT, edges[1], update_of(task_id, 2, edges[1]))
    with expect_revert("EdgeTuneCommitmentMismatch", round=2, edge=edges[0].sender_address):
        edges[0].reveal_update(task_id, 2, *values, salt)


def test_an_update_commitment_cannot_be_replayed_in_another_task(harness, owner):
    edges = harness.edges(2)
    first = harness.started_task(edges)
    second = harness.started_task(edges)
    values = update_of(first, 1, edges[0])
    digest = harness.commit(first, 1, Phase.UPDATE_COMMIT, edges[0], values)
    salt = harness.opened[(first, 1, Phase.UPDATE_COMMIT, edges[0].sender_address)].salt
    edges[0].commit(second, 1, Phase.UPDATE_COMMIT, digest)
    harness.commit(second, 1, Phase.UPDATE_COMMIT, edges[1], update_of(second, 1, edges[1]))
    with expect_revert("EdgeTuneCommitmentMismatch", taskId=second, edge=edges[0].sender_address):
        edges[0].reveal_update(second, 1, *values, salt)


def test_an_update_commitment_cannot_be_replayed_on_another_contract(harness, owner):
    """Same chain, same task id, same round, same sender: only the contract differs."""
    other, _ = deploy(harness.chain, harness.chain.accounts[0])
    mirror = TaskHarness(harness.chain, other)
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    assert mirror.started_task([other.as_sender(e.sender) for e in edges]) == task_id
    values = update_of(task_id, 1, edges[0])
    digest = harness.commit(task_id, 1, Phase.UPDATE_COMMIT, edges[0], values)
    salt = harness.opened[(task_id, 1, Phase.UPDATE_COMMIT, edges[0].sender_address)].salt
    replayer = other.as_sender(edges[0].sender)
    replayer.commit(task_id, 1, Phase.UPDATE_COMMIT, digest)
    other.as_sender(edges[1].sender).commit(task_id, 1, Phase.UPDATE_COMMIT, h("x"))
    with expect_revert("EdgeTuneCommitmentMismatch", edge=edges[0].sender_address):
        replayer.reveal_update(task_id, 1, *values, salt)


def test_a_commitment_cannot_be_replayed_in_another_stage(harness, owner):
    """The update commitment cannot serve as the score commitment (refused as reused: the slot
    still holds it), and as the attestation commitment it does not open (it binds the stage)."""
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    a = edges[0]
    values = {e: update_of(task_id, 1, e) for e in edges}
    digests = {e: harness.commit(task_id, 1, Phase.UPDATE_COMMIT, e, values[e]) for e in edges}
    harness.mine_until_phase(task_id, Phase.UPDATE_REVEAL)
    for edge in edges:
        harness.reveal(task_id, 1, Phase.UPDATE_COMMIT, edge)
    with expect_revert(
        "EdgeTuneReusedCommitment", taskId=task_id, round=1, edge=a.sender_address,
        commitment=digests[a],
    ):  # fmt: skip
        a.commit(task_id, 1, Phase.SCORE_COMMIT, digests[a])
    harness.scores(task_id, 1, {e: ballot([1, 1]) for e in edges})
    harness.tally(task_id, 1)
    a.commit(task_id, 1, Phase.ATTEST_COMMIT, digests[a])  # differs from the score commitment
    harness.commit(task_id, 1, Phase.ATTEST_COMMIT, edges[1], AGGREGATE)
    opened = harness.opened[(task_id, 1, Phase.UPDATE_COMMIT, a.sender_address)]
    with expect_revert("EdgeTuneCommitmentMismatch", stage=Phase.ATTEST_COMMIT):
        a.reveal_attestation(task_id, 1, AGGREGATE, opened.salt)


def test_python_commitments_match_the_contract(harness, owner):
    edge = harness.edges(1)[0].sender_address
    payloads = {
        Phase.UPDATE_COMMIT: update_payload(h("u"), "bafkcid"),
        Phase.SCORE_COMMIT: ballot([-7, 0, 2**31 - 1], valid=0b111, copies=0b100).payload(),
        Phase.ATTEST_COMMIT: AGGREGATE.payload(),
    }
    for stage, payload in payloads.items():
        args = (3, 2, int(stage), edge, payload, h("salt"))
        on_chain = owner.contract.functions.commitmentOf(*args).call()
        ours = commitment(
            harness.chain.chain_id, owner.address, 3, 2, stage, edge, payload, h("salt")
        )
        assert on_chain == ours, stage.name
    assert len({commitment(1, owner.address, 1, 1, s, edge, h("p"), h("s")) for s in STAGES}) == 3
