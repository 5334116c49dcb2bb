"""Local development chains (anvil, Hardhat node) run as background processes.

A node started here runs in its own process group with a pidfile and a log under .edgetune/,
so `edgetune chain up` can return while the chain keeps running, and `down`/`status` find it
later. `start()` is idempotent: a node already running on the port is reused. Used as a context
manager, a node is stopped on exit only if this object started it (tests stop what they start).
"""

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edgetune.chain.errors import NodeError
from edgetune.chain.l1fee import DEV_L1_FEES, L1_BLOCK, L1FeeParams
from edgetune.chain.project import find_project_root, state_dir

DEFAULT_PORT = 8545
DEFAULT_CHAIN_ID = 31337
HARDFORK = "cancun"  # matches evmVersion in solc_settings.json
# In optimism mode anvil takes OP-stack fork names: Fjord runs Cancun's EVM (the bytecode's
# evmVersion) and charges the L1 data fee by FastLZ size, as every later OP fork still does.
OP_HARDFORK = "fjord"
# Its own chain id (the OP devnet L2's), so its deployments/<chainId>.json is not an L1 node's.
OP_CHAIN_ID = 901


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now (for a node of our own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class NodeStatus:
    """What `edgetune chain status` shows; block_number/chain_id are None when RPC is silent."""

    kind: str
    running: bool
    pid: int | None
    port: int
    url: str
    block_number: int | None
    chain_id: int | None


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 2.0) -> Any:
    """One bare JSON-RPC call (no web3), used to probe nodes; raises OSError when nobody answers."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise OSError(f"{method}: {reply['error'].get('message', reply['error'])}")
    return reply["result"]


def rpc_answers(url: str) -> bool:
    """Whether a JSON-RPC node answers eth_chainId at `url`."""
    try:
        rpc_call(url, "eth_chainId", timeout=0.5)
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return True


class LocalNode:
    """Shared process handling; subclasses say which command runs the node."""

    kind = "node"
    process_marker = ""  # must appear in /proc/<pid>/cmdline before we signal a pid

    def __init__(self, *, port: int = DEFAULT_PORT, project_root: Path | None = None) -> None:
        self.port = port
        self.root = (project_root or find_project_root()).resolve()
        self.url = f"http://127.0.0.1:{port}"
        self.pidfile = state_dir(self.root) / f"{self.kind}-{port}.pid"
        self.logfile = state_dir(self.root) / f"{self.kind}-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._owned = False
        self._log_start = 0

    def command(self) -> list[str]:
        """The argv that runs the node in the foreground."""
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> int:
        """Start the node (or reuse the one on this port); return its pid once RPC answers."""
        pid = self.pid()
        if pid is not None:
            self._adopt(pid)
            self._wait_ready(pid, timeout)
            return pid
        if rpc_answers(self.url):
            raise NodeError(f"port {self.port} is taken by a node edgetune did not start")
        with self.logfile.open("ab") as log:
            self._log_start = log.tell()  # the log keeps earlier starts' output too
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pidfile.write_text(str(self._process.pid))
        self._wait_ready(self._process.pid, timeout)
        return self._process.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM the node's process group and wait for it to exit; False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                self._reap(pid)
                break
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        self._process = None
        return True

    def status(self) -> NodeStatus:
        """Running or not, and the chain's block number and id when it answers."""
        pid = self.pid()
        block = chain_id = None
        if pid is not None:
            try:
                block = int(rpc_call(self.url, "eth_blockNumber"), 16)
                chain_id = int(rpc_call(self.url, "eth_chainId"), 16)
            except (OSError, ValueError):
                pass
        return NodeStatus(self.kind, pid is not None, pid, self.port, self.url, block, chain_id)

    def pid(self) -> int | None:
        """The pid from the pidfile if that process is alive and is this kind of node."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        if self._alive(pid) and self.process_marker in _cmdline(pid):
            return pid
        self.pidfile.unlink(missing_ok=True)
        return None

    def __enter__(self) -> Self:
        self._owned = self.pid() is None
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            self.stop()

    def _adopt(self, pid: int) -> None:
        """Called before reusing the node running as `pid`: refuse settings it does not have."""

    def _wait_ready(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not rpc_answers(self.url):
            if not self._alive(pid):
                self.pidfile.unlink(missing_ok=True)
                cause = _start_error(self.logfile, self._log_start)
                raise NodeError(f"{self.kind} exited at start: {cause}")
            if time.monotonic() > deadline:
                if self._process is not None and self._process.pid == pid:
                    self.stop()  # ours and useless: never leave it running behind the error
                raise NodeError(f"{self.kind} pid {pid}: no RPC at {self.url} in {timeout:.0f} s")
            time.sleep(0.05)

    def _alive(self, pid: int) -> bool:
        """Alive and not a zombie; reaps our own child when it has exited."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def _reap(self, pid: int) -> None:
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=5)


