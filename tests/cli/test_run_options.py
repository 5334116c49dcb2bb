"""`agent` and `federation` find their chain like every other command (--rpc-url, --port), refuse
what they cannot run before deploying anything, and keep stderr to the one error line."""

import json
import os
import subprocess
import sys

import pytest

from edgetune.agent import processes
from edgetune.chain.nodes import AnvilNode
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec
from edgetune.learning.model import base_model_hash, ensure_tiny_model

from .conftest import Project, one_line_error
from .test_bad_input import task_create

pytestmark = pytest.mark.anvil


class Reached(EdgetuneError):
    """Stops `federation` at its process runner, saying what it was handed."""


def created_task(project: Project, **options: str) -> int:
    result = project.cli(*task_create(project, **options), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["task_id"]


def test_agent_takes_port_like_the_other_commands(project, deployed, tmp_path):
    task = created_task(project)  # its spec hash is not the default spec's
    port = str(project.node.port)
    result = project.cli("agent", "--task", task, "--data", tmp_path, "--port", port)
    one_line_error(result, "adapter spec hash", f"differs from task {task}'s")


def test_federation_on_a_running_node_by_its_url_starts_and_owns_no_node(
    project, deployed, monkeypatch, tmp_path
):
    def refuse_start(node: AnvilNode) -> None:
        raise AssertionError(f"started anvil on {node.port}")

    def run_processes(config, chain, url, node=None, live=True, log=print):
        raise Reached(f"runner on {url} with node {node} and {len(chain.accounts)} accounts")

    monkeypatch.setattr(AnvilNode, "start", refuse_start)
    monkeypatch.setattr(processes, "run_processes", run_processes)
    monkeypatch.chdir(tmp_path)
    result = project.cli("federation", "--rpc-url", project.url, "--edges", "2")
    one_line_error(result, f"runner on {project.url} with node None and 10 accounts")


@pytest.mark.parametrize("chain", ["anvil", "embedded"])
def test_federation_refuses_more_edges_than_dev_accounts_before_deploying(
    project, deployed, quiet, monkeypatch, tmp_path, chain
):
    monkeypatch.chdir(tmp_path)
    args = ["federation", "--edges", "10", "--chain", chain]
    result = project.cli(*args, *(["--rpc-url", project.url] if chain == "anvil" else []))
    one_line_error(result, "10 edges need 11 dev accounts", "at most 9 edges")
    quiet()
    assert not (tmp_path / ".edgetune").exists()  # no data written either


@pytest.mark.parametrize("command", ["federation", "agent", "rewards", "withdraw", "deploy"])
def test_a_port_that_is_no_tcp_port_is_refused_before_anything_starts(project, quiet, command):
    result = project.cli(command, "--port", "70000")
    one_line_error(result, "'--port': 70000: must be in 1..65535")
    quiet()


def test_federation_refuses_an_unknown_chain_or_a_url_for_embedded(
    project, quiet, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    one_line_error(project.cli("federation", "--chain", "foo"), "--chain foo", "anvil or embedded")
    result = project.cli("federation", "--chain", "embedded", "--rpc-url", project.url)
    one_line_error(result, f"--rpc-url {project.url}", "needs --chain anvil")
    quiet()


def test_an_agent_failing_after_loading_its_model_writes_only_the_error(
    project, deployed, tmp_path
):
    """No progress bars or library warnings on stderr around the one error line."""
    model = ensure_tiny_model()
    task = created_task(
        project,
        **{
            "--base-model-hash": base_model_hash(model).hex(),
            "--adapter-spec-hash": AdapterSpec().spec_hash().hex(),
        },
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": " flu"}\n')
    (data / "validation.jsonl").write_bytes(b'{"prompt": "a", "response": " flu"}\n')
    argv = ["agent", "--task", str(task), "--data", str(data), "--model", str(model)]
    done = subprocess.run(
        [sys.executable, "-m", "edgetune.cli", *argv, "--rpc-url", project.url],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGETUNE_ROOT": str(project.root)},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {data / 'train.jsonl'}:1: not UTF-8 (byte 16 of the line)"
    ]
