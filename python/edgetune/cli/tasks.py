"""`edgetune deploy`, `task create`, `rewards` and `withdraw`: the contract's users' commands."""

from pathlib import Path
from typing import Annotated

import typer

from edgetune.cli.common import (
    WEI_PER_ETHER,
    ChainOption,
    ContractOption,
    DevAccountOption,
    JsonOption,
    KeystoreOption,
    RpcUrlOption,
    app,
    connect_chain,
    console,
    contract_client,
    one_line_errors,
)

task_app = typer.Typer(help="Create and inspect fine-tuning tasks.", no_args_is_help=True)
app.add_typer(task_app, name="task")


@app.command("deploy")
@one_line_errors
def deploy_command(
    chain: ChainOption = "anvil", rpc_url: RpcUrlOption = None, keystore: KeystoreOption = None
) -> None:
    """Deploy the EdgeTune contract and record it in deployments/<chainId>.json."""
    from edgetune.chain.deploy import deploy, save_deployment

    connection = connect_chain(chain, rpc_url, keystore)
    client, record = deploy(connection, connection.accounts[0])
    path = save_deployment(record)
    console.print(
        f"EdgeTune deployed at {client.address} (chain {record.chain_id}, block "
        f"{record.block}); recorded in {path}"
    )


@task_app.command("create")
@one_line_errors
def task_create(
    base_model_hash: Annotated[str, typer.Option(help="sha256 of the base model files (hex).")],
    adapter_spec_hash: Annotated[str, typer.Option(help="sha256 of the LoRA spec (hex).")],
    initial_global_hash: Annotated[str, typer.Option(help="sha256 of the round-0 adapter.")],
    initial_global_cid: Annotated[str, typer.Option(help="CID of the round-0 adapter.")],
    base_model_uri: Annotated[str, typer.Option(help="Name or URI of the base model.")] = "",
    base_model_cid: Annotated[str, typer.Option(help="CID of the base model archive.")] = "",
    pool: Annotated[float, typer.Option(help="Reward pool in ether.")] = 1.0,
    rounds: Annotated[int, typer.Option(help="Number of rounds.")] = 3,
    max_edges: Annotated[int, typer.Option(help="Most edges that may register.")] = 8,
    min_stake: Annotated[float, typer.Option(help="Minimum stake in ether.")] = 0.1,
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
) -> None:
    """Create a task on the recorded deployment and fund its reward pool."""
    from edgetune.chain.deploy import load_client
    from edgetune.chain.types import TaskConfig

    connection = connect_chain(chain, rpc_url, keystore)
    client = load_client(connection, connection.accounts[0])
    min_stake_wei = int(min_stake * WEI_PER_ETHER)
    config = TaskConfig(
        base_model_hash=bytes.fromhex(base_model_hash.removeprefix("0x")),
        adapter_spec_hash=bytes.fromhex(adapter_spec_hash.removeprefix("0x")),
        initial_global_hash=bytes.fromhex(initial_global_hash.removeprefix("0x")),
        base_model_uri=base_model_uri,
        base_model_cid=base_model_cid,
        initial_global_cid=initial_global_cid,
        rounds=rounds,
        max_edges=max_edges,
        min_stake=min_stake_wei,
        slash_absent=min_stake_wei // 4,
        slash_non_reveal=min_stake_wei // 2,
        slash_invalid=min_stake_wei,
    )
    task_id, receipt = client.create_task(config, int(pool * WEI_PER_ETHER))
    console.print(
        f"task {task_id} created with a pool of {pool} ETH "
        f"(block {receipt['blockNumber']}, gas {receipt['gasUsed']})"
    )


@app.command("rewards")
@one_line_errors
def rewards_command(
    task: Annotated[
        int | None, typer.Option(help="Task id (default: the last federation).")
    ] = None,
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    contract: ContractOption = None,
    from_block: Annotated[int, typer.Option(help="First block to read events from.")] = 0,
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG figure here.")] = None,
) -> None:
    """Who earned what, rebuilt from on-chain state and events only."""
    from edgetune.chain.deploy import RunRecord
    from edgetune.chain.history import load_history
    from edgetune.views import edges_table, history_json, plot_rewards, rounds_table

    if task is None:
        record = RunRecord.load()
        task, contract, rpc_url = (
            record.task_id,
            contract or record.contract,
            rpc_url or record.rpc_url,
        )
    connection = connect_chain(chain, rpc_url, None)
    history = load_history(contract_client(connection, contract, 0), task, from_block)
    if as_json:
        print(history_json(history))
    else:
        console.print(rounds_table(history), edges_table(history))
    if plot:
        console.print(f"figure written to {plot_rewards(history, plot)}")


@app.command("withdraw")
@one_line_errors
def withdraw_command(
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    dev_account: DevAccountOption = 1,
    contract: ContractOption = None,
    release_task: Annotated[
        int | None, typer.Option("--release-stake", help="First release the stake of this task.")
    ] = None,
) -> None:
    """Pay out everything the contract owes this account (rewards, released stakes, refunds)."""
    client = contract_client(connect_chain(chain, rpc_url, keystore), contract, dev_account)
    if release_task is not None:
        client.release_stake(release_task)
    owed = client.owed(client.sender_address)
    client.withdraw()
    console.print(f"withdrew {owed / WEI_PER_ETHER:.6f} ETH to {client.sender_address}")
