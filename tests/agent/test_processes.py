"""The federation as real separate processes on a real anvil node: one run through a real IPFS
node, and one where an agent is killed after its update commit and again after its vote commit,
restarted, and still completes the round and earns its reward."""

import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgetune.agent.federation import FederationConfig
from edgetune.agent.processes import launch
from edgetune.agent.state import AgentState
from edgetune.chain.connect import connect
from edgetune.chain.history import load_history
from edgetune.chain.nodes import AnvilNode
from edgetune.learning import TrainConfig

from ..ports import free_port

pytestmark = pytest.mark.anvil
TIMEOUT_S = 420


@pytest.fixture
def anvil(tmp_path: Path):
    with AnvilNode(port=free_port(), state_file=tmp_path / "anvil-state.json") as node:
        yield node, connect("anvil", url=node.url)


def config_for(workdir: Path, **overrides) -> FederationConfig:
    base = FederationConfig(edges=3, rounds=2, train=TrainConfig(steps=20), workdir=workdir)
    return replace(base, **overrides)


def drive(chain, owner, task_id: int, edges, on_tick=lambda status: None) -> None:
    """Mine a block every half second (deadlines must pass) until the task is over."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        status = owner.status(task_id)
        if status.phase.name == "FINISHED":
            return
        on_tick(status)
        crashed = [e for e in edges if e.process.poll() not in (None, 0)]
        assert not crashed, (
            f"agent {crashed[0].index} failed: {crashed[0].log_path.read_text()[-2000:]}"
        )
        chain.mine(1)
        time.sleep(0.5)
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
    # the global model each round is content the IPFS node serves, under the on-chain CID
    assert all(ipfs_node.get(r.global_cid) for r in history.rounds)


def test_an_agent_killed_after_each_commit_resumes_and_is_paid(anvil, tmp_path):
    node, chain = anvil
    # Long deadlines: a restarted agent needs seconds to start; phases still close early.
    config = config_for(tmp_path / "run", phase_blocks=400)
    owner, deployment, task, edges, _ = launch(config, chain, node.url)
    victim = edges[0]
    victim_address = chain.accounts[1].address
    state_file = config.workdir / "edge-0" / "agent-state.json"
    crashes: list[str] = []

    def crash_and_restart(status) -> None:
        """Kill the victim once it has saved what it is committing to (it saves before it
        sends), so it dies around its commit transaction, before it could reveal."""
        if not state_file.exists() or status.round != 1:
            return
        state = AgentState(state_file, owner.address, task.task_id, victim_address)
        after_update = not crashes and state.update(1)
        after_vote = crashes == ["update"] and state.vote(1)
        if after_update or after_vote:
            victim.kill()
            crashes.append("update" if after_update else "vote")
            victim.start()

    for edge in edges:
        edge.start()
    try:
        drive(chain, owner, task.task_id, edges, on_tick=crash_and_restart)
    finally:
        for edge in edges:
            edge.kill()
    assert crashes == ["update", "vote"]
    history = load_history(owner, task.task_id, deployment.block)
    (record,) = [e for e in history.edges if e.address == victim_address]
    assert history.rounds[0].accepted and record.slashed == 0
    assert 1 in record.rounds_joined and record.validator_reward.get(1, 0) > 0
