"""End to end on a local anvil: six edges (among them a free rider, a copier and a lazy
validator, see conftest.py) x 2 rounds of real LoRA training, content-addressed storage and the
contract. Every on-chain outcome is recomputed here from the stored bytes and the events alone
(tests/agent/federations.py restates the rules), independently of the agents' code paths."""

import hashlib

import pytest

from edgetune.agent.federation import FederationConfig, run_in_process
from edgetune.chain.history import load_history
from edgetune.learning import TrainConfig, adapter_from_bytes, adapter_to_bytes, aggregate
from edgetune.storage import content_cid, fetch_verified, same_cid

from .conftest import COPIER
from .federations import expected_rewards, expected_tally, rewards_of

pytestmark = pytest.mark.anvil  # the shared federation runs on a local anvil


def test_every_round_is_accepted_and_the_task_finishes(mixed_federation, mixed_chronicle):
    finalized = mixed_chronicle.events("RoundFinalized")
    assert [(e.round, e.accepted) for e in finalized] == [(1, True), (2, True)]
    status = mixed_federation.owner.status(mixed_federation.task.task_id)
    assert status.phase.name == "FINISHED"
    # every edge revealed an update, a ballot and an attestation in every round
    for record in mixed_chronicle.rounds:
        assert len(record.reveals) == len(record.ballots) == len(record.attestations) == 6


def test_global_model_is_an_independent_aggregate_of_the_included_ipfs_bytes(
    mixed_federation, mixed_chronicle
):
    result = mixed_federation
    shapes = result.agents[0].learner.shapes()
    trained = result.agents[0].learner.shapes(trained_only=True)
    previous_hash = result.task.config.initial_global_hash
    previous_cid = result.task.config.initial_global_cid
    for record in mixed_chronicle.rounds:
        previous = adapter_from_bytes(
            fetch_verified(result.store, previous_cid, previous_hash), shapes
        )
        included = [
            adapter_from_bytes(fetch_verified(result.store, u.cid, u.updateHash), trained)
            for u in record.reveals
            if record.tallied.includedMask >> u.index & 1
        ]
        assert included, f"round {record.round}: nothing included"
        data = adapter_to_bytes(aggregate(previous, included))  # reveal order, as validators do
        finalized = record.finalized
        assert hashlib.sha256(data).digest() == finalized.globalHash
        assert same_cid(content_cid(data), finalized.globalCid)
        # Honest validators never split: everyone attested this one (hash, CID), lazy included.
        attested = {(a.aggregateHash, a.aggregateCid) for a in record.attestations}
        assert attested == {(finalized.globalHash, finalized.globalCid)}
        previous_hash, previous_cid = finalized.globalHash, finalized.globalCid


def test_the_tally_recomputed_from_the_revealed_scores_matches_the_chain(
    mixed_federation, mixed_chronicle
):
    stakes = mixed_chronicle.stakes_by_round()
    tau = mixed_federation.task.config.harm_tolerance
    copier = mixed_federation.agents[COPIER].address
    for record in mixed_chronicle.rounds:
        expected = expected_tally(record.ballots, stakes[record.round], len(record.reveals), tau)
        tallied = record.tallied
        assert list(tallied.medians) == expected.medians, f"round {record.round}"
        assert list(tallied.agreements) == expected.agreements, f"round {record.round}"
        assert (tallied.validMask, tallied.copyMask, tallied.includedMask) == (
            expected.valid,
            expected.copies,
            expected.included,
        )
        assert tallied.scoreStake == sum(stakes[record.round][b.scorer] for b in record.ballots)
        # Not vacuous: the near-copy is flagged and left out, every other update included.
        index = record.authors.index(copier)
        assert expected.copies == 1 << index
        assert expected.included == (1 << 6) - 1 - (1 << index)


def test_rewards_recomputed_from_the_events_match_every_credit_to_the_wei(
    mixed_federation, mixed_chronicle
):
    result = mixed_federation
    config = result.task.config
    reward_per_round = result.owner.task_funds(result.task.task_id).reward_per_round
    stakes = mixed_chronicle.stakes_by_round()
    carry = 0
    for record in mixed_chronicle.rounds:
        finalized = record.finalized
        assert finalized.budget == reward_per_round + carry
        tally = expected_tally(
            record.ballots, stakes[record.round], len(record.reveals), config.harm_tolerance
        )
        credited = rewards_of(record)
        assert credited == expected_rewards(record, tally, config.validator_share_bps)
        assert sum(credited.values()) == finalized.paid
        assert {kind for _, kind in credited} == {0, 1}  # both pools were paid
        carry = finalized.budget - finalized.paid + sum(s.amount for s in record.slashes)


def test_funds_are_conserved(mixed_federation, mixed_chronicle):
    result = mixed_federation
    owner, task_id = result.owner, result.task.task_id
    edges = [agent.address for agent in result.agents]
    stakes = sum(owner.stake_of(task_id, edge) for edge in edges)
    owed = sum(owner.owed(account) for account in [*edges, owner.sender_address])
    pool = owner.task_funds(task_id).pool
    assert result.chain.w3.eth.get_balance(owner.address) == stakes + owed + pool
    (created,) = mixed_chronicle.events("TaskCreated")
    paid = sum(e.paid for e in mixed_chronicle.events("RoundFinalized"))
    credited = sum(e.amount for e in mixed_chronicle.events("RewardCredited"))
    slashed = sum(e.amount for e in mixed_chronicle.events("Slashed"))
    assert pool == created.pool - paid + slashed
    assert credited == paid == owed  # nothing withdrawn yet: every credit is still owed
    registered = sum(e.stake for e in mixed_chronicle.events("EdgeRegistered"))
    assert stakes == registered - slashed


def test_the_global_model_improves_on_the_held_out_test_set(mixed_federation):
    loss = {round_: metrics[0] for round_, metrics in mixed_federation.test_metrics.items()}
    assert loss[2] < loss[1] < loss[0], f"test loss by round: {loss}"


def test_a_second_federation_in_the_same_workdir_starts_from_fresh_agent_state(tmp_path):
    # The embedded chain deploys at the same address and task ids restart at 1, so the first
    # run's saved commitments (two scores) would otherwise be reused in the second (one update).
    for edges in (2, 1):
        config = FederationConfig(
            edges=edges,
            rounds=1,
            train=TrainConfig(steps=3),
            validation_per_class=1,
            test_per_class=1,
            workdir=tmp_path,
        )
        result = run_in_process(config, log=lambda _: None)
        history = load_history(result.owner, result.task.task_id, result.deployment_block)
        assert [(r.accepted, r.updates) for r in history.rounds] == [(True, edges)]
