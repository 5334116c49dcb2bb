"""The federation runner: one plan for both executors, every setting carried to agent processes
through the plan file, and a process watcher that outlives chain outages and dead agents."""

import sys
import types
import typing
from dataclasses import MISSING, fields, is_dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgetune.agent import federation, launch, processes
from edgetune.agent.federation import FederationConfig
from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
from edgetune.agent.processes import EdgeProcess, FederationFailed, Watcher, agent_argv
from edgetune.agent.publish import PublishedTask
from edgetune.agent.settings import AgentSettings
from edgetune.chain.errors import ChainUnavailable
from edgetune.chain.history import EdgeRecord
from edgetune.chain.types import Phase, TaskConfig
from edgetune.cli import app
from edgetune.contribution import ShapleyConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec, TrainConfig
from edgetune.storage.errors import StorageUnavailable

ADDRESSES = [f"0x{i:040x}" for i in range(1, 9)]


class Captured(EdgetuneError):
    """Stops a command once it has built what the test inspects."""


def perturbed(value):
    """`value` with every field set away from its default (recursing into dataclasses), so a
    field that failed to travel would come back as its default and differ."""
    hints = typing.get_type_hints(type(value))
    changes = {}
    for f in fields(value):
        current = getattr(value, f.name)
        if is_dataclass(current):
            changes[f.name] = perturbed(current)
        else:
            changes[f.name] = _other(hints[f.name], current, f.name)
    return replace(value, **changes)


def _other(kind, current, name):
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Literal:
        return next(a for a in args if a != current)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in args if a is not type(None))
    if kind is bool:
        return not current
    if kind is int:
        return (current or 0) + 1
    if kind is float:
        return (current or 0.01) * 1.5
    if kind is str:
        return ADDRESSES[-1]
    if typing.get_origin(kind) is tuple:  # e.g. TrainConfig.lacking_answers: token id tuples
        return (*current, (1, 2, 3)) if current else ((1, 2, 3), (4,))
    raise AssertionError(f"teach perturbed() a value for field {name}: {kind}")


def assert_same_fields(got, expected, where: str) -> None:
    """Field by field, so a failure names the one field that did not travel."""
    assert type(got) is type(expected), where
    for f in fields(expected):
        a, b = getattr(got, f.name), getattr(expected, f.name)
        if is_dataclass(b):
            assert_same_fields(a, b, f"{where}.{f.name}")
        else:
            assert a == b, f"{where}.{f.name}: {a!r} != {b!r}"


def assert_off_default(value, where: str) -> None:
    for f in fields(value):
        current = getattr(value, f.name)
        if is_dataclass(current):
            assert_off_default(current, f"{where}.{f.name}")
            continue
        default = f.default if f.default_factory is MISSING else f.default_factory()
        assert default is MISSING or current != default, f"{where}.{f.name} is its default"


@pytest.fixture
def captured(monkeypatch):
    """Run `edgetune agent` up to building its agent; returns what it was built from."""
    seen: dict = {}

    def build_agent(client, task_id, store, edge, model, log=print, learner=None):
        seen.update(client=client, task_id=task_id, edge=edge, model=model)
        raise Captured("captured")

    monkeypatch.setattr(launch, "build_agent", build_agent)
    monkeypatch.setattr("edgetune.cli.run.connect_chain", lambda *args: SimpleNamespace())
    monkeypatch.setattr(
        "edgetune.cli.run.contract_client",
        lambda chain, contract, dev_account: SimpleNamespace(dev_account=dev_account),
    )
    return seen


def test_an_agent_process_rebuilds_every_setting_of_its_edge_from_the_plan(tmp_path, captured):
    settings = perturbed(AgentSettings(stake=10**17))
    train = perturbed(TrainConfig())
    edge = EdgeSpec(3, 5, tmp_path / "edge-3", train, settings, "accuracy")
    assert_off_default(edge.settings, "settings")
    assert_off_default(edge.train, "train")
    assert settings.shapley != ShapleyConfig() and settings.role.behaviour != "honest"
    model = ModelSpec("text", tmp_path / "model", AdapterSpec(rank=4, target_modules=("q_proj",)))
    template = TaskConfig(bytes(32), bytes(32), bytes(32), "", "", "", rounds=2)
    plan = FederationPlan(
        template, 10**18, model, (edge,), tmp_path, f"embedded:{tmp_path / 'ipfs'}"
    )
    plan_file = plan.save(tmp_path / "plan.json")
    argv = agent_argv(plan_file, 3, 7, ADDRESSES[0], "http://127.0.0.1:1")
    result = CliRunner().invoke(app, argv)
    assert "captured" in result.output, result.output
    assert captured["task_id"] == 7 and captured["client"].dev_account == 5
    assert_same_fields(captured["edge"], edge, "edge")
    assert_same_fields(captured["model"], model, "model")
    assert FederationPlan.load(plan_file) == plan  # the task template and store too


