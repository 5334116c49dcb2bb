"""`edgetune agent`, `federation` and `case-study`: the commands that train and evaluate, so the
only ones that import the learning stack (inside their bodies, to keep start-up light)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgetune.agent.roles import BEHAVIOURS
from edgetune.cli.common import (
    DEFAULT_PORT,
    UINT16_MAX,
    UINT256_MAX,
    ChainOption,
    ContractOption,
    DevAccountOption,
    JsonOption,
    KeystoreOption,
    NodePortOption,
    PortOption,
    RpcUrlOption,
    app,
    connect_chain,
    console,
    contract_client,
    err_console,
    int_range,
    one_line_errors,
    parse_ether,
    plot_target,
    quiet_libraries,
)
from edgetune.cli.errors import InvalidOption
from edgetune.errors import EdgetuneError

if TYPE_CHECKING:
    from edgetune.learning import AdapterSpec

FEDERATION_CHAINS = ("anvil", "embedded")


@app.command("agent")
@one_line_errors
def agent_command(
    task: Annotated[
        int, typer.Option(help="Task id to work on.", callback=int_range(0, UINT256_MAX))
    ],
    data: Annotated[
        Path | None, typer.Option(help="Folder with train.jsonl and validation.jsonl.")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="A federation's plan file: every setting of edge --edge comes from it."),
    ] = None,
    edge: Annotated[int | None, typer.Option(help="Which edge of --plan to run.")] = None,
    chain: ChainOption = "anvil",
    rpc_url: RpcUrlOption = None,
    port: NodePortOption = None,
    keystore: KeystoreOption = None,
    dev_account: DevAccountOption = 1,
    contract: ContractOption = None,
    ipfs: Annotated[str, typer.Option(help="embedded[:PATH] | ipfs[:MULTIADDR]")] = "embedded",
    model: Annotated[
        Path | None, typer.Option(help="Local base model (else fetched by CID).")
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="The task's LoRA spec JSON.")] = None,
    stake: Annotated[str, typer.Option(help="Stake in ether when registering.")] = "0.5",
    steps: Annotated[
        int, typer.Option(help="Local training steps per round.", callback=int_range(1))
    ] = 40,
    lr: Annotated[float | None, typer.Option(help="Local learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Local batch size.")] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    shapley_exact: Annotated[
        int | None, typer.Option(help="Score exactly up to this many updates, sample above.")
    ] = None,
    behaviour: Annotated[
        str, typer.Option(help="A demo role: " + " | ".join(BEHAVIOURS) + " (see agent/roles.py).")
    ] = "honest",
    copy_of: Annotated[
        str | None, typer.Option(help="The copier role's source edge address.")
    ] = None,
    role_seed: Annotated[int, typer.Option(help="Seed of the poisoner's/copier's noise.")] = 0,
) -> None:
    """Run one edge: register, then train, commit, reveal, score, attest every round. Either
    --plan FILE --edge I (as `edgetune federation` starts its agents) or --data and the flags."""
    quiet_libraries()
    from dataclasses import replace

    from edgetune.agent.launch import build_agent
    from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
    from edgetune.agent.roles import Role
    from edgetune.agent.settings import AgentSettings
    from edgetune.contribution import ShapleyConfig
    from edgetune.learning import AdapterSpec, TrainConfig
    from edgetune.storage import open_store
    from edgetune.views import timings_table

    if plan is not None:
        if edge is None:
            raise InvalidOption("--plan", plan, "needs --edge I: which of its edges to run")
        federation = FederationPlan.load(plan)
        edge_spec, model_spec, ipfs = federation.edge(edge), federation.model, federation.store
        dev_account = edge_spec.dev_account
    else:
        if data is None:
            raise InvalidOption("--data", "missing", "give a data folder, or --plan FILE --edge I")
        if behaviour not in BEHAVIOURS:
            raise InvalidOption("--behaviour", behaviour, f"must be one of {', '.join(BEHAVIOURS)}")
        shapley = ShapleyConfig()
        if shapley_exact is not None:
            shapley = replace(shapley, exact_max_players=shapley_exact)
        settings = AgentSettings(
            stake=parse_ether("--stake", stake, positive=True),
            shapley=shapley,
            role=Role(behaviour, role_seed, copy_of),  # type: ignore[arg-type]
        )
        train = TrainConfig(steps=steps, seed=seed)
        train = replace(train, lr=lr if lr is not None else train.lr)
        train = replace(train, batch_size=batch_size or train.batch_size)
        edge_spec = EdgeSpec(0, dev_account, data, train, settings)
        adapter = load_spec(spec) if spec else AdapterSpec()
        model_spec = ModelSpec("text", model, adapter)
    connection = connect_chain(chain, rpc_url, keystore, port)
    client = contract_client(connection, contract, dev_account)
    agent = build_agent(
        client,
        task,
        open_store(ipfs),
        edge_spec,
        model_spec,
        log=lambda line: console.print(f"[{client.sender_address[:10]}] {line}", markup=False),
    )
    agent.run()
    console.print(timings_table(agent.timings, f"edge {client.sender_address}: time per round"))
    console.print(f"task {task} is over; owed {client.owed(client.sender_address) / 1e18:.6f} ETH")


def load_spec(path: Path) -> "AdapterSpec":
    """`--spec FILE`: a LoRA spec's JSON, refused naming the file when it is not one."""
    from edgetune.learning import AdapterSpec

    try:
        text = path.read_bytes().decode()  # UnicodeDecodeError is a ValueError
        if not isinstance(json.loads(text), dict):
            raise ValueError("not a JSON object")
        return AdapterSpec.from_json(text)
    except (ValueError, EdgetuneError) as exc:
        raise InvalidOption("--spec", path, str(exc)) from None


