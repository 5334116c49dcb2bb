"""`edgetune agent`, `federation` and `case-study`: the commands that train and evaluate, so the
only ones that import the learning stack (inside their bodies, to keep start-up light)."""

from pathlib import Path
from typing import Annotated

import typer

from edgetune.agent.roles import BEHAVIOURS
from edgetune.cli.common import (
    DEFAULT_PORT,
    WEI_PER_ETHER,
    ChainOption,
    ContractOption,
    DevAccountOption,
    JsonOption,
    KeystoreOption,
    PortOption,
    RpcUrlOption,
    app,
    connect_chain,
    console,
    contract_client,
    err_console,
    one_line_errors,
)
from edgetune.cli.errors import InvalidOption


@app.command("agent")
@one_line_errors
def agent_command(
    task: Annotated[int, typer.Option(help="Task id to work on.")],
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
    from dataclasses import replace

    from edgetune.agent.edge import AgentSettings
    from edgetune.agent.launch import build_agent
    from edgetune.agent.plan import EdgeSpec, FederationPlan, ModelSpec
    from edgetune.agent.roles import Role
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
            stake=int(stake * WEI_PER_ETHER),
            shapley=shapley,
            role=Role(behaviour, role_seed, copy_of),  # type: ignore[arg-type]
        )
        train = TrainConfig(steps=steps, seed=seed)
        train = replace(train, lr=lr if lr is not None else train.lr)
        train = replace(train, batch_size=batch_size or train.batch_size)
        edge_spec = EdgeSpec(0, dev_account, data, train, settings)
        adapter = AdapterSpec.from_json(spec.read_text()) if spec else AdapterSpec()
        model_spec = ModelSpec("text", model, adapter)
    connection = connect_chain(chain, rpc_url, keystore)
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
    as_json: JsonOption = False,
) -> None:
    """Run a whole federation locally: deploy, publish a task, N edges with non-IID data."""
    from edgetune.agent.federation import FederationConfig, run_in_process
    from edgetune.agent.processes import run_processes
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
        result = run_in_process(config, log=log)
        connection, plan = result.chain, result.plan
        history = load_history(result.owner, result.task.task_id, result.deployment_block)
        out.print(timings_table(result.timings, "time per round, summed over edges"))
    else:
        node = AnvilNode(port=port)
        node.start()
        connection = connect_chain("anvil", node.url, None)
        plan, record = run_processes(config, connection, node.url, node, not as_json, log)
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
) -> None:
    """Medical case study: chest X-ray dialogues, four arms (base, each hospital alone, on-chain
    collaboration, pooled), with on-chain rewards; writes the report and figures."""
    from dataclasses import replace

    from edgetune.casestudy.arms import CaseStudySettings
    from edgetune.casestudy.collaborative import run_case_study

    settings = CaseStudySettings.full_run() if full else CaseStudySettings.quick_run()
    settings = replace(settings, language_model=language_model)
    out = out or Path("docs" if settings.quick else "docs/full")
    report, _ = run_case_study(
        settings, out, workdir, log=lambda line: console.print(line, markup=False)
    )
    console.print(f"report written to {report}")
