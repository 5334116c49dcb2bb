"""What every command shares: the app, the console, the common options and one-line errors."""

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from edgetune.chain.nodes import DEFAULT_PORT as DEFAULT_PORT  # re-exported for commands
from edgetune.errors import EdgetuneError

if TYPE_CHECKING:
    from edgetune.chain.client import EdgeTuneClient
    from edgetune.chain.connect import Chain

app = typer.Typer(
    help="Edge servers fine-tune one shared model together, coordinated and paid on chain.",
    no_args_is_help=True,
)

# Logs (make demo > file, CI) get wide tables too; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)
F = TypeVar("F", bound=Callable[..., Any])
WEI_PER_ETHER = 10**18

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
DevAccountOption = Annotated[
    int, typer.Option("--dev-account", help="Index of the local chain's dev account to sign with.")
]
ContractOption = Annotated[
    str | None, typer.Option("--contract", help="EdgeTune address (default: deployments/).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


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


def connect_chain(chain: str, rpc_url: str | None, keystore: Path | None) -> "Chain":
    from edgetune.chain.connect import connect

    return connect(chain, keystore=keystore, url=rpc_url)


def contract_client(chain: "Chain", contract: str | None, dev_account: int) -> "EdgeTuneClient":
    """A client for `contract` (default: the recorded deployment) signing as a dev account."""
    from edgetune.chain.client import EdgeTuneClient
    from edgetune.chain.compiler import load_artifact
    from edgetune.chain.deploy import CONTRACT_NAME, load_client

    signer = chain.accounts[dev_account % len(chain.accounts)]
    if contract is None:
        return load_client(chain, signer)
    return EdgeTuneClient(chain, contract, load_artifact(CONTRACT_NAME).abi, signer)
