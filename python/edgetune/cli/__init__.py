"""The `edgetune` command. The modules here only wire commands to the subpackages: each command
fetches its data from them, then renders it (a rich table, or JSON with --json).

Start-up stays light: only typer and rich load at import; each command imports the chain client
or the learning stack inside its body, so `--help` and `chain` never pay for web3 or torch.
"""

from edgetune.cli import chain, run, tasks
from edgetune.cli.common import app

__all__ = ["app", "chain", "run", "tasks"]
