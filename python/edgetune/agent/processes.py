"""The federation as separate processes on a real node: one `edgetune agent` process per edge,
each with its own key, data folder and state file, exactly as on separate machines.

The runner deploys, publishes the task, starts the agents, and then only watches — it mines one
block a second so block-number deadlines pass even on an auto-mining dev chain whose blocks
otherwise come only with transactions (a round must still close when an edge has died).
"""

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from edgetune.agent.federation import (
    FederationConfig,
    edge_settings,
    edge_train_config,
    prepare_edge_data,
    start_when_full,
)
from edgetune.agent.publish import PublishedTask, publish_task
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain
from edgetune.chain.deploy import RunRecord, deploy, save_deployment
from edgetune.chain.history import TaskHistory, load_history
from edgetune.chain.types import Phase
from edgetune.errors import EdgetuneError
from edgetune.learning import (
    Example,
    adapter_from_bytes,
    attach_adapter,
    ensure_tiny_model,
    evaluate,
    load_base_model,
)
from edgetune.storage import ContentStore, fetch_verified, open_store

ETHER = 10**18


class FederationFailed(EdgetuneError):
    """An agent process exited with an error, or the task did not finish in time."""


@dataclass
class EdgeProcess:
    index: int
    address: str
    behaviour: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child process owns it until exit
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def last_line(self) -> str:
        lines = (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )
        return lines[-1][-90:] if lines else ""


def agent_command(
    config: FederationConfig, index: int, task: PublishedTask, owner: EdgeTuneClient, url: str
) -> list[str]:
    """The `edgetune agent` command line for edge `index` (dev account index + 1)."""
    settings = edge_settings(config, index, source=owner.chain.accounts[1].address)
    train = edge_train_config(config, index)
    directory = config.workdir / f"edge-{index}"
    return [
        sys.executable,
        "-m",
        "edgetune.cli",
        "agent",
        "--task",
        str(task.task_id),
        "--contract",
        owner.address,
        "--chain",
        "anvil",
        "--rpc-url",
        url,
        "--dev-account",
        str(index + 1),
        "--data",
        str(directory),
        "--ipfs",
        store_spec(config),
        "--model",
        str(task.model_dir),
        "--spec",
        str(config.workdir / "adapter-spec.json"),
        "--stake",
        str(config.stake_ether),
        "--steps",
        str(train.steps),
        "--lr",
        repr(train.lr),
        "--batch-size",
        str(train.batch_size),
        "--seed",
        str(train.seed),
        "--shapley-exact",
        str(settings.shapley.exact_max_players),
        "--behaviour",
        settings.role.behaviour,
        "--role-seed",
        str(settings.role.seed),
        *(["--copy-of", settings.role.copy_of] if settings.role.copy_of else []),
    ]


def store_spec(config: FederationConfig) -> str:
    return f"embedded:{config.workdir / 'ipfs'}" if config.store == "embedded" else config.store


def launch(config: FederationConfig, chain: Chain, url: str):
    """Deploy, publish the task and write every edge's data; returns what the agents need."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    owner, deployment = deploy(chain, chain.accounts[0])
    save_deployment(deployment)
    store = open_store(store_spec(config))
    model_dir = config.model_dir or ensure_tiny_model()
    pool = int(config.pool_ether * ETHER)
    task = publish_task(owner, store, model_dir, config.spec, config.task_template(), pool)
    (config.workdir / "adapter-spec.json").write_text(config.spec.to_json())
    _, test = prepare_edge_data(config)
    edges = [
        EdgeProcess(
            i,
            chain.accounts[i + 1].address,
            config.behaviour(i),
            agent_command(config, i, task, owner, url),
            config.workdir / f"edge-{i}.log",
        )
        for i in range(config.edges)
    ]
    return owner, deployment, task, edges, Watcher(chain, owner, task, edges, test, store)


def run_processes(config: FederationConfig, chain: Chain, url: str, live: bool = True) -> RunRecord:
    owner, deployment, task, edges, watcher = launch(config, chain, url)
    record = RunRecord(url, owner.address, task.task_id, deployment.block)
    record.save()
    for edge in edges:
        edge.start()
    try:
        with Live(watcher.view(), refresh_per_second=2, transient=not live) as screen:
            watcher.watch(on_tick=lambda: screen.update(watcher.view()))
    finally:
        for edge in edges:
            edge.kill()
    return record


class Watcher:
    """Polls the chain, mines a block a second, evaluates each new global on the test set."""

    def __init__(
        self,
        chain: Chain,
        owner: EdgeTuneClient,
        task: PublishedTask,
        edges: list[EdgeProcess],
        test: list[Example],
        store: ContentStore,
    ) -> None:
        self.chain, self.owner, self.task, self.edges = chain, owner, task, edges
        self.test, self.store = test, store
        self.adapted = attach_adapter(load_base_model(task.model_dir), task.spec)
        self.live: dict[int, dict] = {}  # round -> what the status poll showed last
        self.history: TaskHistory | None = None
        self.metrics: dict[int, tuple[float, float]] = {}
        self.progress = Progress(*Progress.get_default_columns(), TimeElapsedColumn())
        self.bar = self.progress.add_task("rounds finalized", total=task.config.rounds)

    def watch(self, on_tick: Callable[[], None], timeout_s: float = 3600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            start_when_full(self.owner, self.task.task_id, len(self.edges))
            status = self.owner.status(self.task.task_id)
            self._record(status)
            on_tick()
            if status.phase in (Phase.FINISHED, Phase.CANCELLED):
                return
            failed = [e for e in self.edges if e.process and e.process.poll() not in (None, 0)]
            if len(failed) == len(self.edges):
                raise FederationFailed(
                    f"every agent exited with an error; see {failed[0].log_path}"
                )
            self.chain.mine(1)
            time.sleep(1.0)
        raise FederationFailed(f"task {self.task.task_id} did not finish within {timeout_s:.0f} s")

    def _record(self, status) -> None:
        self.live[status.round] = {
            "phase": status.phase.name,
            "updates": f"{status.reveals}",
            "scores": f"{status.score_reveals}",
        }
        self.history = load_history(self.owner, self.task.task_id)
        for done in self.history.rounds:
            if done.round not in self.metrics:
                self.metrics[done.round] = self._evaluate(done.global_cid, done.global_hash)
        self.progress.update(self.bar, completed=len(self.history.rounds))

    def _evaluate(self, cid: str, digest: str) -> tuple[float, float]:
        data = fetch_verified(self.store, cid, digest)
        adapter = adapter_from_bytes(data, self.adapted.shapes())
        result = evaluate(self.adapted, self.test, adapter)
        return result.loss, result.accuracy or 0.0

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
        records = {e.address: e for e in self.history.edges} if self.history else {}
        for edge in self.edges:
            record = records.get(edge.address)
            scores = (
                " ".join(f"{s:+.3f}" for _, s in sorted(record.scores.items())) if record else ""
            )
            earned = f"{record.earned / ETHER:.4f}" if record else ""
            table.add_row(f"{edge.index} {edge.behaviour}", scores, earned, edge.last_line())
        return table
