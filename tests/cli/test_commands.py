"""Each command's normal use against a real anvil: deploy, task create, a finished task's
rewards (tables and --json), withdraw, chain status; and that withdraw, rewards and chain status
follow the last run's node without repeating its port."""

import json

import pytest

from edgetune.chain.deploy import open_contract
from edgetune.chain.history import load_history
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.records import RunRecord
from edgetune.views import edge_label, history_json

from ..contracts.rounds import ETHER, TaskHarness
from ..ports import free_port
from .conftest import Project

pytestmark = pytest.mark.anvil

HASH = "ab" * 32
STAKE = 2 * ETHER
POOL = 6 * ETHER


@pytest.fixture(scope="module")
def finished(project: Project, deployed: dict) -> int:
    """A one-round task run to the end by three edges (dev accounts 1-3); edge 1 then
    released its stake and withdrew everything through the CLI."""
    project.chain.forget_nonces()  # the CLI sent from account 0 through its own connection
    owner = open_contract(project.chain, deployed["address"], project.chain.accounts[0])
    harness = TaskHarness(project.chain, owner)
    edges = harness.edges(3)
    task_id = harness.started_task(edges, stake=STAKE, pool=POOL, rounds=1)
    harness.full_round(task_id, 1, edges, [500_000, 300_000, 200_000])
    project.chain.forget_nonces()
    return task_id


def test_deploy_records_the_contract_and_prints_json(project: Project, deployed: dict):
    recorded = json.loads((project.root / "deployments" / "31337.json").read_text())
    assert recorded["address"] == deployed["address"] and recorded["block"] == deployed["block"]
    assert project.chain.w3.eth.get_code(deployed["address"])