@app.command("federation")
@one_line_errors
def federation_command(
    edges: Annotated[int, typer.Option(help="Number of edges.", callback=int_range(1))] = 3,
    rounds: Annotated[
        int, typer.Option(help="Number of rounds.", callback=int_range(1, UINT16_MAX))
    ] = 3,
    free_riders: Annotated[
        int, typer.Option(help="Edges that submit zero updates.", callback=int_range(0))
    ] = 0,
    copiers: Annotated[
        int, typer.Option(help="Edges that submit near-copies of edge 0's.", callback=int_range(0))
    ] = 0,
    lazy: Annotated[
        int, typer.Option(help="Validators that score 0 without evaluating.", callback=int_range(0))
    ] = 0,
    poisoners: Annotated[
        int, typer.Option(help="Edges that submit destructive noise.", callback=int_range(0))
    ] = 0,
    steps: Annotated[
        int, typer.Option(help="Local training steps per round.", callback=int_range(1))
    ] = 60,
    model: Annotated[str, typer.Option(help="tiny | smollm2 | path to a model folder")] = "tiny",
    chain: Annotated[
        str, typer.Option(help="anvil (processes) | embedded (one process)")
    ] = "anvil",
    rpc_url: Annotated[
        str | None,
        typer.Option(
            "--rpc-url",
            help="Run on the node already at this URL (not restarted if it dies) instead of "
            "starting anvil on --port.",
        ),
    ] = None,
    port: PortOption = DEFAULT_PORT,
    optimism: Annotated[
        bool,
        typer.Option(
            "--optimism",
            help="Start anvil as an OP-stack L2 that charges the L1 data fee (docs/l2.md).",
        ),
    ] = False,
    ipfs: Annotated[str, typer.Option(help="embedded | ipfs[:MULTIADDR]")] = "embedded",
    plot: Annotated[
        Path, typer.Option(help="Where to write the rewards figure.", callback=plot_target)
    ] = Path(".edgetune/federation/rewards.png"),
    as_json: JsonOption = False,
) -> None:
    """Run a whole federation locally: deploy, publish a task, N edges with non-IID data."""
    if chain not in FEDERATION_CHAINS:
        raise InvalidOption("--chain", chain, f"must be {' or '.join(FEDERATION_CHAINS)}")
    if rpc_url and chain == "embedded":
        raise InvalidOption("--rpc-url", rpc_url, "needs --chain anvil (embedded runs in-process)")
    if optimism and (chain == "embedded" or rpc_url):
        # py-evm has no OP mode, and a node given by URL is whatever it already is
        given = f"with --rpc-url {rpc_url}" if rpc_url else "with --chain embedded"
        raise InvalidOption("--optimism", given, "it starts anvil as an L2; give one or the other")
    quiet_libraries()
    from edgetune.agent.federation import FederationConfig, run_in_process
    from edgetune.agent.processes import run_processes
    from edgetune.chain.connect import DEV_ACCOUNTS, connect
    from edgetune.chain.history import load_history
    from edgetune.chain.nodes import AnvilNode
    from edgetune.learning import TrainConfig, resolve_base_model
    from edgetune.views import edges_table, history_json, plot_rewards, rounds_table, timings_table

    config = FederationConfig(
        edges=edges,
        rounds=rounds,
        free_riders=free_riders,
        copiers=copiers,
        lazy=lazy,
        poisoners=poisoners,
        train=TrainConfig(steps=steps),
        model_dir=None if model == "tiny" else resolve_base_model(model),
        store=ipfs,
    )
    # With --json stdout carries the JSON alone; progress goes to stderr.
    out = err_console if as_json else console

    def log(line: str) -> None:
        out.print(line, markup=False)

    if chain == "embedded":
        connection = connect("embedded")
        config.check_accounts(len(connection.accounts))  # before any data is written
        result = run_in_process(config, log=log, chain=connection)
        plan = result.plan
        history = load_history(result.owner, result.task.task_id, result.deployment_block)
        out.print(timings_table(result.timings, "time per round, summed over edges"))
    else:
        # A node given by URL is someone else's: the runner uses it but does not restart it.
        node: AnvilNode | None = None
        if rpc_url:
            url = rpc_url
        else:
            config.check_accounts(DEV_ACCOUNTS)  # before a node is started for nothing
            node = AnvilNode(port=port, optimism=optimism)
            node.start()
            url = node.url
        connection = connect_chain("anvil", url, None)
        config.check_accounts(len(connection.accounts))
        plan, record = run_processes(config, connection, url, node, not as_json, log)
        client = contract_client(connection, record.contract, 0)
        history = load_history(client, record.task_id, record.from_block)
    roles = plan.roles({i: account.address for i, account in enumerate(connection.accounts)})
    if as_json:
        typer.echo(history_json(history, roles))
    else:
        console.print(rounds_table(history), edges_table(history, roles))
    out.print(f"rewards figure: {plot_rewards(history, plot, roles)}")


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
    scenario: Annotated[
        str, typer.Option(help="headroom (label-skewed peers) | dominant (one large hospital)")
    ] = "headroom",
    seeds: Annotated[
        list[int] | None, typer.Option("--seed", help="A seed to run (repeat it) [0 1 2].")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Seeds run at once, one process and core each [cores]."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="NAME=VALUE: change one setting (repeat it), e.g. rounds=3."),
    ] = None,
) -> None:
    """Medical case study: chest X-ray dialogues, four arms (base, each hospital alone, on-chain
    collaboration, pooled) per seed, with on-chain rewards; writes one report per seed and a
    summary over the seeds, with figures."""
    import os
    from dataclasses import replace

    from edgetune.casestudy.collaborative import run_case_studies
    from edgetune.casestudy.settings import CaseStudySettings

    if scenario not in ("headroom", "dominant"):
        raise typer.BadParameter(f"--scenario must be headroom or dominant, got {scenario!r}")
    chosen = seeds or [0, 1, 2]
    if len(set(chosen)) != len(chosen) or min(chosen) < 0:
        raise typer.BadParameter(f"--seed values must be distinct and >= 0, got {chosen}")
    runs = CaseStudySettings.full_run if full else CaseStudySettings.quick_run
    settings = replace(runs(scenario), language_model=language_model)  # type: ignore[arg-type]
    settings = settings.overridden(overrides or [])
    jobs = jobs or min(len(chosen), os.cpu_count() or 1)
    out = out or _default_case_study_dir(settings.quick, scenario)
    report, _ = run_case_studies(
        settings,
        chosen,
        out,
        workdir,
        log=lambda line: console.print(line, markup=False),
        jobs=jobs,
    )
    console.print(f"report written to {report}")


def _default_case_study_dir(quick: bool, scenario: str) -> Path:
    """docs (quick) or docs/full, under docs/dominant for the second scenario."""
    root = Path("docs") if scenario == "headroom" else Path("docs/dominant")
    return root if quick else root / "full"
