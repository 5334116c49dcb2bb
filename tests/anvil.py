"""A fresh local anvil for a test: on a free 127.0.0.1 port, its state in the test's folder,
stopped when the block ends."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgetune.chain.connect import Chain, connect
from edgetune.chain.nodes import AnvilNode

from .ports import free_port


@contextmanager
def local_anvil(folder: Path) -> Iterator[Chain]:
    """A client on a new anvil node whose state file lives in `folder`."""
    with AnvilNode(port=free_port(), state_file=Path(folder) / "anvil-state.json") as node:
        yield connect("anvil", url=node.url)
