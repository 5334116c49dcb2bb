"""The `edgetune` command. This module only wires commands to the subpackages: each command
fetches its data from them, then renders it (a rich table, or JSON with --json)."""

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from edgetune.agent.case_study import run_case_study
from edgetune.agent.edge import AgentSettings
from edgetune.agent.federation import FederationConfig, run_in_process
from edgetune.agent.launch import build_agent
from edgetune.agent.processes import RunRecord, run_processes
from edgetune.agent.roles import BEHAVIOURS, Role
from edgetune.casestudy.arms import CaseStudySettings
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.compiler import load_artifact
from edgetune.chain.connect import Chain, connect
from edgetune.chain.deploy import CONTRACT_NAME, deploy, load_client, save_deployment
from edgetune.chain.history import load_history
from edgetune.chain.nodes import DEFAULT_PORT, AnvilNode, NodeStatus
from edgetune.chain.types import TaskConfig
from edgetune.contribution import ShapleyConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec, TrainConfig, resolve_base_model
from edgetune.storage import open_store
from edgetune.views import (
    edges_table,
    history_json,
    plot_rewards,
    rounds_table,
    timings_table,
)

app = typer.Typer(
    help="Edge servers fine-tune one shared model together, coordinated and paid on chain.",
    no_args_is_help=True,
)
chain_app = typer.Typer(help="Run the local development chain (anvil).", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
task_app = typer.Typer(help="Create and inspect fine-tuning tasks.", no_args_is_help=True)
app.add_typer(task_app, name="task")

# Logs (make demo > file, CI) get wide tables too; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)
F = TypeVar("F", bound=Callable[..., Any])
PortOption = Annotated[int, typer.Option("--port", help="JSON-RPC port on 127.0.0.1.")]
ChainOption = Annotated[
    str,
    typer.Option(
        "--chain",
        help="embedded | anvil | hardhat | http(s) JSON-RPC URL (key from $EDGETUNE_PRIVATE_KEY).",
    ),
]
RpcUrlOption = Annotated[
    str | None, typer.Option("--rpc-url", help="URL of the anvil/hardhat node (default :8545).")
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option("--keystore", help="Signing key file; password from $EDGETUNE_KEYSTORE_PASSWORD."),
]
WEI_PER_ETHER = 10**18


def one_line_errors(command: F) -> F:
    """Print an EdgetuneError as its one-line message and exit 1, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EdgetuneError as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@chain_app.command("up")
@one_line_errors
def chain_up(
    block_time: Annotated[
        float | None, typer.Option("--block-time", help="Mine every N seconds (default: per tx).")
    ] = None,
    port: PortOption = DEFAULT_PORT,
    state: Annotated[
        Path | None, typer.Option("--state", help="Chain state file (.edgetune/anvil-state.json).")
    ] = None,
) -> None:
    """Start anvil in the background (or reuse the running one); its chain survives restarts."""
    node = AnvilNode(port=port, block_time=block_time, state_file=state)
    pid = node.start()
    console.print(f"anvil running: pid {pid}, {node.url}, state {node.state_file}")


@chain_app.command("down")
@one_line_errors
def chain_down(port: PortOption = DEFAULT_PORT) -> None:
    """Stop the background anvil; its chain is saved to the state file."""
    stopped = AnvilNode(port=port).stop()
    console.print("anvil stopped" if stopped else f"no anvil was running on port {port}")


@chain_app.command("status")
@one_line_errors
def chain_status(
    port: PortOption = DEFAULT_PORT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show whether anvil runs, its pid, port, block number and chain id."""
    status = AnvilNode(port=port).status()
    if as_json:
        print(json.dumps(asdict(status)))
    else:
        console.print(_status_table(status))


def _status_table(status: NodeStatus) -> Table:
    table = Table(title="local chain")
    for column in ("node", "state", "pid", "port", "block", "chain id"):
        table.add_column(column, justify="right" if column != "node" else "left")
    state = "[green]running[/green]" if status.running else "[red]stopped[/red]"
    cells = (status.pid, status.port, status.block_number, status.chain_id)
    table.add_row(status.kind, state, *("-" if cell is None else str(cell) for cell in cells))
    return table


def _connect(chain: str, rpc_url: str | None, keystore: Path | None) -> Chain:
    return connect(chain, keystore=keystore, url=rpc_url)


@app.command("deploy")
@one_line_errors
def deploy_command(
    chain: ChainOption = "anvil", rpc_url: RpcUrlOption = None, keystore: KeystoreOption = None
) -> None:
    """Deploy the EdgeTune contract and record it in deployments/<chainId>.json."""
    connection = _connect(chain, rpc_url, keystore)
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
    connection = _connect(chain, rpc_url, keystore)
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


DevAccountOption = Annotated[
    int, typer.Option("--dev-account", help="Index of the local chain's dev account to sign with.")
]
ContractOption = Annotated[
    str | None, typer.Option("--contract", help="EdgeTune address (default: deployments/).")
]


def _client(chain: Chain, contract: str | None, dev_account: int) -> EdgeTuneClient:
    signer = chain.accounts[dev_account % len(chain.accounts)]
    if contract is None:
        return load_client(chain, signer)
    return EdgeTuneClient(chain, contract, load_artifact(CONTRACT_NAME).abi, signer)


@app.command("agent")
@one_line_errors
def agent_command(
    task: Annotated[int, typer.Option(help="Task id to work on.")],
    data: Annotated[Path, typer.Option(help="Folder with train.jsonl and validation.jsonl.")],
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    dev_account: DevAccountOption = 1,
    contract: ContractOption = None,
    ipfs: Annotated[str, typer.Option(help="embedded[:PATH] | ipfs[:MULTIADDR]")] = "embedded",
    model: Annotated[
        Path | None, typer.Option(help="Local base model (else fetched by CID).")
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="The task's LoRA spec JSON.")] = None,
    stake: Annotated[float, typer.Option(help="Stake in ether when registering.")] = 0.5,
    steps: Annotated[int, typer.Option(help="Local training steps per round.")] = 40,
    lr: Annotated[float, typer.Option(help="Local learning rate.")] = TrainConfig.lr,
    batch_size: Annotated[int, typer.Option(help="Local batch size.")] = TrainConfig.batch_size,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    shapley_exact: Annotated[
        int, typer.Option(help="Score exactly up to this many updates, sample above.")
    ] = ShapleyConfig.exact_max_players,
    behaviour: Annotated[
        str, typer.Option(help="A demo role: " + " | ".join(BEHAVIOURS) + " (see agent/roles.py).")
    ] = "honest",
    copy_of: Annotated[
        str | None, typer.Option(help="The copier role's source edge address.")
    ] = None,
    role_seed: Annotated[int, typer.Option(help="Seed of the poisoner's/copier's noise.")] = 0,
) -> None:
    """Run one edge: register, then train, commit, reveal, score, attest every round."""
    if behaviour not in BEHAVIOURS:
        raise typer.BadParameter(f"--behaviour must be one of {', '.join(BEHAVIOURS)}")
    connection = _connect(chain, rpc_url, keystore)
    client = _client(connection, contract, dev_account)
    settings = AgentSettings(
        stake=int(stake * WEI_PER_ETHER),
        shapley=ShapleyConfig(exact_max_players=shapley_exact),
        role=Role(behaviour, role_seed, copy_of),  # type: ignore[arg-type]
    )
    adapter_spec = AdapterSpec.from_json(spec.read_text()) if spec else None
    edge = build_agent(
        client,
        task,
        open_store(ipfs),
        data,
        settings,
        TrainConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed),
        adapter_spec,
        model,
        log=lambda line: console.print(f"[{client.sender_address[:10]}] {line}"),
    )
    edge.run()
    console.print(timings_table(edge.timings, f"edge {client.sender_address}: time per round"))
    console.print(f"task {task} is over; owed {client.owed(client.sender_address) / 1e18:.6f} ETH")


