"""The federation as separate processes on a real node: one `edgetune agent --plan FILE --edge I`
process per edge, each with its own key, data folder and state file, exactly as on separate
machines, and every setting read from the plan file the runner wrote.

The runner publishes the task, starts the agents, and then only watches: it mines one block a
second so block-number deadlines pass even on an auto-mining dev chain whose blocks otherwise
come only with transactions (a round must still close when an edge has died). It outlives faults
around it: while the chain does not answer it keeps watching (and restarts the node if it started
that node and the node died), and an agent that dies before the task is over is started again,
a bounded number of times; its state file lets it resume where it was.
"""

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Group
from rich.live import Live
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from edgetune.agent.federation import (
    FederationConfig,
    TestMetric,
    prepare_edge_data,
    publish_plan,
    start_when_full,
    text_test_metric,
)
from edgetune.agent.launch import load_task_model
from edgetune.agent.plan import FederationPlan
from edgetune.agent.publish import PublishedTask
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain
from edgetune.chain.errors import ChainUnavailable, NodeError, TransactionPending
from edgetune.chain.history import EdgeRecord, TaskHistory, load_history
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.records import Deployment, RunRecord, save_deployment
from edgetune.chain.types import Phase
from edgetune.errors import EdgetuneError
from edgetune.learning import AdaptedModel, adapter_from_bytes
from edgetune.storage import ContentStore, fetch_verified
from edgetune.storage.errors import StorageError
from edgetune.views import edge_label, short_address

ETHER = 10**18
PLAN_FILE = "plan.json"
MAX_RESTARTS = 3  # per agent: a crash loop is a bug to report, not to retry forever


class FederationFailed(EdgetuneError):
    """Every agent process kept failing, or the task did not finish in time."""


class InProcessOnly(EdgetuneError):
    """The plan's learners hold data in memory (the vision case study), so no agent process
    could rebuild them from the plan file."""


@dataclass
class EdgeProcess:
    index: int
    address: str
    behaviour: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    given_up: bool = False

    def start(self) -> None:
        with open(self.log_path, "a") as log:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def failed(self) -> int | None:
        """The exit code if the process ended with an error, else None."""
        code = self.process.poll() if self.process else None
        return code if code not in (None, 0) else None

    def last_line(self) -> str:
        lines = (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )
        return lines[-1][-90:] if lines else ""


def agent_argv(plan_file: Path, index: int, task_id: int, contract: str, url: str) -> list[str]:
    """`edgetune agent`'s arguments for edge `index`: everything but the connection and the
    task comes from the plan file."""
    return [
        "agent",
        *("--plan", str(plan_file), "--edge", str(index), "--task", str(task_id)),
        *("--contract", contract, "--chain", "anvil", "--rpc-url", url),
    ]


@dataclass
class Launched:
    plan: FederationPlan
    owner: EdgeTuneClient
    deployment: Deployment
    task: PublishedTask
    edges: list[EdgeProcess]
    watcher: "Watcher"

    def run(self, url: str, live: bool = True) -> RunRecord:
        """Record the run (so `edgetune rewards` finds it), start the agents and watch them
        until the task is over, showing a live table; the agents are stopped afterwards."""
        save_deployment(self.deployment)
        record = RunRecord(url, self.owner.address, self.task.task_id, self.deployment.block)
        record.save()
        watcher = self.watcher
        for edge in self.edges:
            edge.start()
        try:
            if live:
                with Live(watcher.view(), refresh_per_second=2) as screen:
                    watcher.log = lambda line: screen.console.print(line, markup=False)
                    watcher.watch(on_tick=lambda: screen.update(watcher.view()))
            else:
                watcher.watch()
        finally:
            for edge in self.edges:
                edge.kill()
        return record


