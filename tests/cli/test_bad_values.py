"""Values no command can use, found by the issue-9 review: each one line naming the option (or
file) and its value, exit 1, and nothing sent (the `quiet` fixture)."""

import json
from pathlib import Path

import pytest

from edgetune.chain.records import RunRecord, deployments_dir

from .conftest import one_line_error
from .test_bad_input import task_create

pytestmark = pytest.mark.anvil


@pytest.mark.parametrize(
    ("value", "cause"),
    [("1e999999999", "more than a uint256 holds"), ("1e-999999999", "below one wei")],
)
def test_task_create_refuses_a_pool_of_an_extreme_exponent(project, deployed, quiet, value, cause):
    one_line_error(
        project.cli(*task_create(project, **{"--pool": value})), f"--pool {value}", cause
    )
    quiet()


def test_task_create_refuses_a_min_stake_above_uint128(project, deployed, quiet):
    result = project.cli(*task_create(project, **{"--min-stake": "1e60"}))
    one_line_error(result, "--min-stake 1e60", "more than a uint128 holds")
    quiet()


@pytest.mark.parametrize(
    ("option", "value", "limit"),
    [("--rounds", "65536", "65535"), ("--max-edges", "65536", "65535"), ("--rounds", "-1", "1")],
)
def test_task_create_refuses_counts_outside_their_uint16(
    project, deployed, quiet, option, value, limit
):
    result = project.cli(*task_create(project, **{option: value}))
    one_line_error(result, option, value, limit)
    quiet()


@pytest.mark.parametrize(
    "args",
    [
        ["withdraw", "--release-stake", "-1"],
        ["withdraw", "--release-stake", str(2**256)],
        ["rewards", "--task", "-1"],
        ["agent", "--task", "-1", "--data", "."],
    ],
)
def test_task_ids_outside_uint256_are_refused(project, deployed, quiet, args):
    option, value = args[-2:] if args[0] != "agent" else args[1:3]
    one_line_error(project.cli(*args, "--rpc-url", project.url), option, value)
    quiet()


def test_a_non_utf8_argument_names_its_option(project, deployed, quiet):
    result = project.cli(*task_create(project, **{"--base-model-uri": "caf\udce9"}))
    one_line_error(result, "--base-model-uri", "not UTF-8")
    quiet()


@pytest.mark.parametrize(
    ("record", "command", "content"),
    [
        ("run", ["rewards"], b'{"rpc_url": "caf\xe9"}'),
        ("deployment", ["rewards", "--task", "1"], b"\xff\xfe"),
        ("run", ["chain", "status"], json.dumps({"rpc_url": 5, "contract": "0x", "task_id": 1,
                                                  "from_block": 0}).encode()),
        ("run", ["rewards"], json.dumps({"rpc_url": "http://127.0.0.1:1", "contract": 5,
                                         "task_id": 1, "from_block": 0}).encode()),
        ("run", ["rewards"], json.dumps({"rpc_url": "http://127.0.0.1:1", "contract": "0x",
                                         "task_id": True, "from_block": 0}).encode()),
    ],
)  # fmt: skip
def test_an_unreadable_record_names_its_file(project, deployed, quiet, record, command, content):
    path = RunRecord.path(project.root) if record == "run" else deployments_dir(project.root)
    if record == "deployment":
        path = path / "31337.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = path.read_bytes() if path.exists() else None
    path.write_bytes(content)
    try:
        args = command if record == "run" else [*command, "--rpc-url", project.url]
        one_line_error(project.cli(*args), str(path), "delete it")
    finally:
        path.unlink()
        if saved is not None:
            path.write_bytes(saved)
    quiet()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"rank": "x"}'])
def test_agent_refuses_a_spec_file_it_cannot_read(project, deployed, quiet, tmp_path, content):
    spec = tmp_path / "spec.json"
    spec.write_bytes(content)
    args = ["agent", "--task", "1", "--data", tmp_path, "--spec", spec, "--rpc-url", project.url]
    one_line_error(project.cli(*args), "--spec", str(spec))
    quiet()


@pytest.mark.parametrize("stake", ["nan", "inf", "-1", "0", "abc"])
def test_agent_refuses_a_stake_that_is_not_a_positive_amount(project, deployed, quiet, stake):
    args = ["agent", "--task", "1", "--data", ".", "--stake", stake, "--rpc-url", project.url]
    one_line_error(project.cli(*args), f"--stake {stake}")
    quiet()


@pytest.mark.parametrize(("name", "cause"), [("x.xyz", "xyz"), (".", "folder")])
def test_rewards_refuses_a_plot_it_cannot_write_before_printing(
    project, deployed, quiet, tmp_path, name, cause
):
    plot = tmp_path / name
    args = ["rewards", "--rpc-url", project.url, "--task", "1", "--plot", plot]
    one_line_error(project.cli(*args), "--plot", cause)  # and no tables printed first
    quiet()


def test_rewards_names_the_figure_file_it_wrote(project, deployed, tmp_path: Path):
    created = project.cli(*task_create(project, **{"--pool": "1"}))
    assert created.exit_code == 0, created.output
    result = project.cli(
        "rewards", "--rpc-url", project.url, "--task", "1", "--plot", tmp_path / "x"
    )
    assert result.exit_code == 0, result.output
    assert f"figure written to {tmp_path / 'x.png'}" in result.stdout, result.stdout
    assert (tmp_path / "x.png").stat().st_size > 0
