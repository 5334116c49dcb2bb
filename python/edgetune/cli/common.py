"""What every command shares: the app, the consoles, the common options, one-line errors, and
finding the chain, the node and the contract a command means.

Resolution, the same for every command that talks to a chain:
- URL: `--rpc-url`, else `--port` (http://127.0.0.1:PORT), else the last run's, else :8545;
- contract: `--contract`, else the newest of the last run's (same URL) and deployments/<chainId>;
- local node (`chain down|status`): `--port`, else the last run's if it runs, else the only
  running one edgetune started, else 8545.
Nothing here imports web3 at module level: `--help` and `chain` stay fast.
"""

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from edgetune.chain.nodes import DEFAULT_PORT as DEFAULT_PORT  # re-exported for commands
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.project import find_project_root, state_dir
from edgetune.chain.records import RunRecord
from edgetune.cli.errors import AmbiguousNode, InvalidOption
from edgetune.errors import EdgetuneError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from edgetune.chain.client import EdgeTuneClient
    from edgetune.chain.connect import Chain

LOCAL_CHAINS = ("anvil", "hardhat")
WEI_PER_ETHER = 10**18
# The contract's integer types (contracts/IEdgeTune.sol): an option bound for one is range-checked
# (`int_range`), so a value that cannot be encoded is refused by name, not by the ABI coder.
UINT16_MAX, UINT256_MAX = 2**16 - 1, 2**256 - 1
F = TypeVar("F", bound=Callable[..., Any])

# Logs (make demo > file, CI) get wide tables too; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors go to stderr, so `--json` output stays parseable.
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def print_error(message: str) -> None:
    """One line, whatever the message holds (no markup, no wrapping)."""
    line = " ".join(message.split())
    err_console.print(Text.assemble(("error: ", "red"), line), soft_wrap=True)


class _OneLineUsageErrors(TyperGroup):
    """A usage error (missing option, value of the wrong type) is bad input like any other: one
    line and exit 1, not click's boxed usage text."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        argv = kwargs.get("args", args[0] if args else None)
        try:
            _refuse_undecodable(sys.argv[1:] if argv is None else argv)
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:  # click's usage errors, vendored by typer
            if not standalone_mode:
                raise
            if not exc.format_message():  # no_args_is_help: the help is already printed
                sys.exit(exc.exit_code)
            print_error(exc.format_message())
            sys.exit(1)
        except typer.Abort:
            if not standalone_mode:
                raise
            print_error("aborted")
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


def _refuse_undecodable(argv: Sequence[str]) -> None:
    """Bytes of an argument that are not UTF-8 reach Python as lone surrogates, which no
    transaction, file or terminal can encode: refuse them by option, before any command runs."""
    for index, arg in enumerate(argv):
        try:
            arg.encode()
        except UnicodeEncodeError:
            if arg.startswith("--") and "=" in arg:
                option, value = arg.split("=", 1)
            elif index and argv[index - 1].startswith("-"):
                option, value = argv[index - 1], arg
            else:
                option, value = f"argument {index + 1}", arg
            raise typer.BadParameter(f"{value!r}: not UTF-8", param_hint=option) from None


app = typer.Typer(
    cls=_OneLineUsageErrors,
    help="Edge servers fine-tune one shared model together, coordinated and paid on chain.",
    no_args_is_help=True,
)


def int_range(low: int, high: int | None = None) -> Callable[[int | None], int | None]:
    """An int option's callback refusing a value outside low..high by value (click's own range
    message leaves the value out)."""

    def check(value: int | None) -> int | None:
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"in {low}..{high}" if high is not None else f"at least {low}"
            raise typer.BadParameter(f"{value}: must be {bound}")
        return value

    return check


# anvil takes port 0 (a random one, never found again) and fails on the others only with a
# usage line: checked on every command, before anything starts.
_TCP_PORT = int_range(1, 65535)
PortOption = Annotated[
    int, typer.Option("--port", help="JSON-RPC port on 127.0.0.1.", callback=_TCP_PORT)
]
NodePortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        help="Port of the node on 127.0.0.1 [default: the last run's, else the only running "
        "one, else 8545].",
        callback=_TCP_PORT,
    ),
]
ChainOption = Annotated[
    str,
    typer.Option(
        "--chain",
        help="embedded | anvil | hardhat | http(s) JSON-RPC URL (key from $EDGETUNE_PRIVATE_KEY).",
    ),
]
RpcUrlOption = Annotated[
    str | None,
    typer.Option(
        "--rpc-url",
        help="URL of the anvil/hardhat node [default: --port, else the last run's, else :8545].",
    ),
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option("--keystore", help="Signing key file; password from $EDGETUNE_KEYSTORE_PASSWORD."),
]
DevAccountOption = Annotated[
    int,
    typer.Option(
        "--dev-account",
        help="Index of the local chain's dev account to sign with (0-9; a --keystore or "
        "$EDGETUNE_PRIVATE_KEY key signs instead when given).",
    ),
]
ContractOption = Annotated[
    str | None,
    typer.Option(
        "--contract",
        help="EdgeTune address [default: the newest of the last run's and deployments/].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ReplacePendingOption = Annotated[
    bool,
    typer.Option(
        "--replace-pending",
        help="Re-send this signer's transactions still pending from an earlier run at a 25% "
        "higher fee first (without it, they are awaited).",
    ),
]


def one_line_errors(command: F) -> F:
    """Print an EdgetuneError, or an OSError (a file, the disk, the network), as one line and
    exit 1, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EdgetuneError as exc:
            print_error(str(exc))
        except OSError as exc:
            print_error(os_error_line(exc))
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def os_error_line(exc: OSError) -> str:
    """`FILE: cause`, or the cause alone when the error names no file."""
    cause = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{exc.filename}: {cause}" if exc.filename else cause