def test_the_demo_plan_carries_the_configured_settings_to_every_edge(tmp_path):
    config = FederationConfig(
        edges=4,
        copiers=1,
        poisoners=1,
        train=TrainConfig(steps=7, lr=3e-3, batch_size=5),
        shapley=ShapleyConfig(exact_max_players=6, seed=2),
        stake_ether=0.25,
        model_dir=tmp_path,
        workdir=tmp_path,
    )
    plan = config.plan(ADDRESSES)
    assert [e.behaviour for e in plan.edges] == ["honest", "honest", "poisoner", "copier"]
    assert [e.dev_account for e in plan.edges] == [1, 2, 3, 4]
    for edge in plan.edges:
        assert edge.settings.shapley == config.shapley and edge.settings.stake == 25 * 10**16
        assert (edge.train.steps, edge.train.lr, edge.train.batch_size) == (7, 3e-3, 5)
    copier = plan.edges[3]
    assert copier.settings.role.copy_of == ADDRESSES[1]  # edge 0 signs as dev account 1
    assert copier.train.seed == plan.edges[0].train.seed  # a Sybil trains like its source
    assert plan.roles(dict(enumerate(ADDRESSES)))[ADDRESSES[3]] == "poisoner"


def test_federation_passes_poisoners_through(monkeypatch):
    seen = {}

    def run_in_process(config, log=print, chain=None):
        seen["config"] = config
        raise Captured("captured")

    monkeypatch.setattr(federation, "run_in_process", run_in_process)
    result = CliRunner().invoke(
        app, ["federation", "--chain", "embedded", "--edges", "3", "--poisoners", "1", "--json"]
    )
    assert "captured" in result.output, result.output
    assert [seen["config"].behaviour(i) for i in range(3)] == ["honest", "honest", "poisoner"]


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (None, "cannot read plan"),
        ("{not json", "is not JSON"),
        ('{"task": {}}', "fields missing"),
        (b'{"task": "\xff"}', "is not JSON: 'utf-8' codec can't decode byte 0xff"),
    ],
)
def test_a_bad_plan_file_is_one_line_and_exit_1(tmp_path, captured, content, cause):
    plan_file = tmp_path / "plan.json"
    if isinstance(content, bytes):
        plan_file.write_bytes(content)
    elif content is not None:
        plan_file.write_text(content)
    result = CliRunner().invoke(app, agent_argv(plan_file, 0, 1, ADDRESSES[0], "http://x"))
    assert result.exit_code == 1
    assert cause in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "edge" not in captured  # nothing was built, so nothing sent


def test_an_edge_the_plan_lacks_is_one_line_and_exit_1(tmp_path, captured):
    plan = FederationConfig(edges=2, model_dir=tmp_path, workdir=tmp_path).plan(ADDRESSES)
    plan_file = plan.save(tmp_path / "plan.json")
    result = CliRunner().invoke(app, agent_argv(plan_file, 2, 1, ADDRESSES[0], "http://x"))
    assert result.exit_code == 1 and "the plan has no edge 2 (edges: 0, 1)" in result.output


# ---------------------------------------------------------------------- the watcher


class FakeChain:
    def __init__(self) -> None:
        self.mined = self.forgot = 0

    def mine(self, blocks: int = 1) -> None:
        self.mined += blocks

    def forget_nonces(self) -> None:
        self.forgot += 1

    def block_number(self) -> int:
        return self.mined


class FakeOwner:
    """Answers `phases` in turn (the last one forever); a ChainUnavailable entry is raised."""

    def __init__(self, phases: list) -> None:
        self.phases = phases

    def status(self, task_id: int):
        phase = self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]
        if isinstance(phase, Exception):
            raise phase
        return SimpleNamespace(phase=phase, round=1, reveals=0, score_reveals=0, active_edges=0)


class FakeNode:
    port = 1

    def __init__(self) -> None:
        self.starts = 0

    def pid(self) -> int | None:
        return None if self.starts == 0 else 4242

    def start(self) -> int:
        self.starts += 1
        return 4242


def watcher(owner, edges, node=None, max_restarts: int = 3) -> tuple[Watcher, list[str]]:
    lines: list[str] = []
    task = PublishedTask(
        1, TaskConfig(bytes(32), bytes(32), bytes(32), "", "", ""), Path(), AdapterSpec()
    )
    args = (FakeChain(), owner, task, 0, edges, None, None, None, node, lines.append)
    return Watcher(*args, max_restarts=max_restarts, tick_s=0.01), lines  # type: ignore[arg-type]


@pytest.fixture
def no_history(monkeypatch):
    history = SimpleNamespace(rounds=[], edges=[])
    monkeypatch.setattr(processes, "load_history", lambda *args: history)


def test_the_watcher_keeps_watching_through_an_outage_and_restarts_its_dead_node(no_history):
    down = ChainUnavailable("http://127.0.0.1:1", "connection refused")
    owner = FakeOwner([down, down, down, Phase.UPDATE_COMMIT, Phase.FINISHED])
    node = FakeNode()
    watch, lines = watcher(owner, [], node)
    watch.watch(timeout_s=60)  # returns: it saw the task finish after the outage
    assert node.starts == 1  # once, not once per failed poll
    assert sum("still watching" in line for line in lines) == 1, lines
    assert any("answers again" in line for line in lines), lines
    assert watch.chain.forgot == 1  # the restarted node's nonces are read afresh


