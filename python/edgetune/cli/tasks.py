"""`edgetune deploy`, `task create`, `rewards` and `withdraw`: the contract's users' commands."""

import json
from pathlib import Path
from typing import Annotated

import typer

from edgetune.cli.common import (
    UINT16_MAX,
    UINT256_MAX,
    WEI_PER_ETHER,
    ChainOption,
    ContractOption,
    DevAccountOption,
    JsonOption,
    KeystoreOption,
    NodePortOption,
    ReplacePendingOption,
    RpcUrlOption,
    app,
    connect_chain,
    console,
    contract_client,
    err_console,
    int_range,
    last_run_on,
    one_line_errors,
    parse_ether,
    parse_hash,
    plot_target,
)
from edgetune.cli.errors import InvalidOption

task_app = typer.Typer(help="Create and inspect fine-tuning tasks.", no_args_is_help=True)
app.add_typer(task_app, name="task")


@app.command("deploy")
@one_line_errors
def deploy_command(
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    port: NodePortOption = None,
    keystore: KeystoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy the EdgeTune contract and record it in deployments/<chainId>.json."""
    from edgetune.chain.deploy import deploy, save_deployment
    from edgetune.chain.errors import RecordUnreadable

    connection = connect_chain(chain, rpc_url, keystore, port)
    client, record = deploy(connection, connection.accounts[0])
    try:
        path = save_deployment(record)
    except RecordUnreadable as exc:  # deployed all the same: say where, so nothing is lost
        raise RecordUnreadable(
            f"EdgeTune deployed at {client.address} (block {record.block}) but not recorded: "
            f"{exc}; pass --contract {client.address}"
        ) from None
    if as_json:
        print(
            json.dumps(
                {
                    "address": client.address,
                    "chain_id": record.chain_id,
                    "block": record.block,
                    "tx_hash": record.tx_hash,
                    "record": str(path),
                }
            )
        )
    else:
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
    pool: Annotated[str, typer.Option(help="Reward pool in ether.")] = "1",
    rounds: Annotated[
        int, typer.Option(help="Number of rounds.", callback=int_range(1, UINT16_MAX))
    ] = 3,
    max_edges: Annotated[
        int, typer.Option(help="Most edges that may register.", callback=int_range(1, UINT16_MAX))
    ] = 8,
    min_stake: Annotated[str, typer.Option(help="Minimum stake in ether.")] = "0.1",
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    port: NodePortOption = None,
    keystore: KeystoreOption = None,
    contract: ContractOption = None,
    replace_pending: ReplacePendingOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create a task on the recorded deployment and fund its reward pool. Rerun after a
    receipt timeout, it awaits the pending transaction rather than creating a second task."""
    from edgetune.chain.types import TaskConfig

    hashes = {
        "--base-model-hash": base_model_hash,
        "--adapter-spec-hash": adapter_spec_hash,
        "--initial-global-hash": initial_global_hash,
    }
    model_hash, spec_hash, global_hash = (parse_hash(o, text) for o, text in hashes.items())
    pool_wei = parse_ether("--pool", pool, positive=True)
    min_stake_wei = parse_ether("--min-stake", min_stake, positive=False, bits=128)
    config = TaskConfig(
        base_model_hash=model_hash,
        adapter_spec_hash=spec_hash,
        initial_global_hash=global_hash,
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
    connection = connect_chain(chain, rpc_url, keystore, port)
    client = contract_client(connection, contract, 0)
    balance = connection.read(lambda: connection.w3.eth.get_balance(client.sender_address))
    if pool_wei > balance:
        raise InvalidOption(
            "--pool",
            pool,
            f"exceeds the {balance / WEI_PER_ETHER:g} ETH of {client.sender_address}",
        )
    if replace_pending:
        for tx_hash in connection.transport.replace_pending(client.sender):
            err_console.print(f"replaced pending transaction with {tx_hash}")
    task_id, receipt = client.create_task(config, pool_wei)
    block, gas = receipt["blockNumber"], receipt["gasUsed"]
    if as_json:
        print(
            json.dumps(
                {
                    "task_id": task_id,
                    "contract": client.address,
                    "pool_wei": pool_wei,
                    "block": block,
                    "gas_used": gas,
                }
            )
        )
    else:
        console.print(
            f"task {task_id} created on {client.address} with a pool of "
            f"{pool_wei / WEI_PER_ETHER:g} ETH (block {block}, gas {gas})"
        )


@app.command("rewards")
@one_line_errors
def rewards_command(
    task: Annotated[
        int | None,
        typer.Option(
            help="Task id [default: the last federation's on this chain].",
            callback=int_range(0, UINT256_MAX),
        ),
    ] = None,
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    port: NodePortOption = None,
    contract: ContractOption = None,
    from_block: Annotated[
        int,
        typer.Option(
            help="Where to start looking for the task's creation (a hint; any value "
            "gives the whole history)."
        ),
    ] = 0,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also write the figure here (PNG, or by suffix).", callback=plot_target),
    ] = None,
) -> None:
    """Who earned what, rebuilt from on-chain state and events only."""
    from edgetune.chain.history import load_history
    from edgetune.views import edges_table, history_json, plot_rewards, rounds_table

    connection = connect_chain(chain, rpc_url, None, port)
    if task is None:
        run = last_run_on(connection)
        if run is None:
            raise InvalidOption("--task", "missing", f"no federation ran on {connection.url}")
        task, contract, from_block = run.task_id, contract or run.contract, run.from_block
    history = load_history(contract_client(connection, contract, 0), task, from_block)
    if as_json:
        print(history_json(history))
    else:
        console.print(rounds_table(history), edges_table(history))
    if plot:
        try:
            written = plot_rewards(history, plot)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(plot)) from None
        if not as_json:
            console.print(f"figure written to {written}")


@app.command("withdraw")
@one_line_errors
def withdraw_command(
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    port: NodePortOption = None,
    keystore: KeystoreOption = None,
    dev_account: DevAccountOption = 1,
    contract: ContractOption = None,
    release_task: Annotated[
        int | None,
        typer.Option(
            "--release-stake",
            help="First release the stake of this task.",
            callback=int_range(0, UINT256_MAX),
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pay out everything the contract owes this account (rewards, released stakes, refunds)."""
    connection = connect_chain(chain, rpc_url, keystore, port)
    client = contract_client(connection, contract, dev_account)
    released = 0
    if release_task is not None:
        receipt = client.release_stake(release_task)
        (event,) = client.receipt_events(receipt, "StakeReleased")
        released = event.amount
    owed = client.owed(client.sender_address)
    receipt = client.withdraw()
    if as_json:
        print(
            json.dumps(
                {
                    "account": client.sender_address,
                    "contract": client.address,
                    "withdrawn_wei": owed,
                    "released_stake_wei": released,
                    "tx_hash": receipt["transactionHash"].to_0x_hex(),
                }
            )
        )
    else:
        console.print(f"withdrew {owed / WEI_PER_ETHER:.6f} ETH to {client.sender_address}")