def rpc_url_for(chain: str, rpc_url: str | None = None, port: int | None = None) -> str | None:
    """The URL a local chain (anvil, hardhat) is reached at; None for the others, whose URL is
    `--chain` itself (or none, embedded)."""
    if chain not in LOCAL_CHAINS:
        return None
    if rpc_url:
        return rpc_url
    if port is not None:
        return f"http://127.0.0.1:{port}"
    run = RunRecord.find()
    return run.rpc_url if run else f"http://127.0.0.1:{DEFAULT_PORT}"


def connect_chain(
    chain: str, rpc_url: str | None, keystore: Path | None, port: int | None = None
) -> "Chain":
    from edgetune.chain.connect import connect

    # Unconfirmed transactions are journaled on disk, so a command rerun after a receipt
    # timeout awaits the first transaction instead of sending the same intent twice.
    journal = None if chain == "embedded" else state_dir(find_project_root()) / "transactions"
    url = rpc_url_for(chain, rpc_url, port)
    return connect(chain, keystore=keystore, url=url, journal=journal)


def last_run_on(chain: "Chain") -> RunRecord | None:
    """The last federation's record if it ran on this chain (same URL), else None."""
    run = RunRecord.find()
    return run if run is not None and run.rpc_url == chain.url else None


def signer(chain: "Chain", dev_account: int) -> "LocalAccount":
    """Dev account `dev_account`, or the one configured key (keystore, env) when there is one."""
    if len(chain.accounts) == 1:
        return chain.accounts[0]
    if not 0 <= dev_account < len(chain.accounts):
        last = len(chain.accounts) - 1
        raise InvalidOption("--dev-account", dev_account, f"this chain has dev accounts 0-{last}")
    return chain.accounts[dev_account]


def contract_client(chain: "Chain", contract: str | None, dev_account: int) -> "EdgeTuneClient":
    """A client for the contract this command means (see the module docstring), signing as
    `dev_account`; checked to be EdgeTune before anything is sent."""
    from edgetune.chain.deploy import find_client

    return find_client(chain, signer(chain, dev_account), contract)


def node_port(port: int | None) -> int:
    """The local anvil a `chain` command means (see the module docstring)."""
    if port is not None:
        return port
    running = running_anvil_ports()
    run = RunRecord.find()
    run_port = urlsplit(run.rpc_url).port if run else None
    if run_port in running:
        return run_port
    if len(running) > 1:
        ports = ", ".join(map(str, running))
        raise AmbiguousNode(f"anvil runs on ports {ports} and none is the last run's; pass --port")
    return running[0] if running else DEFAULT_PORT


def running_anvil_ports() -> list[int]:
    """Ports of the anvil nodes edgetune started that still run (from their pidfiles)."""
    root = find_project_root()
    ports = []
    for pidfile in sorted(state_dir(root).glob(f"{AnvilNode.kind}-*.pid")):
        port = pidfile.stem.removeprefix(f"{AnvilNode.kind}-")
        if port.isdigit() and AnvilNode(port=int(port), project_root=root).pid() is not None:
            ports.append(int(port))
    return ports


def parse_ether(option: str, text: str, *, positive: bool, bits: int = 256) -> int:
    """An ether amount typed by a person, in wei, exactly (no float rounding), that fits the
    contract field's `uint<bits>`."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidOption(option, text, "not a number of ether") from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        raise InvalidOption(
            option, text, f"must be a {'positive' if positive else 'non-negative'} amount of ether"
        )
    too_big = InvalidOption(option, text, f"is more than a uint{bits} holds in wei")
    below_wei = InvalidOption(option, text, "has more than 18 decimals (below one wei)")
    # The exponent is checked before any arithmetic: 1e999999999 overflows Decimal's context,
    # and 1e-999999999 would round to 0 wei.
    if amount.adjusted() > 80:
        raise too_big
    if amount and amount.adjusted() < -18:
        raise below_wei
    wei = Fraction(amount) * WEI_PER_ETHER
    if wei.denominator != 1:
        raise below_wei
    if wei >= 2**bits:
        raise too_big
    return int(wei)


def parse_hash(option: str, text: str) -> bytes:
    """A 32-byte hash given as hex (0x optional)."""
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InvalidOption(option, repr(text), "not hex") from None
    if len(value) != 32:
        raise InvalidOption(
            option, repr(text), f"must be 32 bytes (64 hex digits), got {len(value)}"
        )
    return value


def plot_target(path: Path | None) -> Path | None:
    """`--plot`'s callback: the file the figure goes to, refused before anything is fetched or
    run when matplotlib could not write it (a folder, a format it does not know)."""
    if path is None:
        return None
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; name a file, e.g. {path / 'rewards.png'}")
    from edgetune.views import figure_formats, figure_path

    target, formats = figure_path(path), figure_formats()
    if target.suffix.lstrip(".").lower() not in formats:
        raise typer.BadParameter(
            f"{path}: no figure format {target.suffix!r} (one of {', '.join(sorted(formats))})"
        )
    return target


def quiet_libraries() -> None:
    """Keep stderr for our one error line: transformers' and huggingface_hub's progress bars
    ("Loading weights") and the libraries' FutureWarnings say nothing a user can act on. Our own
    log lines go through the consoles, so they stay."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    disable_progress_bars()
