"""Local nodes: start/stop/status, idempotent start, anvil's state surviving a restart, and the
signing paths (dev keys, env key, keystore) against a real node."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from edgetune.chain.compiler import compile_contracts
from edgetune.chain.connect import Chain, connect, dev_accounts, send
from edgetune.chain.errors import KeyNotConfigured, NodeError
from edgetune.chain.nodes import AnvilNode, HardhatNode, rpc_answers
from edgetune.cli import app

from ..cli.conftest import one_line_error
from ..ports import free_port

pytestmark = pytest.mark.anvil


def _deploy_counter(chain: Chain, project: Path) -> str:
    artifact = compile_contracts(project)["Counter"]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    return str(send(chain, factory.constructor(), chain.accounts[0])["contractAddress"])


def test_anvil_chain_survives_a_restart(project: Path, tmp_path: Path) -> None:
    node = AnvilNode(port=free_port(), state_file=tmp_path / "state.json", project_root=project)
    with node:
        chain = connect("anvil", url=node.url)
        address = _deploy_counter(chain, project)
        abi = compile_contracts(project)["Counter"].abi
        counter = chain.w3.eth.contract(address=address, abi=abi)
        send(chain, counter.functions.inc(7), chain.accounts[1])
        chain.mine(5)
        block = chain.block_number()
        balance = chain.w3.eth.get_balance(chain.accounts[1].address)
    assert not rpc_answers(node.url) and node.pid() is None
    with node:
        chain = connect("anvil", url=node.url)
        counter = chain.w3.eth.contract(address=address, abi=abi)
        assert chain.block_number() == block
        assert chain.w3.eth.get_balance(chain.accounts[1].address) == balance
        assert counter.functions.value().call() == 7


def _saved_block(state_file: Path) -> int:
    """The block number anvil's last state dump holds (-1 before the first complete one)."""
    try:
        saved = json.loads(state_file.read_text())["best_block_number"]
        return saved if isinstance(saved, int) else int(saved, 0)
    except (OSError, ValueError, KeyError):
        return -1


def test_anvil_chain_survives_a_hard_kill(project: Path, tmp_path: Path) -> None:
    # A kill -9 gives anvil no chance to write --state on exit: only the periodic dump remains.
    state_file = tmp_path / "state.json"
    node = AnvilNode(port=free_port(), state_file=state_file, project_root=project)
    pid = node.start()
    try:
        chain = connect("anvil", url=node.url)
        address = _deploy_counter(chain, project)
        abi = compile_contracts(project)["Counter"].abi
        counter = chain.w3.eth.contract(address=address, abi=abi)
        tx_hash = send(chain, counter.functions.inc(7), chain.accounts[1])["transactionHash"]
        block = chain.block_number()
        balance = chain.w3.eth.get_balance(chain.accounts[1].address)
        deadline = time.monotonic() + 60
        while _saved_block(state_file) < block:
            assert time.monotonic() < deadline, "anvil never saved its state"
            time.sleep(0.1)
    finally:
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while node.pid() is not None:  # reaps the killed node
            assert time.monotonic() < deadline, "anvil survived SIGKILL"
            time.sleep(0.05)
    with AnvilNode(port=node.port, state_file=state_file, project_root=project) as restarted:
        assert restarted.pid() != pid
        chain = connect("anvil", url=restarted.url)
        counter = chain.w3.eth.contract(address=address, abi=abi)
        assert chain.block_number() == block
        assert chain.w3.eth.get_balance(chain.accounts[1].address) == balance
        assert counter.functions.value().call() == 7
        # Receipts and logs too: agents rebuild a round from its events.
        assert chain.w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
        (event,) = counter.events.Incremented().get_logs(from_block=0)
        assert event.args.value == 7


def test_start_is_idempotent_and_status_reports_the_chain(project: Path, tmp_path: Path) -> None:
    node = AnvilNode(port=free_port(), state_file=tmp_path / "s.json", project_root=project)
    pid = node.start()
    try:
        again = AnvilNode(port=node.port, state_file=tmp_path / "s.json", project_root=project)
        assert again.start() == pid  # a second start reuses the running node
        status = again.status()
        assert (status.running, status.pid, status.chain_id, status.block_number) == (
            True,
            pid,
            31337,
            0,
        )
    finally:
        assert node.stop()
    assert not node.status().running and not node.stop()


def test_anvil_interval_mining_advances_blocks(project: Path, tmp_path: Path) -> None:
    node = AnvilNode(
        port=free_port(), block_time=0.2, state_file=tmp_path / "s.json", project_root=project
    )
    with node:
        chain = connect("anvil", url=node.url)
        start = chain.block_number()
        time.sleep(0.7)
        assert chain.block_number() >= start + 2