def test_task_create_funds_the_pool_exactly(project: Project, deployed: dict):
    result = project.cli(
        "task", "create", "--rpc-url", project.url, "--json", "--pool", "0.3", "--rounds", "2",
        "--base-model-hash", HASH, "--adapter-spec-hash", "0x" + HASH,
        "--initial-global-hash", HASH, "--initial-global-cid", "bafy0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["contract"] == deployed["address"]
    assert created["pool_wei"] == 3 * 10**17  # exact: 0.3 as a float would be 299999999999999968
    owner = open_contract(project.chain, deployed["address"], project.chain.accounts[0])
    assert owner.task_funds(created["task_id"]).pool == 3 * 10**17


def test_rewards_json_separates_funded_remaining_earned_and_released_stake(
    project: Project, deployed: dict, finished: int
):
    withdraw = project.cli(
        "withdraw", "--rpc-url", project.url, "--dev-account", "1",
        "--release-stake", finished, "--json",
    )  # fmt: skip
    assert withdraw.exit_code == 0, withdraw.output
    paid = json.loads(withdraw.stdout)
    assert paid["released_stake_wei"] == STAKE

    result = project.cli("rewards", "--rpc-url", project.url, "--task", finished, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    owner = open_contract(project.chain, deployed["address"], project.chain.accounts[0])
    paid_out = sum(r["paid"] for r in data["rounds"])
    assert data["funded"] == POOL
    assert data["remaining"] == owner.task_funds(finished).pool == POOL - paid_out
    assert data["phase"] == "FINISHED"
    edges = data["edges"]
    assert [e["address"] for e in edges] == owner.edges_of(finished)
    assert [e["index"] for e in edges] == [0, 1, 2]
    assert {e["state"] for e in edges} == {"finished"}  # not "active" once the task is over
    first = edges[0]
    assert first["address"] == project.chain.accounts[1].address
    assert first["released_stake"] == STAKE and first["stake"] == 0
    rewards = [*first["trainer_reward"].values(), *first["validator_reward"].values()]
    assert first["earned"] == sum(rewards) > 0  # earnings alone: the stake is not in them
    assert paid["withdrawn_wei"] == first["earned"] + STAKE == first["withdrawn"]
    assert [e["released_stake"] for e in edges[1:]] == [0, 0]
    assert sum(e["earned"] for e in edges) == paid_out


def test_rewards_tables_name_edges_by_index_and_short_address(project: Project, finished: int):
    result = project.cli("rewards", "--rpc-url", project.url, "--task", finished)
    assert result.exit_code == 0, result.output
    address = project.chain.accounts[2].address
    assert f"#1 {address[:6]}…{address[-4:]}" in result.stdout
    assert "funded 6.000000 ETH" in result.stdout and "remaining" in result.stdout


def test_roles_label_edges_the_same_in_json_and_tables(project: Project, deployed, finished):
    owner = open_contract(project.chain, deployed["address"], project.chain.accounts[0])
    history = load_history(owner, finished)
    lazy = history.edges[2]
    roles = {lazy.address: "lazy"}
    assert edge_label(lazy, roles) == f"#2 lazy {lazy.address[:6]}…{lazy.address[-4:]}"
    shown = json.loads(history_json(history, roles))["edges"][2]
    assert (shown["label"], shown["role"]) == (edge_label(lazy, roles), "lazy")


def test_any_from_block_gives_the_whole_history(project: Project, finished: int):
    whole = project.cli("rewards", "--rpc-url", project.url, "--task", finished, "--json")
    created = json.loads(whole.stdout)["created_block"]
    for start in (created + 1, created + 40, 10**9, -5):
        later = project.cli(
            "rewards", "--rpc-url", project.url, "--task", finished, "--json",
            "--from-block", start,
        )  # fmt: skip
        assert later.exit_code == 0, later.output
        assert json.loads(later.stdout) == json.loads(whole.stdout)


def test_withdraw_rewards_and_chain_status_follow_the_last_run(
    project: Project, deployed: dict, finished: int
):
    RunRecord(project.url, deployed["address"], finished, deployed["block"]).save(
        RunRecord.path(project.root)
    )
    # No --rpc-url, no --port: the run's node, not :8545.
    status = project.cli("chain", "status", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["port"] == project.node.port
    assert json.loads(status.stdout)["running"] is True
    rewards = project.cli("rewards", "--json")
    assert rewards.exit_code == 0, rewards.output
    assert json.loads(rewards.stdout)["task_id"] == finished
    withdraw = project.cli("withdraw", "--dev-account", "2", "--json")
    assert withdraw.exit_code == 0, withdraw.output
    assert json.loads(withdraw.stdout)["account"] == project.chain.accounts[2].address
    assert project.cli("withdraw", "--port", project.node.port, "--dev-account", "3").exit_code == 0


def test_commands_journal_unconfirmed_transactions_in_the_project(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    """A rerun after a receipt timeout must find the first run's pending transaction (the
    transport then awaits it instead of sending the same intent twice): the journal lives on
    disk in the project, not in the process."""
    from edgetune.cli.common import connect_chain

    monkeypatch.setenv("EDGETUNE_ROOT", str(project.root))
    journal = connect_chain("anvil", project.url, None).transport.journal
    genesis = project.chain.w3.eth.get_block(0)["hash"].hex()
    assert journal.directory == project.root / ".edgetune" / "transactions" / (
        f"genesis-{genesis.removeprefix('0x')[:16]}"
    )
    assert connect_chain("embedded", None, None).transport.journal.directory is None


def test_the_journal_of_one_chain_is_not_another_chains(project: Project, tmp_path):
    """A fresh dev chain has the same id and accounts as the last one: its pending transactions
    must stay with it (a stale one would be resent into, or awaited on, the new chain)."""
    from edgetune.chain.connect import connect

    with AnvilNode(port=free_port(), state_file=tmp_path / "other.json") as other:
        here = connect("anvil", url=project.url, journal=tmp_path).transport.journal
        there = connect("anvil", url=other.url, journal=tmp_path).transport.journal
    assert here.chain_id == there.chain_id and here.directory != there.directory
