"""The cheap linear learner behind the scale bench: real agents on a real anvil learn with it."""

from hashlib import sha256

from edgetune.agent.simulated import SimulatedConfig, run_simulated
from edgetune.chain.types import Phase
from edgetune.learning import adapter_from_bytes, aggregate

from ..anvil import local_anvil


def test_a_linear_federation_on_anvil_learns_and_scores_every_update(tmp_path):
    config = SimulatedConfig(edges=4, rounds=2, workdir=tmp_path / "simulated")
    with local_anvil(tmp_path) as chain:
        ended: list[int] = []
        result = run_simulated(config, chain, log=lambda _line: None, on_round=ended.append)
        status = result.owner.status(result.task.task_id)
        revealed = result.owner.revealed_updates(result.task.task_id, 1)

    assert status.phase == Phase.FINISHED and ended == [1, 2]
    # The held-out test loss falls every round, well below the zero head's log(4) = 1.386.
    losses = [result.test_metrics[r][0] for r in (0, 1, 2)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 0.8 * losses[0], losses
    assert result.test_metrics[2][1] > 0.5  # accuracy, against 0.25 for chance
    initial = adapter_from_bytes(
        result.store.get(result.task.config.initial_global_cid), result.agents[0].learner.shapes()
    )
    for agent in result.agents:
        for round_ in (1, 2):
            card = agent.scorecards[round_]
            assert card.valid_mask == 0b1111 and card.shapley is not None
            assert card.shapley.method == "exact" and any(card.scores)
        # Round 1's Shapley values add up (efficiency) to what the average of all four updates
        # gains on this validator's own data: they were computed, not made up.
        card, metric = agent.scorecards[1], agent.learner.metric
        gained = metric(aggregate(initial, [card.updates[i] for i in range(4)])) - metric(initial)
        assert abs(sum(card.shapley.values.values()) - gained) < 1e-6
    # The updates are real content: each validator's parsed update is the store's bytes.
    first = result.agents[0].scorecards[1].updates
    for update in revealed:
        data = result.store.get(update.cid)
        assert sha256(data).digest() == update.update_hash
        parsed = adapter_from_bytes(data, result.agents[0].learner.shapes(trained_only=True))
        assert all((parsed[k] == first[update.index][k]).all() for k in parsed)