def launch(
    plan: FederationPlan,
    chain: Chain,
    url: str,
    test_metric: TestMetric,
    node: AnvilNode | None = None,
    log: Callable[[str], None] = print,
) -> Launched:
    """Publish the task and write the plan file; returns the (not yet started) agent processes
    and the watcher. `node`: the node this runner manages, restarted if it dies."""
    if plan.model.kind != "text":
        raise InProcessOnly(f"a {plan.model.kind} plan's learners cannot run as agent processes")
    # Registration order names the edges on chain; the plan's order names their processes.
    plan = plan.registering_in_order()
    owner, deployment, store, task = publish_plan(plan, chain)
    plan_file = plan.save(plan.workdir / PLAN_FILE)
    edges = [
        EdgeProcess(
            edge.index,
            chain.accounts[edge.dev_account].address,
            edge.behaviour,
            [
                sys.executable,
                *("-m", "edgetune.cli"),
                *agent_argv(plan_file, edge.index, task.task_id, owner.address, url),
            ],
            plan.workdir / f"edge-{edge.index}.log",
        )
        for edge in plan.edges
    ]
    adapted = load_task_model(owner, task.task_id, store, plan.model)
    watcher = Watcher(
        chain, owner, task, deployment.block, edges, adapted, test_metric, store, node, log
    )
    return Launched(plan, owner, deployment, task, edges, watcher)


def launch_config(
    config: FederationConfig,
    chain: Chain,
    url: str,
    node: AnvilNode | None = None,
    log: Callable[[str], None] = print,
) -> Launched:
    """`launch` for the text federation of `config`, its edges' data written first."""
    test = prepare_edge_data(config)
    plan = config.plan([account.address for account in chain.accounts])
    return launch(plan, chain, url, text_test_metric(test), node, log)


