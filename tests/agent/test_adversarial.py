"""A poisoner: its update is well formed (so valid, and not slashed) but destroys the model. The
on-chain tally must leave it out of the aggregate, so the round still passes, and it earns no
trainer reward. Three edges of real LoRA training, one round."""

import hashlib
from pathlib import Path

import pytest

from edgetune.agent.federation import FederationConfig
from edgetune.chain.types import SlashReason
from edgetune.learning import TrainConfig, adapter_from_bytes, adapter_to_bytes, aggregate
from edgetune.storage import fetch_verified

from .federations import Chronicle, expected_tally, run_federation

POISONER = 2


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    config = FederationConfig(
        edges=3,
        rounds=1,
        poisoners=1,
        train=TrainConfig(steps=10),
        validation_per_class=2,
        test_per_class=1,
        workdir=Path(tmp_path_factory.mktemp("poisoned")),
    )
    assert config.behaviour(POISONER) == "poisoner"
    result = run_federation(config)
    return result, Chronicle(result)


def test_the_tally_leaves_the_poisoned_update_out_and_the_round_passes(poisoned):
    result, chronicle = poisoned
    (record,) = chronicle.rounds
    poisoner = result.agents[POISONER].address
    index = record.authors.index(poisoner)
    tau = result.task.config.harm_tolerance
    # Every validator, the poisoner's own included, scored it far below -tau ...
    scores = [b.scores[index] for b in record.ballots]
    assert len(scores) == 3 and max(scores) < -tau, scores
    # ... so its median (recomputed here from the ballots) excludes it, though it is valid.
    stakes = chronicle.stakes_by_round()[1]
    expected = expected_tally(record.ballots, stakes, len(record.reveals), tau)
    assert list(record.tallied.medians) == expected.medians
    assert expected.medians[index] < -tau
    assert record.tallied.validMask == 0b111
    assert record.tallied.includedMask == expected.included == 0b111 & ~(1 << index)
    assert record.finalized.accepted
    # The accepted global is the aggregate of the honest updates alone.
    shapes = result.agents[0].learner.shapes()
    trained = result.agents[0].learner.shapes(trained_only=True)
    config = result.task.config
    previous = adapter_from_bytes(
        fetch_verified(result.store, config.initial_global_cid, config.initial_global_hash), shapes
    )
    honest = [
        adapter_from_bytes(fetch_verified(result.store, u.cid, u.updateHash), trained)
        for u in record.reveals
        if u.edge != poisoner
    ]
    data = adapter_to_bytes(aggregate(previous, honest))
    assert hashlib.sha256(data).digest() == record.finalized.globalHash
    assert len({(a.aggregateHash, a.approve) for a in record.attestations}) == 1


def test_the_poisoner_is_not_slashed_as_invalid_and_earns_no_trainer_reward(poisoned):
    result, chronicle = poisoned
    (record,) = chronicle.rounds
    poisoner = result.agents[POISONER].address
    slashes = [(s.edge, SlashReason(s.reason)) for s in record.slashes]
    assert (poisoner, SlashReason.INVALID_UPDATE) not in slashes, slashes
    assert not slashes  # nobody skipped a stage either
    trainers = {c.edge for c in record.credits if c.kind == 0}
    assert poisoner not in trainers
    assert trainers == {agent.address for agent in result.agents[:POISONER]}
