"""The task owner's host, run inside the chain namespace: anvil on the bridge address, the
owner's publishing, one `edgetune agent` per edge namespace, the runner's Watcher (a block per
--tick), and the partition.

The partition is driven by the chain, never by a clock: edge P's link goes down once P has
revealed its last duty of round R-1 (its attestation), so it can miss nothing of that round,
and comes back as soon as the chain has closed a stage of round R that P could not complete
(normally the update commit: Absent; had P committed before the link went down, its reveal:
NotRevealed). So P misses exactly one stage, whatever the timing, and the round goes on
without it.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from topology import CHAIN_IP, CONTENT_IP, Topology

from edgetune.agent.federation import FederationConfig, prepare_edge_data, text_test_metric
from edgetune.agent.processes import Launched, launch
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import connect
from edgetune.chain.nodes import HARDFORK, anvil_binary, rpc_answers
from edgetune.chain.project import find_project_root
from edgetune.chain.types import Phase, Status, Step
from edgetune.learning import TrainConfig

ETHER = 10**18
CHAIN_PORT, CONTENT_PORT = 8545, 5001
EVENTS = (
    "EdgeRegistered",
    "Committed",
    "UpdateRevealed",
    "ScoresRevealed",
    "RoundTallied",
    "AttestationRevealed",
    "RoundFinalized",
    "RewardCredited",
    "Slashed",
)
# The stage a phase is, and the step bits that say an edge did its part of it: a commit stage
# needs its commit bit; a reveal stage needs the reveal bit once the edge committed.
DUTIES: dict[Phase, tuple[Step | None, Step]] = {
    Phase.UPDATE_COMMIT: (None, Step.UPDATE_COMMITTED),
    Phase.UPDATE_REVEAL: (Step.UPDATE_COMMITTED, Step.UPDATE_REVEALED),
    Phase.SCORE_COMMIT: (None, Step.SCORES_COMMITTED),
    Phase.SCORE_REVEAL: (Step.SCORES_COMMITTED, Step.SCORES_REVEALED),
    Phase.ATTEST_COMMIT: (None, Step.ATTEST_COMMITTED),
    Phase.ATTEST_REVEAL: (Step.ATTEST_COMMITTED, Step.ATTEST_REVEALED),
}


@dataclass(frozen=True)
class RunSettings:
    prefix: str
    edges: int
    rounds: int
    workdir: Path
    partition_edge: int | None  # None: no partition
    partition_round: int
    steps: int  # local training steps per round
    phase_blocks: int  # every stage's deadline but the update commit's
    commit_blocks: int  # the update commit's: a partition in it lasts this long
    tick_s: float  # the Watcher mines a block this often


@dataclass
class PartitionLog:
    edge: int
    round: int
    events: list[dict[str, Any]] = field(default_factory=list)
    missed: str | None = None  # the stage the edge could not complete
    error: str | None = None


class Milestones:
    """Seconds since the coordinator started, at each step of the run (to a Watcher tick)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    def note(self, what: str) -> None:
        self.seconds.setdefault(what, round(time.monotonic() - self.started, 1))

    def watch(self, launched: Launched) -> None:
        watcher = launched.watcher
        if any(row["phase"] != Phase.REGISTRATION.name for row in watcher.live.values()):
            self.note("every edge registered")
        for record in watcher.history.rounds if watcher.history else []:
            self.note(f"round {record.round} finalized")


def missed_stage(phase: Phase, status: Status) -> bool:
    """Whether an edge whose record is `status` (same round) failed its part of `phase`."""
    if phase not in DUTIES:
        return False
    needs, done = DUTIES[phase]
    return (needs is None or status.has(needs)) and not status.has(done)


class Partition:
    """Watches the chain (its own connection, every 50 ms) and moves edge P's link."""

    def __init__(
        self,
        topology: Topology,
        client: EdgeTuneClient,
        task_id: int,
        address: str,
        log: PartitionLog,
        say: Callable[[str], None],
    ) -> None:
        self.topology, self.client, self.task_id, self.address = topology, client, task_id, address
        self.log, self.say = log, say
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._guarded, name="partition", daemon=True)

    def _note(self, what: str, status: Status) -> None:
        block = self.client.chain.block_number()
        self.log.events.append(
            {"link": what, "block": block, "round": status.round, "phase": status.phase.name}
        )
        self.say(
            f"edge {self.log.edge} link {what} at block {block}, "
            f"round {status.round} {status.phase.name}"
        )

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as failed:  # reported in the result, and the link is restored
            self.log.error = f"{type(failed).__name__}: {failed}"
            self.topology.set_edge_link(self.log.edge, up=True)

    def _poll(self) -> Status:
        time.sleep(0.05)
        return self.client.status(self.task_id, self.address)

    def _run(self) -> None:
        target = self.log.round
        status = self._poll()
        while not self.stop.is_set():
            before_target = status.round < target - 1 or (
                status.round == target - 1 and not status.has(Step.ATTEST_REVEALED)
            )
            if not before_target or status.phase == Phase.FINISHED:
                break
            status = self._poll()
        if self.stop.is_set() or status.phase == Phase.FINISHED:
            return
        self.topology.set_edge_link(self.log.edge, up=False)
        self._note("down", status)
        seen = (status.round, status.phase)
        while not self.stop.is_set():
            status = self._poll()
            if (status.round, status.phase) == seen:
                continue
            ended_round, ended_phase = seen
            seen = (status.round, status.phase)
            over = status.phase == Phase.FINISHED or status.round > target
            if over or (ended_round == target and missed_stage(ended_phase, status)):
                self.log.missed = ended_phase.name if not over else None
                break
        self.topology.set_edge_link(self.log.edge, up=True)
        self._note("up", status)


