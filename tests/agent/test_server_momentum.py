"""Server momentum (FedAvgM) in the protocol: every validator derives G(r) from on-chain history
alone, so an independent replay of the chain gets the same bytes the contract accepted."""

import hashlib

import pytest

from edgetune.agent.simulated import SimulatedConfig, run_simulated
from edgetune.chain.history import load_history
from edgetune.learning import (
    AdapterSpec,
    InvalidConfig,
    adapter_from_bytes,
    adapter_to_bytes,
    aggregate,
    momentum_aggregate,
)
from edgetune.storage import fetch_verified

from ..anvil import local_anvil

BETA = 0.5


def test_every_global_is_the_momentum_aggregate_replayed_from_chain_events(tmp_path):
    config = SimulatedConfig(
        edges=2, rounds=3, workdir=tmp_path / "sim", server_momentum=BETA, test_per_class=10
    )
    # anvil: a round of py-evm transactions took 5 s, anvil's take milliseconds
    with local_anvil(tmp_path) as chain:
        result = run_simulated(config, chain, log=lambda _line: None)
        _check_replay(result)


def _check_replay(result) -> None:
    task_id = result.task.task_id
    history = load_history(result.owner, task_id, result.deployment_block)
    shapes = result.agents[0].learner.shapes()
    trained = result.agents[0].learner.shapes(trained_only=True)
    store = result.store

    def fetched(cid, sha256, layout):
        return adapter_from_bytes(fetch_verified(store, cid, sha256), layout)

    config_ = result.task.config
    globals_ = [fetched(config_.initial_global_cid, config_.initial_global_hash, shapes)]
    plain_differs = []
    for round_ in (1, 2, 3):
        (tallied,) = result.owner.round_events(task_id, round_, "RoundTallied")
        included = [
            fetched(u.cid, u.update_hash, trained)
            for u in result.owner.revealed_updates(task_id, round_)
            if tallied.includedMask >> u.index & 1
        ]
        assert included, f"round {round_}: nothing included"
        before = globals_[-2] if len(globals_) > 1 else None
        expected = adapter_to_bytes(momentum_aggregate(globals_[-1], before, included, BETA))
        (finalized,) = result.owner.round_events(task_id, round_, "RoundFinalized")
        assert finalized.accepted, f"round {round_} was rejected"
        assert hashlib.sha256(expected).digest() == finalized.globalHash, f"round {round_}"
        plain = adapter_to_bytes(aggregate(globals_[-1], included))
        plain_differs.append(plain != expected)
        globals_.append(fetched(finalized.globalCid, finalized.globalHash, shapes))
    # Round 1 has no velocity yet; from round 2 on the momentum term moved the global.
    assert plain_differs == [False, True, True]
    assert [r.accepted for r in history.rounds] == [True, True, True]


def test_the_momentum_is_part_of_the_hashed_spec_and_plain_fedavg_hashes_as_before():
    plain = AdapterSpec()
    assert "server_momentum" not in plain.to_json()
    assert AdapterSpec.from_json(plain.to_json()).spec_hash() == plain.spec_hash()
    moving = AdapterSpec(server_momentum=BETA)
    assert moving.spec_hash() != plain.spec_hash()
    assert AdapterSpec.from_json(moving.to_json()).server_momentum == BETA


@pytest.mark.parametrize("beta", [-0.1, 1.0, 2.0, float("nan"), True, "0.5"])
def test_a_momentum_outside_zero_to_one_is_refused_by_name(beta):
    with pytest.raises(InvalidConfig, match="server_momentum must be in"):
        AdapterSpec(server_momentum=beta)
