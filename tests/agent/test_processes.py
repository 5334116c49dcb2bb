"""The federation as real separate processes on a real anvil node, watched by the runner's own
Watcher: one run through a real IPFS node, and one where an agent is SIGKILLed right after it
saved each of its three commitments (update, scores, attestation) and the Watcher restarts it
each time: it resumes from its state file, completes the round, is not slashed and is paid."""

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from edgetune.agent.federation import FederationConfig
from edgetune.agent.processes import Launched, launch_config
from edgetune.agent.state import AgentState, StateFileError
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.compiler import load_artifact
from edgetune.chain.connect import connect
from edgetune.chain.deploy import CONTRACT_NAME
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


def watch(launched: Launched) -> list[str]:
    """Start the agents and let the runner's Watcher drive the task to its end (a block every
    half second); returns the Watcher's log lines."""
    lines: list[str] = []
    launched.watcher.log, launched.watcher.tick_s = lines.append, MINE_EVERY_S
    for edge in launched.edges:
        edge.start()
    try:
        launched.watcher.watch(timeout_s=TIMEOUT_S)
    finally:
        for edge in launched.edges:
            edge.kill()
    return lines


@pytest.mark.ipfs
def test_three_agent_processes_with_a_real_ipfs_node_complete_two_rounds(
    anvil, ipfs_node, tmp_path
):
    node, chain = anvil
    config = config_for(tmp_path / "run", store=f"ipfs:{ipfs_node.address}")
    launched = launch_config(config, chain, node.url)
    lines = watch(launched)
    assert not [line for line in lines if "restarting" in line], lines
    history = load_history(launched.owner, launched.task.task_id, launched.deployment.block)
    assert [r.accepted for r in history.rounds] == [True, True]
    assert all(len(e.rounds_joined) == 2 and e.earned > 0 for e in history.edges)
    assert sum(e.earned for e in history.edges) == sum(r.paid for r in history.rounds)
    assert all(e.slashed == 0 for e in history.edges)
    # the global model each round is content the IPFS node serves, under the on-chain CID
    assert all(ipfs_node.get(r.global_cid) for r in history.rounds)


def test_an_agent_killed_after_saving_each_commitment_is_restarted_and_paid(anvil, tmp_path):
    node, chain = anvil
    # Long deadlines: a restarted agent needs seconds to start; phases still close early. One
    # round: every crash happens in it.
    config = config_for(tmp_path / "run", rounds=1, phase_blocks=400)
    launched = launch_config(config, chain, node.url)
    task_id, victim = launched.task.task_id, launched.edges[0]
    state_file = launched.plan.edges[0].data_dir / "agent-state.json"
    crashes: list[tuple[str, Step | None]] = []  # (kind, the victim's round-1 steps at death)
    stop = threading.Event()

    def crash_after_each_commitment() -> None:
        """SIGKILL the victim as soon as it has saved what it commits to next (it saves before
        it sends the commitment); the Watcher must notice and start it again. Polls every
        10 ms on its own connection, so it acts within moments of the save."""
        own = connect("anvil", url=node.url)
        abi = load_artifact(CONTRACT_NAME).abi
        client = EdgeTuneClient(own, launched.owner.address, abi, own.accounts[0])
        while not stop.is_set() and len(crashes) < len(KINDS):
            stop.wait(0.01)
            kind = list(KINDS)[len(crashes)]
            try:
                state = AgentState(state_file, client.address, task_id, victim.address)
            except StateFileError:  # not written yet under this name; look again
                continue
            if state.get(1, kind) is None or victim.process is None:
                continue
            os.kill(victim.process.pid, signal.SIGKILL)
            status = client.status(task_id, victim.address)
            crashes.append((kind, status.done if status.round == 1 else None))
            if kind == "update":  # kept on disk until the reveal publishes them
                assert (state_file.parent / "agent-state.round-1.update").exists()

    killer = threading.Thread(target=crash_after_each_commitment, daemon=True)
    killer.start()
    try:
        lines = watch(launched)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert [kind for kind, _ in crashes] == list(KINDS)
    # each time it died before it could reveal what it had just committed to
    assert all(done is not None and not done & KINDS[kind] for kind, done in crashes), crashes
    # Named as the tables name it: registered first, as the plan's first edge.
    restarts = [line for line in lines if line.startswith("edge #0 honest ")]
    assert all("exited with code -9" in line and "edge-0.log" in line for line in restarts)
    assert len(restarts) == len(KINDS), lines
    history = load_history(launched.owner, task_id, launched.deployment.block)
    # One name per edge: registration order is the plan's, so #i is edge-i.log's edge.
    assert [e.address for e in history.edges] == [e.address for e in launched.edges]
    (record,) = [e for e in history.edges if e.address == victim.address]
    assert [r.accepted for r in history.rounds] == [True]
    assert record.slashed == 0 and record.rounds_joined == [1]
    assert record.trainer_reward.get(1, 0) > 0 and record.validator_reward.get(1, 0) > 0
