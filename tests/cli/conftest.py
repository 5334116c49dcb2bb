"""One throwaway project (its own deployments/ and .edgetune/, the real contracts and build cache
linked in) and one anvil per module, so CLI tests never touch the user's files or chain.

`cli(...)` runs `edgetune` in-process with EDGETUNE_ROOT pointing at that project; `quiet(...)`
asserts a command sent nothing (no block mined, no dev account's nonce moved)."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from edgetune.chain.connect import Chain, connect
from edgetune.chain.nodes import AnvilNode
from edgetune.cli import app

from ..chain.helpers import REPO
from ..ports import free_port


@dataclass
class Project:
    root: Path
    node: AnvilNode
    chain: Chain

    @property
    def url(self) -> str:
        return self.node.url

    def cli(self, *args: object) -> Result:
        runner = CliRunner()
        return runner.invoke(app, [str(a) for a in args], env={"EDGETUNE_ROOT": str(self.root)})

    def nonces(self) -> tuple[int, ...]:
        return (
            self.chain.block_number(),
            *(self.chain.w3.eth.get_transaction_count(a.address) for a in self.chain.accounts),
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("project")
    (REPO / "build").mkdir(exist_ok=True)  # the compile cache, shared with the checkout
    for name in ("contracts", "node_modules", "python", "scripts", "build"):
        (root / name).symlink_to(REPO / name)
    (root / "hardhat.config.js").symlink_to(REPO / "hardhat.config.js")
    node = AnvilNode(port=free_port(), state_file=root / "anvil-state.json", project_root=root)
    with node:
        yield Project(root, node, connect("anvil", url=node.url))


@pytest.fixture(scope="module")
def deployed(project: Project) -> dict:
    """EdgeTune deployed through `edgetune deploy --json`: what it printed."""
    result = project.cli("deploy", "--rpc-url", project.url, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def quiet(project: Project) -> Iterator[Callable[[], None]]:
    """Call it after a command: fails if the command mined a block or sent a transaction."""
    before = project.nonces()
    yield lambda: _assert_same(before, project.nonces())


def _assert_same(before: tuple[int, ...], after: tuple[int, ...]) -> None:
    assert after == before, "the command sent a transaction"


def one_line_error(result: Result, *fragments: str, printed: bool = False) -> str:
    """The command failed with exit 1 and wrote exactly one line to stderr, holding `fragments`,
    and nothing to stdout unless `printed` (--json output before a later failure)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash
    assert "Traceback" not in result.output
    assert printed or not result.stdout, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
