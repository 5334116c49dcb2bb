"""`edgetune chain up|down|status`: the local development chain (anvil)."""

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgetune.chain.nodes import AnvilNode, NodeStatus
from edgetune.cli.common import (
    DEFAULT_PORT,
    JsonOption,
    NodePortOption,
    PortOption,
    app,
    console,
    node_port,
    one_line_errors,
)
from edgetune.cli.errors import InvalidOption

chain_app = typer.Typer(help="Run the local development chain (anvil).", no_args_is_help=True)
app.add_typer(chain_app, name="chain")


@chain_app.command("up")
@one_line_errors
def chain_up(
    block_time: Annotated[
        float | None, typer.Option("--block-time", help="Mine every N seconds (default: per tx).")
    ] = None,
    port: PortOption = DEFAULT_PORT,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Chain state file (.edgetune/anvil-<port>-state.json)."),
    ] = None,
    optimism: Annotated[
        bool,
        typer.Option(
            "--optimism",
            help="Run an OP-stack L2 (chain id 901) that charges the L1 data fee (docs/l2.md).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start anvil in the background (or reuse the running one); its chain survives restarts."""
    if block_time is not None and not (math.isfinite(block_time) and block_time > 0):
        raise InvalidOption("--block-time", block_time, "not a positive number of seconds")
    node = AnvilNode(port=port, block_time=block_time, state_file=state, optimism=optimism)
    node.start()
    status = node.status()
    if as_json:
        print(json.dumps({**asdict(status), "state_file": str(node.state_file)}))
    else:
        network = ", OP-stack L2" if node.optimism else ""
        console.print(
            f"anvil running{network}: pid {status.pid}, {node.url}, chain id {status.chain_id}, "
            f"state {node.state_file}"
        )


@chain_app.command("down")
@one_line_errors
def chain_down(port: NodePortOption = None) -> None:
    """Stop the background anvil; its chain is saved to the state file."""
    port = node_port(port)
    stopped = AnvilNode(port=port).stop()
    console.print(f"anvil on port {port} stopped" if stopped else f"no anvil runs on port {port}")


@chain_app.command("status")
@one_line_errors
def chain_status(port: NodePortOption = None, as_json: JsonOption = False) -> None:
    """Show whether anvil runs, its pid, port, block number and chain id."""
    status = AnvilNode(port=node_port(port)).status()
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
