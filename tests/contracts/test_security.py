"""Reentrancy on withdraw, commitment replay across rounds/tasks/senders, the weighted median."""

import pytest
from eth_utils import function_signature_to_4byte_selector

from edgetune.chain.compiler import load_artifact
from edgetune.chain.connect import send
from edgetune.chain.types import update_commitment, vote_commitment

from .rounds import ETHER, expect_revert, h


def deploy_helper(chain, name: str, *args):
    artifact = load_artifact(name)
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send(chain, factory.constructor(*args), chain.accounts[0])
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


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


def test_update_commitment_cannot_be_replayed_by_another_sender(harness, owner):
    honest, copier = harness.edges(2)
    task_id = harness.started_task([honest, copier])
    update = harness.commit(task_id, 1, honest)
    copied = update_commitment(
        harness.chain_id, owner.address, task_id, 1, honest.sender_address,
        update.update_hash, update.cid, update.samples, update.salt,
    )  # fmt: skip
    copier.commit_update(task_id, 1, copied)
    harness.mine_until_phase(task_id, "UPDATE_REVEAL")
    with expect_revert("EdgeTuneCommitmentMismatch", edge=copier.sender_address):
        copier.reveal_update(
            task_id, 1, update.update_hash, update.cid, update.samples, update.salt
        )


def test_update_commitment_cannot_be_replayed_in_a_later_round(harness, owner):
    edges = harness.edges(2)
    task_id = harness.started_task(edges)
    round_one = harness.commit(task_id, 1, edges[0])
    harness.commit(task_id, 1, edges[1])
    harness.reveal(task_id, 1, edges[0])
    harness.reveal(task_id, 1, edges[1])
    ballot = harness.agreeing_ballot([1, 1])
    harness.vote_all(task_id, 1, {e.sender_address: ballot for e in edges}, edges)
    owner.finalize(task_id)
    replayed = update_commitment(
        harness.chain_id, owner.address, task_id, 1, edges[0].sender_address,
        round_one.update_hash, round_one.cid, round_one.samples, round_one.salt,
    )  # fmt: skip
    edges[0].commit_update(task_id, 2, replayed)
    harness.commit(task_id, 2, edges[1])
    with expect_revert("EdgeTuneCommitmentMismatch"):
        edges[0].reveal_update(
            task_id, 2, round_one.update_hash, round_one.cid, round_one.samples, round_one.salt
        )


def test_update_commitment_cannot_be_replayed_in_another_task(harness, owner):
    edges = harness.edges(2)
    first = harness.started_task(edges)
    second = harness.started_task(edges)
    update = harness.commit(first, 1, edges[0])
    first_task_commitment = update_commitment(
        harness.chain_id, owner.address, first, 1, edges[0].sender_address,
        update.update_hash, update.cid, update.samples, update.salt,
    )  # fmt: skip
    edges[0].commit_update(second, 1, first_task_commitment)
    harness.commit(second, 1, edges[1])
    with expect_revert("EdgeTuneCommitmentMismatch", taskId=second):
        edges[0].reveal_update(
            second, 1, update.update_hash, update.cid, update.samples, update.salt
        )


def test_vote_commitment_cannot_be_copied(harness, owner):
    honest, copier = harness.edges(2)
    task_id = harness.started_task([honest, copier])
    harness.run_updates(task_id, 1, [honest, copier])
    ballot = harness.agreeing_ballot([5, 5])
    salt = harness.commit_vote(task_id, 1, honest, ballot)
    copier.commit_vote(
        task_id, 1, vote_commitment(harness.chain_id, owner.address, task_id, 1,
                                    honest.sender_address, ballot, salt)
    )  # fmt: skip
    harness.mine_until_phase(task_id, "VOTE_REVEAL")
    with expect_revert("EdgeTuneCommitmentMismatch", edge=copier.sender_address):
        copier.reveal_vote(task_id, 1, ballot, salt)


def test_python_commitments_match_the_contract(harness, owner):
    edge = harness.edges(1)[0].sender_address
    args = (3, 2, edge, h("u"), "bafkcid", 42, h("salt"))
    on_chain = owner.contract.functions.updateCommitment(*args).call()
    assert on_chain == update_commitment(harness.chain_id, owner.address, *args)
    ballot = harness.agreeing_ballot([-7, 0, 2**31 - 1], valid=0b111, included=0b101)
    on_chain = owner.contract.functions.voteCommitment(3, 2, edge, ballot.as_tuple(), h("s")).call()
    assert on_chain == vote_commitment(harness.chain_id, owner.address, 3, 2, edge, ballot, h("s"))


@pytest.fixture
def median(harness):
    return deploy_helper(harness.chain, "WeightedMedianHarness").functions.lowerMedian


@pytest.mark.parametrize(
    ("scores", "weights", "expected"),
    [
        ([3, 1, 2], [1, 1, 1], 2),  # odd count
        ([4, 1, 3, 2], [1, 1, 1, 1], 2),  # even count: the lower median
        ([5, 5, 1, 9], [1, 1, 1, 1], 5),  # ties
        ([1, 100, 50], [10, 1, 1], 1),  # a heavy stake outweighs two light ones
        ([-3, -1, -2], [1, 1, 5], -2),  # negative scores order correctly
        ([-(2**31), 2**31 - 1], [1, 2], 2**31 - 1),  # int32 extremes
        ([7, 8], [0, 0], 0),  # no weight: no median
        ([], [], 0),
    ],
)
def test_weighted_median(median, scores, weights, expected):
    assert median(scores, weights).call() == expected