class AnvilNode(LocalNode):
    """anvil from node_modules; its chain is saved to `state_file` every `state_interval`
    seconds and on exit, and reloaded at start, so even a hard kill loses only the last seconds.
    The default state file is per port (.edgetune/anvil-<port>-state.json): two nodes saving
    to one file would each overwrite the other's chain every second.

    `optimism=True` runs anvil as an OP-stack L2 (`--network optimism`, chain id 901, its own
    state file) and writes `l1_fees` into the L1Block predeploy at every start: anvil then
    charges each transaction the L1 data fee (edgetune/chain/l1fee.py), which it would
    otherwise leave at 0 for want of L1 prices."""

    kind = "anvil"
    process_marker = "anvil"

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        chain_id: int | None = None,
        block_time: float | None = None,
        state_file: Path | None = None,
        state_interval: int = 1,
        optimism: bool = False,
        l1_fees: L1FeeParams = DEV_L1_FEES,
        project_root: Path | None = None,
    ) -> None:
        super().__init__(port=port, project_root=project_root)
        self.optimism = optimism
        self.l1_fees = l1_fees
        self.chain_id = chain_id or (OP_CHAIN_ID if optimism else DEFAULT_CHAIN_ID)
        self.block_time = block_time
        self.state_interval = state_interval
        self._asked = {
            "--state": state_file is not None,
            "--block-time": block_time is not None,
            "--network": optimism,
        }
        name = f"anvil-{port}-op-state.json" if optimism else f"anvil-{port}-state.json"
        self.state_file = (state_file or state_dir(self.root) / name).resolve()

    def start(self, timeout: float = 60.0) -> int:
        pid = super().start(timeout)
        if self.optimism:
            for slot, word in self.l1_fees.storage().items():
                rpc_call(self.url, "anvil_setStorageAt", [L1_BLOCK, hex(slot), f"0x{word:064x}"])
        return pid

    def command(self) -> list[str]:
        argv = [str(anvil_binary(self.root)), "--host", "127.0.0.1", "--port", str(self.port)]
        hardfork = OP_HARDFORK if self.optimism else HARDFORK
        argv += ["--chain-id", str(self.chain_id), "--hardfork", hardfork]
        if self.optimism:
            argv += ["--network", "optimism"]
        # anvil writes --state only on a clean exit; the interval dump is what a kill -9 keeps.
        argv += ["--state", str(self.state_file), "--state-interval", str(self.state_interval)]
        if self.block_time is not None:
            argv += ["--block-time", f"{self.block_time:g}"]
        return argv

    def _adopt(self, pid: int) -> None:
        """Take the running node's state file, block time and network; a different one asked
        for explicitly is an error (it would be silently ignored)."""
        running = _options(pid)
        wanted = dict(_pairs(self.command()))
        for option, asked in self._asked.items():
            if asked and running.get(option) != wanted.get(option):
                shown = running.get(option, "none")
                raise NodeError(
                    f"anvil on port {self.port} already runs with {option} {shown}, not "
                    f"{wanted.get(option)}; stop it first (edgetune chain down --port {self.port})"
                )
        if "--state" in running:
            self.state_file = Path(running["--state"])
        block_time = running.get("--block-time")
        self.block_time = float(block_time) if block_time is not None else None
        self.optimism = running.get("--network") == "optimism"


class HardhatNode(LocalNode):
    """`hardhat node` from node_modules (chain id 31337, in memory: it forgets on stop)."""

    kind = "hardhat"
    process_marker = "hardhat"

    def command(self) -> list[str]:
        hardhat = self.root / "node_modules" / "hardhat" / "internal" / "cli" / "bootstrap.js"
        if not hardhat.is_file() or shutil.which("node") is None:
            raise NodeError(f"hardhat is not installed in {self.root}/node_modules; run npm ci")
        return ["node", str(hardhat), "node", "--hostname", "127.0.0.1", "--port", str(self.port)]


def anvil_binary(root: Path) -> Path:
    """anvil from node_modules (npm @foundry-rs/anvil-linux-amd64), else from PATH."""
    candidates = [
        root / "node_modules" / ".bin" / "anvil",
        root / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
    ]
    for path in candidates:
        if path.is_file():
            return path
    if found := shutil.which("anvil"):
        return Path(found)
    raise NodeError(f"no anvil binary in {root}/node_modules or on PATH; run npm ci")


def _options(pid: int) -> dict[str, str]:
    """The `--option value` pairs of a running process's command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return {}
    return dict(_pairs(argv))


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.pairwise(argv) if a.startswith("--")]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _start_error(path: Path, offset: int) -> str:
    """Why a node exited at start, from what it logged since `offset`: its first error line
    (anvil's argument errors end with a usage hint that says nothing), else its last line."""
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["no output"])[0 if errors else -1]
