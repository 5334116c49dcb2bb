"""The hosts of a multi-host run as Linux network namespaces, joined by veth links.

One namespace holds the chain and a bridge (`br0`, 10.77.0.1/24); the content node and every
edge get a namespace of their own, each with one veth pair: `eth0` inside it, the peer enslaved
to the bridge. Every link is created from inside the chain namespace and its far end moved
straight into its host's namespace, so nothing is ever added to the root namespace. No
namespace has a default route: the only reachable addresses are 127.0.0.0/8 of each namespace
and 10.77.0.0/24 on these links.

Namespace names start with the run's prefix, so `down(prefix)` finds and removes whatever a
run that died left behind.
"""

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass

SUBNET = "10.77.0"
CHAIN_IP = f"{SUBNET}.1"
CONTENT_IP = f"{SUBNET}.2"
BRIDGE = "br0"
LINK = "eth0"  # each host's own end of its link
DEFAULT_PREFIX = "etmh"


class TopologyError(Exception):
    """An `ip` command failed, or the machine cannot create network namespaces."""


@dataclass(frozen=True)
class Topology:
    prefix: str
    edges: int

    @property
    def chain(self) -> str:
        return f"{self.prefix}-chain"

    @property
    def content(self) -> str:
        return f"{self.prefix}-content"

    def edge(self, index: int) -> str:
        return f"{self.prefix}-edge{index}"

    def edge_ip(self, index: int) -> str:
        return f"{SUBNET}.{10 + index}"

    def namespaces(self) -> list[str]:
        return [self.chain, self.content, *(self.edge(i) for i in range(self.edges))]

    def up(self) -> None:
        """Create every namespace and link; raises TopologyError (after removing what it made)
        if any step fails."""
        try:
            for namespace in self.namespaces():
                ip("netns", "add", namespace)
                ip("-n", namespace, "link", "set", "lo", "up")
            ip("-n", self.chain, "link", "add", BRIDGE, "type", "bridge")
            ip("-n", self.chain, "addr", "add", f"{CHAIN_IP}/24", "dev", BRIDGE)
            ip("-n", self.chain, "link", "set", BRIDGE, "up")
            self._link(self.content, "content", CONTENT_IP)
            for index in range(self.edges):
                self._link(self.edge(index), f"edge{index}", self.edge_ip(index))
            self._check_no_default_route()
        except TopologyError:
            down(self.prefix)
            raise

    def _link(self, namespace: str, port: str, address: str) -> None:
        ip(
            "-n",
            self.chain,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            LINK,
            "netns",
            namespace,
        )
        ip("-n", self.chain, "link", "set", port, "master", BRIDGE, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", LINK)
        ip("-n", namespace, "link", "set", LINK, "up")

    def _check_no_default_route(self) -> None:
        for namespace in self.namespaces():
            if ip("-n", namespace, "route", "show", "default").strip():
                raise TopologyError(f"namespace {namespace} has a default route")

    def set_edge_link(self, index: int, up: bool) -> None:
        """Take edge `index`'s link down (a partition) or bring it back."""
        ip("-n", self.edge(index), "link", "set", LINK, "up" if up else "down")

    def exec_argv(self, namespace: str, argv: list[str]) -> list[str]:
        """`argv` run inside `namespace` (`ip netns exec` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", namespace, *argv]


def ip(*args: str) -> str:
    """One `ip` command; its stdout, or TopologyError with its own error line."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise TopologyError("the `ip` command (iproute2) is not installed") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TopologyError(f"ip {' '.join(args)}: {reason}")
    return done.stdout


def namespaces_with(prefix: str) -> list[str]:
    listed = ip("netns", "list")
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    return [name for name in names if name.startswith(f"{prefix}-")]


def down(prefix: str) -> list[str]:
    """Stop every process still inside a namespace of `prefix` (all started by a run: the
    namespaces are its own), then delete the namespaces, which removes their links. Returns the
    namespaces removed."""
    removed = namespaces_with(prefix)
    for namespace in removed:
        _stop_pids([int(pid) for pid in ip("netns", "pids", namespace).split()])
    for namespace in removed:
        ip("netns", "del", namespace)
    return removed


def _stop_pids(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM each pid, then SIGKILL those still alive after `grace_s`."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def check_allowed() -> str | None:
    """Why this machine cannot run the topology (None: it can): root, `ip`, and a namespace
    that can really be added and deleted."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{DEFAULT_PREFIX}probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except TopologyError as refused:
        return f"cannot create a network namespace: {refused}"
    try:
        ip("netns", "del", probe)
    except TopologyError as stuck:
        return f"cannot delete a network namespace: {stuck}"
    return None
