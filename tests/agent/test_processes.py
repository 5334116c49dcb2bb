"""The federation as real separate processes on a real anvil node: one run through a real IPFS
node, and one where an agent is killed right after it saved each of its three commitments
(update, scores, attestation) and restarted each time, and still completes and is paid."""

import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgetune.agent.federation import FederationConfig, start_when_full
from edgetune.agent.processes import launch
from edgetune.agent.state import AgentState, StateFileError
from edgetune.chain.connect import connect
from edgetune.chain.history import load_history
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.types import Step
from edgetune.learning import TrainConfig

from ..ports import free_port

pytestmark = pytest.mark.anvil
TIMEOUT_S = 420
MINE_EVERY_S = 0.5
# Each kind of commitment, and the step bit its reveal sets on chain.
KINDS = {
    "update": Step.UPDATE_REVEALED,
    "scores": Step.SCORES_REVEALED,
    "attestation": Step.ATTEST_REVEALED,
}


@pytest.fixture
def anvil(tmp_path: Path):
    with AnvilNode(port=free_port(), state_file=tmp_path / "anvil-state.json") as node:
        yield node, connect("anvil", url=node.url)


def config_for(workdir: Path, **overrides) -> FederationConfig:
    base = FederationConfig(
        edges=3,
        rounds=2,
        train=TrainConfig(steps=10),
        validation_per_class=2,
        test_per_class=1,
        workdir=workdir,
    )
    return replace(base, **overrides)


def drive(chain, owner, task_id: int, edges, on_tick=lambda: None) -> None:
    """Mine a block every half second (deadlines must pass) until the task is over; between
    blocks call `on_tick` every 10 ms, so it can act within moments of what it watches for."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        start_when_full(owner, task_id, len(edges))  # the owner's move, as the Watcher's
        status = owner.status(task_id)
        if status.phase.name == "FINISHED":
            return
        crashed = [e for e in edges if e.process.poll() not in (None, 0)]
        assert not crashed, (
            f"agent {crashed[0].index} failed: {crashed[0].log_path.read_text()[-2000:]}"
        )
        chain.mine(1)
        until = time.monotonic() + MINE_EVERY_S
        while time.monotonic() < until:
            on_tick()
            time.sleep(0.01)
    raise AssertionError(f"task {task_id} did not finish in {TIMEOUT_S} s")


@pytest.mark.ipfs
def test_three_agent_processes_with_a_real_ipfs_node_complete_two_rounds(
    anvil, ipfs_node, tmp_path
):
    node, chain = anvil
    config = config_for(tmp_path / "run", store=f"ipfs:{ipfs_node.address}")
    owner, deployment, task, edges, _ = launch(config, chain, node.url)
    for edge in edges:
        edge.start()
    try:
        drive(chain, owner, task.task_id, edges)
    finally:
        for edge in edges:
            edge.kill()
    history = load_history(owner, task.task_id, deployment.block)
    assert [r.accepted for r in history.rounds] == [True, True]
    assert all(len(e.rounds_joined) == 2 and e.earned > 0 for e in history.edges)
    assert sum(e.earned for e in history.edges) == sum(r.paid for r in history.rounds)
    assert all(e.slashed == 0 for e in history.edges)
    # the global model each round is content the IPFS node serves, under the on-chain CID
    assert all(ipfs_node.get(r.global_cid) for r in history.rounds)


def test_an_agent_killed_after_saving_each_commitment_resumes_and_is_paid(anvil, tmp_path):
    node, chain = anvil
    # Long deadlines: a restarted agent needs seconds to start; phases still close early. One
    # round: every crash happens in it.
    config = config_for(tmp_path / "run", rounds=1, phase_blocks=400)
    owner, deployment, task, edges, _ = launch(config, chain, node.url)
    victim = edges[0]
    victim_address = chain.accounts[1].address
    state_file = config.workdir / "edge-0" / "agent-state.json"
    crashes: list[tuple[str, Step]] = []  # (kind, the victim's round-1 steps when it died)

    def crash_and_restart() -> None:
        """Kill the victim as soon as it has saved what it commits to next (it saves before it
        sends the commitment), then start it again: it must finish the stage from the file."""
        if len(crashes) == len(KINDS) or not state_file.exists():
            return
        kind = list(KINDS)[len(crashes)]
        try:
            state = AgentState(state_file, owner.address, task.task_id, victim_address)
        except StateFileError:  # not written yet under this name; look again in 10 ms
            return
        if state.get(1, kind) is None:
            return
        victim.kill()
        status = owner.status(task.task_id, victim_address)
        crashes.append((kind, status.done if status.round == 1 else None))
        if kind == "update":  # kept on disk until the reveal publishes them
            assert (state_file.parent / "agent-state.round-1.update").exists()
        victim.start()

    for edge in edges:
        edge.start()
    try:
        drive(chain, owner, task.task_id, edges, on_tick=crash_and_restart)
    finally:
        for edge in edges:
            edge.kill()
    assert [kind for kind, _ in crashes] == list(KINDS)
    # each time it died before it could reveal what it had just committed to
    assert all(done is not None and not done & KINDS[kind] for kind, done in crashes), crashes
    history = load_history(owner, task.task_id, deployment.block)
    (record,) = [e for e in history.edges if e.address == victim_address]
    assert [r.accepted for r in history.rounds] == [True]
    assert record.slashed == 0 and record.rounds_joined == [1]
    assert record.trainer_reward.get(1, 0) > 0 and record.validator_reward.get(1, 0) > 0