@app.command("federation")
@one_line_errors
def federation_command(
    edges: Annotated[int, typer.Option(help="Number of edges.")] = 3,
    rounds: Annotated[int, typer.Option(help="Number of rounds.")] = 3,
    free_riders: Annotated[int, typer.Option(help="Edges that submit zero updates.")] = 0,
    copiers: Annotated[int, typer.Option(help="Edges that submit near-copies of edge 0's.")] = 0,
    lazy: Annotated[int, typer.Option(help="Validators that score 0 without evaluating.")] = 0,
    poisoners: Annotated[int, typer.Option(help="Edges that submit destructive noise.")] = 0,
    steps: Annotated[int, typer.Option(help="Local training steps per round.")] = 60,
    model: Annotated[str, typer.Option(help="tiny | smollm2 | path to a model folder")] = "tiny",
    chain: Annotated[
        str, typer.Option(help="anvil (processes) | embedded (one process)")
    ] = "anvil",
    port: PortOption = DEFAULT_PORT,
    ipfs: Annotated[str, typer.Option(help="embedded | ipfs[:MULTIADDR]")] = "embedded",
    plot: Annotated[Path, typer.Option(help="Where to write the rewards figure.")] = Path(
        ".edgetune/federation/rewards.png"
    ),
) -> None:
    """Run a whole federation locally: deploy, publish a task, N edges with non-IID data."""
    config = FederationConfig(
        edges=edges,
        rounds=rounds,
        free_riders=free_riders,
        copiers=copiers,
        lazy=lazy,
        poisoners=poisoners,
        train=TrainConfig(steps=steps),
        model_dir=_model_dir(model),
        store=ipfs,
    )
    if chain == "embedded":
        result = run_in_process(config, log=lambda line: console.print(line, markup=False))
        accounts = result.chain.accounts
        history = load_history(result.owner, result.task.task_id, result.deployment_block)
        console.print(timings_table(result.timings, "time per round, summed over edges"))
    else:
        node = AnvilNode(port=port)
        node.start()
        connection = connect("anvil", url=node.url)
        record = run_processes(config, connection, node.url)
        accounts = connection.accounts
        client = EdgeTuneClient(
            connection, record.contract, load_artifact(CONTRACT_NAME).abi, connection.accounts[0]
        )
        history = load_history(client, record.task_id, record.from_block)
    roles = {accounts[1 + i].address: f"{i} {config.behaviour(i)}" for i in range(edges)}
    console.print(rounds_table(history), edges_table(history, roles))
    console.print(f"rewards figure: {plot_rewards(history, plot, roles)}")


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG figure here.")] = None,
) -> None:
    """Who earned what, rebuilt from on-chain state and events only."""
    if task is None:
        record = RunRecord.load()
        task, contract, rpc_url = (
            record.task_id,
            contract or record.contract,
            rpc_url or record.rpc_url,
        )
    connection = _connect(chain, rpc_url, None)
    history = load_history(_client(connection, contract, 0), task, from_block)
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
    client = _client(_connect(chain, rpc_url, keystore), contract, dev_account)
    if release_task is not None:
        client.release_stake(release_task)
    owed = client.owed(client.sender_address)
    client.withdraw()
    console.print(f"withdrew {owed / WEI_PER_ETHER:.6f} ETH to {client.sender_address}")


@app.command("case-study")
@one_line_errors
def case_study_command(
    full: Annotated[bool, typer.Option("--full/--quick", help="Full run (slow) or quick.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Where case-study.md and its figures go [quick: docs, full: docs/full]"),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Chain state and content store.")] = Path(
        ".edgetune/case-study"
    ),
    language_model: Annotated[
        str, typer.Option(help="The VLM's language model: tiny | smollm2 | path to a folder")
    ] = "tiny",
) -> None:
    """Medical case study: chest X-ray dialogues, four arms (base, each hospital alone, on-chain
    collaboration, pooled), with on-chain rewards; writes the report and figures."""
    settings = CaseStudySettings.full_run() if full else CaseStudySettings.quick_run()
    settings = replace(settings, language_model=language_model)
    out = out or Path("docs" if settings.quick else "docs/full")
    report, _ = run_case_study(
        settings, out, workdir, log=lambda line: console.print(line, markup=False)
    )
    console.print(f"report written to {report}")


def _model_dir(model: str) -> Path | None:
    return None if model == "tiny" else resolve_base_model(model)


if __name__ == "__main__":
    app()
