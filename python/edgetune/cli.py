"""The `edgetune` command. This module only wires commands to the subpackages: each command
fetches its data from them, then renders it (a rich table, or JSON with --json)."""

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from edgetune.chain.nodes import DEFAULT_PORT, AnvilNode, NodeStatus
from edgetune.errors import EdgetuneError

app = typer.Typer(
    help="Edge servers fine-tune one shared model together, coordinated and paid on chain.",
    no_args_is_help=True,
)
chain_app = typer.Typer(help="Run the local development chain (anvil).", no_args_is_help=True)
app.add_typer(chain_app, name="chain")

console = Console()
F = TypeVar("F", bound=Callable[..., Any])
PortOption = Annotated[int, typer.Option("--port", help="JSON-RPC port on 127.0.0.1.")]


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
