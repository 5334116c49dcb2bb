"""A poisoner: its update is well formed (so not slashed) but destroys the model. Every honest
validator must leave it out of the aggregate, so the round still passes, and it earns no
trainer reward."""

from pathlib import Path

import pytest

from edgetune.agent.federation import FederationConfig, run_in_process
from edgetune.chain.history import load_history
from edgetune.learning import TrainConfig


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    config = FederationConfig(
        edges=3,
        rounds=1,
        poisoners=1,
        train=TrainConfig(steps=30),
        workdir=Path(tmp_path_factory.mktemp("poisoned")),
    )
    return run_in_process(config, log=lambda _: None)


def test_every_validator_excludes_the_poisoned_update_and_the_round_passes(poisoned):
    owner, task_id = poisoned.owner, poisoned.task.task_id
    poisoner = poisoned.agents[2].address
    revealed = owner.revealed_updates(task_id, 1)
    index = [u.edge for u in revealed].index(poisoner)
    votes = [log.args for log in owner.contract.events.VoteRevealed().get_logs(from_block=0)]
    assert len(votes) == 3
    assert all(v.ballot.validMask >> index & 1 for v in votes)  # well formed: valid
    assert not any(v.ballot.includedMask >> index & 1 for v in votes)  # harmful: left out
    assert len({v.candidate for v in votes}) == 1  # so the honest validators agree
    history = load_history(owner, task_id, poisoned.deployment_block)
    assert history.rounds[0].accepted
    (record,) = [e for e in history.edges if e.address == poisoner]
    assert record.slashed == 0 and not record.trainer_reward
    assert all(v.ballot.scores[index] < -poisoned.agents[0].harm_tolerance * 1e6 for v in votes)
