"""Where the project lives on disk: its root (contracts/, node_modules/, .edgetune/) and the
Node tools installed there. Every chain module finds files through here."""

import os
from pathlib import Path

from edgetune.chain.errors import ChainError

_MARKER = "hardhat.config.js"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: $EDGETUNE_ROOT, else the cwd) that holds
    hardhat.config.js; falls back to the checkout this package was installed from (editable)."""
    if start is None and (env := os.environ.get("EDGETUNE_ROOT")):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / _MARKER).is_file():
            return candidate
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / _MARKER).is_file():
        return checkout
    raise ChainError(f"no {_MARKER} found at or above {here}; run from the edgetune checkout")


def state_dir(root: Path) -> Path:
    """The project's runtime directory (pidfiles, logs, chain state); git ignores it."""
    path = root / ".edgetune"
    path.mkdir(parents=True, exist_ok=True)
    return path
