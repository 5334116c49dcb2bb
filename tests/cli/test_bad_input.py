"""Every bad input found in issue 9 gets one line naming the cause, exit 1, and sends nothing:
no block mined, no dev account's nonce moved (the `quiet` fixture)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune.chain.records import RunRecord
from edgetune.learning.data import load_jsonl
from edgetune.learning.errors import DataError

from ..contracts.rounds import deploy_helper
from .conftest import Project, one_line_error

pytestmark = pytest.mark.anvil

HASH = "ab" * 32
NOBODY = "0x" + "12" * 20  # a well-formed address with no code
TASK_HASHES = {
    "--base-model-hash": HASH,
    "--adapter-spec-hash": HASH,
    "--initial-global-hash": HASH,
}


def task_create(project: Project, **options: str) -> list[str]:
    merged = {**TASK_HASHES, "--initial-global-cid": "bafy0", "--rpc-url": project.url, **options}
    return ["task", "create", *(part for item in merged.items() for part in item)]


@pytest.mark.parametrize("pool", ["-1", "nan", "inf", "abc", "0", "1e-19"])
def test_task_create_refuses_a_pool_that_is_not_a_positive_amount(project, deployed, quiet, pool):
    one_line_error(project.cli(*task_create(project, **{"--pool": pool})), f"--pool {pool}")
    quiet()


def test_task_create_refuses_a_pool_above_the_balance(project, deployed, quiet):
    result = project.cli(*task_create(project, **{"--pool": "1e30"}))
    one_line_error(result, "--pool 1e30", "exceeds", project.chain.accounts[0].address)
    quiet()


@pytest.mark.parametrize("option", list(TASK_HASHES))
@pytest.mark.parametrize("value", ["zz" * 32, "ab" * 31, "0x12g4"])
def test_task_create_refuses_a_hash_that_is_not_32_bytes_of_hex(
    project, deployed, quiet, option, value
):
    one_line_error(project.cli(*task_create(project, **{option: value})), option)
    quiet()


def test_task_create_refuses_a_bad_number_of_edges(project, deployed, quiet):
    one_line_error(project.cli(*task_create(project, **{"--max-edges": "-1"})), "--max-edges")
    one_line_error(project.cli(*task_create(project, **{"--rounds": "0"})), "rounds")
    quiet()


@pytest.mark.parametrize(
    ("contract", "fragment"),
    [(NOBODY, "no contract at"), ("0x1234", "not an address"), ("nonsense", "not an address")],
)
@pytest.mark.parametrize("command", ["rewards", "withdraw", "task"])
def test_a_contract_without_code_or_malformed_is_refused_before_sending(
    project, deployed, quiet, contract, fragment, command
):
    args = {
        "rewards": ["rewards", "--rpc-url", project.url, "--task", "1"],
        "withdraw": ["withdraw", "--rpc-url", project.url, "--release-stake", "1"],
        "task": task_create(project),
    }[command]
    one_line_error(project.cli(*args, "--contract", contract), fragment, contract)
    quiet()


def test_a_contract_that_is_not_edgetune_is_refused_before_sending(project, deployed, quiet):
    tallier = deploy_helper(project.chain, "ScoreTallier").address
    project.chain.forget_nonces()
    quiet = _quiet_from_here(project)
    for args in (
        ["rewards", "--rpc-url", project.url, "--task", "1"],
        ["withdraw", "--rpc-url", project.url],
        task_create(project),
    ):
        one_line_error(project.cli(*args, "--contract", tallier), "is not EdgeTune", tallier)
    quiet()


def _quiet_from_here(project: Project):
    before = project.nonces()
    return lambda: (project.nonces() == before) or pytest.fail("the command sent a transaction")


def test_rewards_of_a_task_that_does_not_exist(project, deployed, quiet):
    result = project.cli("rewards", "--rpc-url", project.url, "--task", "99")
    one_line_error(result, "no task 99", deployed["address"])
    quiet()


def test_rewards_on_an_empty_embedded_chain(project, quiet):
    one_line_error(project.cli("rewards", "--chain", "embedded", "--task", "1"), "no deployment")
    one_line_error(project.cli("rewards", "--chain", "embedded"), "--task", "no federation ran")
    quiet()


@pytest.mark.parametrize("account", ["99", "10", "-1"])
def test_dev_account_out_of_range_names_the_valid_range(project, deployed, quiet, account):
    result = project.cli("withdraw", "--rpc-url", project.url, "--dev-account", account)
    one_line_error(result, f"--dev-account {account}", "0-9")
    quiet()


def test_a_corrupt_run_record_is_one_line(project, deployed, quiet):
    path = RunRecord.path(project.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    try:
        one_line_error(project.cli("rewards"), str(path), "not JSON")
        one_line_error(project.cli("withdraw"), str(path))
    finally:
        path.unlink()
    quiet()


def test_usage_errors_are_one_line_too(project, quiet):
    one_line_error(project.cli("task", "create"), "Missing option")
    one_line_error(project.cli("withdraw", "--dev-account", "one"), "--dev-account")
    quiet()


def test_disk_full_before_a_send_stops_it_at_the_journal(project, monkeypatch, quiet):
    """The transaction journal is written before the broadcast: a full disk sends nothing."""

    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    one_line_error(project.cli("deploy", "--rpc-url", project.url), "No space", "transactions")
    quiet()


def test_disk_full_at_deploy_names_the_file_and_the_deployed_address(project, monkeypatch):
    write_text = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.parent.name != "deployments":
            return write_text(self, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    result = project.cli("deploy", "--rpc-url", project.url)
    line = one_line_error(result, "No space left on device", "31337.json", "--contract 0x")
    address = line.rsplit("--contract ", 1)[1]
    assert project.chain.w3.eth.get_code(address)  # deployed: the line says where, nothing lost


def test_disk_full_or_a_missing_folder_for_the_plot(project, deployed, monkeypatch, tmp_path):
    created = project.cli(*task_create(project, **{"--pool": "1"}))
    assert created.exit_code == 0, created.output
    missing = tmp_path / "no-such-dir" / "rewards.png"
    args = ["rewards", "--rpc-url", project.url, "--task", "1", "--json"]
    one_line_error(project.cli(*args, "--plot", missing), str(missing), printed=True)

    import matplotlib.figure

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    target = tmp_path / "rewards.png"
    one_line_error(project.cli(*args, "--plot", target), str(target), "No space", printed=True)


def test_data_files_with_non_utf8_bytes_name_the_file_and_line(tmp_path: Path):
    good = json.dumps({"prompt": "patient: a fever.\ntriage:", "response": " flu"}) + "\n"
    for name in ("train.jsonl", "validation.jsonl"):
        path = tmp_path / name
        path.write_bytes(good.encode() + b'{"prompt": "caf\xe9", "response": " flu"}\n')
        with pytest.raises(DataError) as error:
            load_jsonl(path)
        assert str(error.value) == f"{path}:2: not UTF-8 (byte 16 of the line)"


def test_help_never_imports_web3():
    """Start-up stays light: --help of every command, and chain status, without web3."""
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edgetune.cli import app\n"
        "for args in (['--help'], ['rewards', '--help'], ['deploy', '--help'],\n"
        "             ['withdraw', '--help'], ['task', 'create', '--help'],\n"
        "             ['chain', 'status', '--port', '1']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('web3', 'torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