def run_processes(
    config: FederationConfig,
    chain: Chain,
    url: str,
    node: AnvilNode | None = None,
    live: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[FederationPlan, RunRecord]:
    """The text federation of `config` as agent processes (`make demo`)."""
    launched = launch_config(config, chain, url, node, log)
    return launched.plan, launched.run(url, live)


class Watcher:
    """Polls the chain, mines a block a tick, evaluates each new global on the test set,
    restarts agents that died and, if it manages the node, the node."""

    def __init__(
        self,
        chain: Chain,
        owner: EdgeTuneClient,
        task: PublishedTask,
        from_block: int,
        edges: list[EdgeProcess],
        adapted: AdaptedModel,
        test_metric: TestMetric,
        store: ContentStore,
        node: AnvilNode | None = None,
        log: Callable[[str], None] = print,
        max_restarts: int = MAX_RESTARTS,
        tick_s: float = 1.0,
    ) -> None:
        self.chain, self.owner, self.task, self.edges = chain, owner, task, edges
        self.from_block, self.adapted, self.test_metric = from_block, adapted, test_metric
        self.store, self.node, self.log = store, node, log
        self.max_restarts, self.tick_s = max_restarts, tick_s
        self.chain_down = False
        self.live: dict[int, dict] = {}  # round -> what the status poll showed last
        self.history: TaskHistory | None = None
        self.metrics: dict[int, tuple[float, float]] = {}
        self.unevaluated: set[int] = set()  # rounds whose global the store could not deliver
        self.progress = Progress(*Progress.get_default_columns(), TimeElapsedColumn())
        self.bar = self.progress.add_task("rounds finalized", total=task.config.rounds)

    def watch(self, on_tick: Callable[[], None] = lambda: None, timeout_s: float = 3600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                finished = self._poll()
            except (ChainUnavailable, TransactionPending) as down:  # the owner's start() too
                self._chain_unavailable(down)
            else:
                if finished:
                    on_tick()
                    return
                # Only while the chain answers: an agent that died of the outage would die
                # again at once, spending its restarts.
                self._restart_dead_agents()
            on_tick()
            time.sleep(self.tick_s)
        raise FederationFailed(f"task {self.task.task_id} did not finish within {timeout_s:.0f} s")

    def _poll(self) -> bool:
        """One look at the chain and one block mined; True once the task is over."""
        start_when_full(self.owner, self.task.task_id, len(self.edges))
        status = self.owner.status(self.task.task_id)
        if self.chain_down:
            self.chain_down = False
            self.chain.forget_nonces()  # a restarted node may have reloaded an older state
            self.log(f"the chain answers again at block {self.chain.block_number()}")
        self._record(status)
        if status.phase in (Phase.FINISHED, Phase.CANCELLED):
            return True
        self.chain.mine(1)
        return False

    def _chain_unavailable(self, down: ChainUnavailable | TransactionPending) -> None:
        if not self.chain_down:
            self.chain_down = True
            self.log(f"{down}; still watching")
        if self.node is not None and self.node.pid() is None:
            self.log(f"anvil on port {self.node.port} is gone: restarting it from its state file")
            try:
                self.node.start()
            except NodeError as failed:
                self.log(f"anvil did not restart: {failed}")

    def _restart_dead_agents(self) -> None:
        for edge in self.edges:
            code = edge.failed()
            if code is None or edge.given_up:
                continue
            if edge.restarts >= self.max_restarts:
                edge.given_up = True
                self.log(
                    f"edge {self._label(edge)} exited with code {code} after {edge.restarts} "
                    f"restarts; leaving it out (see {edge.log_path})"
                )
                continue
            edge.restarts += 1
            self.log(
                f"edge {self._label(edge)} exited with code {code}; restarting it "
                f"({edge.restarts} of {self.max_restarts}; log {edge.log_path.name})"
            )
            edge.start()
        if self.edges and all(edge.given_up for edge in self.edges):
            raise FederationFailed(
                f"every agent kept exiting with an error; see {self.edges[0].log_path}"
            )

    def _record(self, status) -> None:
        self.live[status.round] = {
            "phase": status.phase.name,
            "updates": f"{status.reveals}",
            "scores": f"{status.score_reveals}",
        }
        self.history = load_history(self.owner, self.task.task_id, self.from_block)
        for done in self.history.rounds:
            if done.round in self.metrics:
                continue
            try:
                self.metrics[done.round] = self._evaluate(done.global_cid, done.global_hash)
            except StorageError as unreachable:
                # A content outage, or a global not reachable yet: the test metric can wait,
                # the watching (and the block a tick) cannot. One line per round, not per tick.
                if done.round not in self.unevaluated:
                    self.unevaluated.add(done.round)
                    self.log(f"round {done.round}'s global not evaluated yet: {unreachable}")
        self.progress.update(self.bar, completed=len(self.history.rounds))

    def _evaluate(self, cid: str, digest: str) -> tuple[float, float]:
        data = fetch_verified(self.store, cid, digest)
        adapter: Mapping[str, torch.Tensor] = adapter_from_bytes(data, self.adapted.shapes())
        return self.test_metric(self.adapted, adapter)

    def view(self) -> Group:
        return Group(self.progress, self._rounds_table(), self._edges_table())

    def _rounds_table(self) -> Table:
        table = Table(title=f"task {self.task.task_id}: {len(self.edges)} edges")
        columns = (
            "round",
            "phase / outcome",
            "updates revealed",
            "scores revealed / included",
            "paid (ETH)",
            "test loss",
            "test accuracy",
        )
        for column in columns:
            table.add_column(column, justify="right")
        finalized = {r.round: r for r in self.history.rounds} if self.history else {}
        for round_, row in sorted(self.live.items()):
            done = finalized.get(round_)
            loss, accuracy = self.metrics.get(round_, (None, None))
            table.add_row(
                str(round_),
                ("accepted" if done.accepted else "rejected") if done else row["phase"],
                f"{done.updates}" if done else row["updates"],
                f"{done.included} included" if done else row["scores"],
                f"{done.paid / ETHER:.4f}" if done else "",
                f"{loss:.4f}" if loss is not None else "",
                f"{accuracy:.3f}" if accuracy is not None else "",
            )
        return table

    def _edges_table(self) -> Table:
        table = Table(box=None)
        for column in ("edge", "median Shapley score by round", "earned (ETH)", "last log line"):
            table.add_column(column)
        for edge in self.edges:
            record = self._record_of(edge)
            scores = (
                " ".join(f"{s:+.3f}" for _, s in sorted(record.scores.items())) if record else ""
            )
            earned = f"{record.earned / ETHER:.4f}" if record else ""
            table.add_row(self._label(edge), scores, earned, edge.last_line())
        return table

    def _record_of(self, edge: EdgeProcess) -> EdgeRecord | None:
        records = self.history.edges if self.history else []
        return next((r for r in records if r.address == edge.address), None)

    def _label(self, edge: EdgeProcess) -> str:
        """The edge as the final tables name it (its registration index, which the plan's
        registration order makes its plan index and log file number); unregistered: no index
        yet."""
        record = self._record_of(edge)
        if record is None:
            return f"{edge.behaviour} {short_address(edge.address)}"
        return edge_label(record, {edge.address: edge.behaviour})