def test_a_dead_agent_is_restarted_a_bounded_number_of_times(monkeypatch, tmp_path):
    # Registered (as #0): its lines name it as the tables do, and name its log.
    history = SimpleNamespace(rounds=[], edges=[EdgeRecord(0, ADDRESSES[0])])
    monkeypatch.setattr(processes, "load_history", lambda *args: history)
    dies = EdgeProcess(
        0,
        ADDRESSES[0],
        "honest",
        [sys.executable, "-c", "raise SystemExit(3)"],
        tmp_path / "edge-0.log",
    )
    watch, lines = watcher(FakeOwner([Phase.UPDATE_COMMIT]), [dies], max_restarts=2)
    dies.start()
    with pytest.raises(FederationFailed, match="every agent kept exiting"):
        watch.watch(timeout_s=120)
    restarts = [line for line in lines if "restarting it" in line]
    assert restarts == [
        "edge #0 honest 0x0000…0001 exited with code 3; restarting it (1 of 2; log edge-0.log)",
        "edge #0 honest 0x0000…0001 exited with code 3; restarting it (2 of 2; log edge-0.log)",
    ]
    assert sum("leaving it out" in line for line in lines) == 1, lines


def test_a_global_the_store_cannot_deliver_yet_is_evaluated_at_a_later_tick(monkeypatch):
    # IPFS is down (or the new global not reachable yet) while round 1's global is finalized:
    # the watcher skips the evaluation, keeps mining and watching, and evaluates it later.
    finalized = SimpleNamespace(round=1, global_cid="bafy-global-1", global_hash="ab" * 32)
    history = SimpleNamespace(rounds=[finalized], edges=[])
    monkeypatch.setattr(processes, "load_history", lambda *args: history)
    outage = [StorageUnavailable("IPFS at /ip4/127.0.0.1/tcp/5001 does not answer")] * 2

    def fetch(store, cid, digest):
        if outage:
            raise outage.pop()
        return b"adapter bytes"

    monkeypatch.setattr(processes, "fetch_verified", fetch)
    monkeypatch.setattr(processes, "adapter_from_bytes", lambda data, shapes: {})
    owner = FakeOwner([Phase.UPDATE_COMMIT] * 6 + [Phase.FINISHED])  # two reads a tick
    watch, lines = watcher(owner, [])
    watch.adapted = SimpleNamespace(shapes=lambda: {})
    watch.test_metric = lambda adapted, adapter: (0.5, 0.75)
    watch.watch(timeout_s=60)
    assert watch.metrics == {1: (0.5, 0.75)}
    unreachable = [line for line in lines if "does not answer" in line]
    assert len(unreachable) == 1 and "round 1" in unreachable[0], lines  # one line, not per tick
    assert watch.chain.mined >= 3  # blocks kept coming through the outage


@pytest.mark.parametrize(
    ("argv", "cause"),
    [
        (["--plan", "plan.json"], "needs --edge I"),
        ([], "--data missing"),
        (["--data", ".", "--behaviour", "saboteur"], "--behaviour saboteur: must be one of"),
    ],
)
def test_agent_options_that_name_no_edge_are_one_line_and_exit_1(captured, argv, cause):
    result = CliRunner().invoke(app, ["agent", "--task", "1", *argv])
    assert result.exit_code == 1
    assert cause in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "edge" not in captured


def test_a_process_plan_registers_its_edges_in_plan_order(tmp_path):
    plan = FederationConfig(edges=3, model_dir=tmp_path, workdir=tmp_path).plan(ADDRESSES)
    ordered = plan.registering_in_order()
    assert [e.settings.register_after for e in ordered.edges] == [0, 1, 2]
    assert [e.index for e in ordered.edges] == [0, 1, 2]
    assert ordered.edges[1].settings.role == plan.edges[1].settings.role  # nothing else changed
    loaded = FederationPlan.load(ordered.save(tmp_path / "plan.json"))
    assert [e.settings.register_after for e in loaded.edges] == [0, 1, 2]


def test_the_live_table_names_edges_as_the_final_tables_do(tmp_path):
    edges = [
        EdgeProcess(i, ADDRESSES[i], role, [], tmp_path / f"edge-{i}.log")
        for i, role in enumerate(("honest", "lazy"))
    ]
    watch, _ = watcher(FakeOwner([Phase.REGISTRATION]), edges)
    # Only edge 1 has registered, and first: registration order names it #0.
    watch.history = SimpleNamespace(rounds=[], edges=[EdgeRecord(0, ADDRESSES[1])])
    screen = Console(record=True, width=200)
    screen.print(watch.view())
    text = screen.export_text()
    assert "#0 lazy 0x0000…0002" in text and "honest 0x0000…0001" in text, text