def test_a_node_that_cannot_bind_fails_with_its_log_line(project: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        node = AnvilNode(
            port=busy.getsockname()[1], state_file=tmp_path / "s.json", project_root=project
        )
        with pytest.raises(NodeError, match="anvil exited at start"):
            node.start(timeout=20)
    assert node.pid() is None


def test_hardhat_node_starts_and_stops(project: Path) -> None:
    node = HardhatNode(port=free_port(), project_root=project)
    with node:
        status = node.status()
        assert status.running and status.chain_id == 31337
        chain = connect("hardhat", url=node.url)
        chain.mine(3)
        assert chain.block_number() == 3
    assert not rpc_answers(node.url) and not node.status().running


def test_url_chains_sign_with_env_key_or_keystore(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = dev_accounts(2)[1]
    with AnvilNode(port=free_port(), state_file=tmp_path / "s.json", project_root=project) as node:
        monkeypatch.delenv("EDGETUNE_PRIVATE_KEY", raising=False)
        with pytest.raises(KeyNotConfigured, match="EDGETUNE_PRIVATE_KEY"):
            connect(node.url)
        monkeypatch.setenv("EDGETUNE_PRIVATE_KEY", dev.key.hex())
        assert connect(node.url).accounts[0].address == dev.address

        keystore = tmp_path / "key.json"
        keystore.write_text(json.dumps(Account.encrypt(dev.key, "pw", kdf="pbkdf2", iterations=2)))
        monkeypatch.delenv("EDGETUNE_PRIVATE_KEY")
        monkeypatch.setenv("EDGETUNE_KEYSTORE_PASSWORD", "pw")
        chain = connect(node.url, keystore=keystore)
        assert chain.accounts[0].address == dev.address
        _deploy_counter(chain, project)  # the keystore account can sign and pay


def test_cli_chain_up_status_down(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGETUNE_ROOT", str(project))
    port = str(free_port())
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["chain", "up", "--port", port])
        assert up.exit_code == 0, up.output
        status = runner.invoke(app, ["chain", "status", "--port", port, "--json"])
        shown = json.loads(status.output)
        assert shown["running"] and shown["chain_id"] == 31337 and shown["port"] == int(port)
    finally:
        down = runner.invoke(app, ["chain", "down", "--port", port])
    assert f"anvil on port {port} stopped" in down.output
    after = json.loads(runner.invoke(app, ["chain", "status", "--port", port, "--json"]).output)
    assert not after["running"]


def test_each_port_has_its_own_default_state_file(project: Path) -> None:
    # One shared file let every anvil overwrite the others' chains every second.
    first, second = (AnvilNode(port=p, project_root=project) for p in (28701, 28702))
    assert first.state_file != second.state_file
    assert first.state_file.name == "anvil-28701-state.json"


def test_a_bad_state_file_fails_with_anvils_own_reason(project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"block": ')  # truncated
    node = AnvilNode(port=free_port(), state_file=state, project_root=project)
    with pytest.raises(NodeError) as caught:
        node.start(timeout=20)
    message = str(caught.value)
    assert "failed to parse json file" in message and "--help" not in message, message
    assert node.pid() is None


def test_a_node_that_never_answers_is_stopped_not_left_running(project: Path, tmp_path: Path):
    # anvil on port 0 listens on a random port: running, but never at the URL we wait on.
    state = str(tmp_path / "s.json")
    node = AnvilNode(port=0, state_file=Path(state), project_root=project)
    with pytest.raises(NodeError, match="no RPC"):
        node.start(timeout=3)
    assert node.pid() is None
    assert not [p for p in Path("/proc").glob("[0-9]*") if state in _cmdline_of(p)]


def _cmdline_of(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_reusing_a_node_adopts_its_settings_and_refuses_other_ones(
    project: Path, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    with AnvilNode(port=free_port(), state_file=state, project_root=project) as running:
        reused = AnvilNode(port=running.port, project_root=project)
        assert reused.start() == running.pid()
        assert reused.state_file == state.resolve()  # the file the node really uses
        for asked in (
            {"block_time": 2.0},
            {"state_file": tmp_path / "other.json"},
        ):
            with pytest.raises(NodeError, match="already runs with") as caught:
                AnvilNode(port=running.port, project_root=project, **asked).start()
            assert "chain down" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "70000"], "'--port': 70000: must be in 1..65535"),
        (["--port", "0"], "'--port': 0: must be in 1..65535"),
        (["--block-time", "nan"], "--block-time nan"),
        (["--block-time", "-1"], "--block-time -1"),
    ],
)
def test_cli_chain_up_refuses_bad_flags_before_starting_anything(
    project: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.setenv("EDGETUNE_ROOT", str(project))
    before = sorted(p.name for p in (project / ".edgetune").glob("anvil-*.pid"))
    result = CliRunner().invoke(app, ["chain", "up", *args])
    one_line_error(result, fragment)
    assert sorted(p.name for p in (project / ".edgetune").glob("anvil-*.pid")) == before