def start_anvil(logfile: Path) -> subprocess.Popen:
    """anvil on the bridge address only (its namespace's links), in memory."""
    argv = [str(anvil_binary(find_project_root())), "--host", CHAIN_IP, "--port", str(CHAIN_PORT)]
    argv += ["--chain-id", "31337", "--hardfork", HARDFORK]
    with logfile.open("wb") as log:
        node = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{CHAIN_IP}:{CHAIN_PORT}"
    deadline = time.monotonic() + 60
    while not rpc_answers(url):
        if node.poll() is not None or time.monotonic() > deadline:
            node.kill()
            raise RuntimeError(f"anvil did not answer at {url}; see {logfile}")
        time.sleep(0.05)
    return node


def federation_config(settings: RunSettings) -> FederationConfig:
    return FederationConfig(
        edges=settings.edges,
        rounds=settings.rounds,
        phase_blocks=settings.phase_blocks,
        train=TrainConfig(steps=settings.steps),
        validation_per_class=1,
        test_per_class=1,
        workdir=settings.workdir / "federation",
        store=f"ipfs:/ip4/{CONTENT_IP}/tcp/{CONTENT_PORT}",
    )


def prepare(
    settings: RunSettings, topology: Topology, url: str, say: Callable[[str], None]
) -> Launched:
    """Publish the task and make each agent's command run in its edge's namespace."""
    chain = connect("anvil", url=url)
    config = federation_config(settings)
    test = prepare_edge_data(config)
    plan = config.plan([account.address for account in chain.accounts])
    stake = int(config.stake_ether * ETHER)
    # One slash must leave the partitioned edge above the minimum, so it stays active and can
    # rejoin: minimum half the stake, absence an eighth, a withheld reveal a quarter.
    task = replace(
        plan.task,
        min_stake=stake // 2,
        slash_absent=stake // 8,
        slash_non_reveal=stake // 4,
        slash_invalid=stake // 2,
        commit_blocks=settings.commit_blocks,
    )
    # Back from an outage within a second, not the default 5 s, so the scoring stage right
    # after the partition is not spent waiting.
    edges = tuple(
        replace(e, settings=replace(e.settings, poll_max_s=0.5, outage_poll_max_s=1.0))
        for e in plan.edges
    )
    plan = replace(plan, task=task, edges=edges)
    launched = launch(plan, chain, url, text_test_metric(test), log=say)
    for edge in launched.edges:
        edge.command = topology.exec_argv(topology.edge(edge.index), edge.command)
    launched.watcher.tick_s = settings.tick_s
    return launched


def coordinate(settings: RunSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """The whole run from the chain namespace; returns what `result.json` holds."""
    topology = Topology(settings.prefix, settings.edges)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    marks = Milestones()
    node = start_anvil(settings.workdir / "anvil.log")
    marks.note("anvil answers")
    url = f"http://{CHAIN_IP}:{CHAIN_PORT}"
    partition: Partition | None = None
    try:
        launched = prepare(settings, topology, url, say)
        marks.note("task published")
        task_id, owner = launched.task.task_id, launched.owner
        addresses = [edge.address for edge in sorted(launched.edges, key=lambda e: e.index)]
        if settings.partition_edge is not None:
            reader = connect("anvil", url=url)
            client = EdgeTuneClient(reader, owner.address, owner.contract.abi, reader.accounts[0])
            log = PartitionLog(settings.partition_edge, settings.partition_round)
            partition = Partition(topology, client, task_id, addresses[log.edge], log, say)
        for edge in launched.edges:
            edge.start()
        if partition is not None:
            partition.thread.start()
        try:
            launched.watcher.watch(lambda: marks.watch(launched), timeout_s=600)
        finally:
            if partition is not None:
                partition.stop.set()
                partition.thread.join(timeout=10)
            for edge in launched.edges:
                edge.kill()
        marks.note("task over")
        # What `edgetune rewards` reports from the chain alone, as any host would run it.
        rewards_argv = [sys.executable, "-m", "edgetune.cli", "rewards", "--json"]
        rewards_argv += ["--rpc-url", url, "--contract", owner.address, "--task", str(task_id)]
        done = subprocess.run(rewards_argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"edgetune rewards failed: {done.stderr.strip()}")
        rewards = done.stdout
        return {
            "url": url,
            "contract": owner.address,
            "task": task_id,
            "edges": addresses,
            "config": {k: _plain(v) for k, v in asdict(owner.task_config(task_id)).items()},
            "partition": asdict(partition.log) if partition else None,
            "events": {
                name: [_log_json(e) for e in owner.logs(name, taskId=task_id)] for name in EVENTS
            },
            "rewards": json.loads(rewards),
            "milestones_s": marks.seconds,
        }
    finally:
        node.terminate()
        node.wait(timeout=10)


def _log_json(log: Any) -> dict[str, Any]:
    return {
        "block": log.blockNumber,
        "index": log.logIndex,
        **{k: _plain(v) for k, v in log.args.items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
