"""A federation across hosts, each host a Linux network namespace (root needed):

    .venv/bin/python scripts/multihost run [--edges 4] [--rounds 3] [--partition-edge 2]
    .venv/bin/python scripts/multihost down      # remove what a killed run left behind

`run` builds the namespaces and links (topology.py), starts the content node (js-ipfs, in its
own namespace) and the task owner's host in the chain namespace (coordinator.py: anvil, the
owner, one `edgetune agent` per edge namespace, the partition), prints the outcome and writes
it to WORKDIR/result.json, and tears everything down, on failure and on Ctrl-C too.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NoReturn

from topology import (
    CONTENT_IP,
    DEFAULT_PREFIX,
    Topology,
    TopologyError,
    check_allowed,
    down,
    namespaces_with,
)

from edgetune.errors import EdgetuneError

ROOT = Path(__file__).resolve().parents[2]
IPFS_NODE = ROOT / "scripts" / "ipfs-node"
JS_IPFS = ROOT / ".edgetune" / "js-ipfs" / "node_modules" / ".bin" / "jsipfs"
CONTENT_PORT = 5001
RUN_TIMEOUT_S = 900
SLASH_REASONS = ("Absent", "NotRevealed", "InvalidUpdate")  # IEdgeTune.SlashReason


class Refused(Exception):
    """Bad input or a machine that cannot run this: one `error:` line, exit 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Refused(message)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="scripts/multihost", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "coordinate"):
        sub = commands.add_parser(name)
        sub.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace name prefix")
        sub.add_argument("--edges", type=int, default=4)
        sub.add_argument("--rounds", type=int, default=3)
        sub.add_argument("--partition-edge", type=int, default=2, help="-1: no partition")
        sub.add_argument("--partition-round", type=int, default=2)
        sub.add_argument("--steps", type=int, default=3, help="local training steps per round")
        sub.add_argument("--phase-blocks", type=int, default=60)
        sub.add_argument("--commit-blocks", type=int, default=20)
        sub.add_argument("--tick", type=float, default=0.5, help="seconds per mined block")
        sub.add_argument("--workdir", type=Path, default=ROOT / ".edgetune" / "multihost")
    sub = commands.add_parser("down")
    sub.add_argument("--prefix", default=DEFAULT_PREFIX)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", args.prefix):
        raise Refused(f"--prefix {args.prefix!r}: lowercase letters, digits and '-', at most 24")
    if args.command != "down":
        check_run_args(args)
    return args


def check_run_args(args: argparse.Namespace) -> None:
    if not 1 <= args.edges <= 9:
        raise Refused(f"--edges {args.edges}: 1 to 9 (dev account 0 is the owner's)")
    if args.rounds < 1 or args.steps < 1 or args.phase_blocks < 1 or args.commit_blocks < 1:
        raise Refused("--rounds, --steps, --phase-blocks and --commit-blocks must be >= 1")
    if not args.tick > 0:
        raise Refused(f"--tick {args.tick}: must be > 0")
    if args.partition_edge != -1:
        if not 0 <= args.partition_edge < args.edges:
            raise Refused(f"--partition-edge {args.partition_edge}: 0..{args.edges - 1} or -1")
        if not 2 <= args.partition_round <= args.rounds:
            raise Refused(f"--partition-round {args.partition_round}: 2..{args.rounds}")


def forwarded(args: argparse.Namespace) -> list[str]:
    """`run`'s options, as the `coordinate` command inside the chain namespace takes them."""
    names = (
        "prefix",
        "edges",
        "rounds",
        "partition_edge",
        "partition_round",
        "steps",
        "phase_blocks",
        "commit_blocks",
        "tick",
        "workdir",
    )
    return [x for n in names for x in (f"--{n.replace('_', '-')}", str(getattr(args, n)))]


def run(args: argparse.Namespace) -> int:
    if reason := check_allowed():
        raise Refused(reason)
    if not JS_IPFS.exists():
        raise Refused("js-ipfs is not installed: run scripts/ipfs-node install")
    if leftovers := namespaces_with(args.prefix):
        raise Refused(f"namespaces {', '.join(leftovers)} exist: scripts/multihost down first")
    started = time.monotonic()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = workdir / "result.json"
    result_file.unlink(missing_ok=True)
    topology = Topology(args.prefix, args.edges)
    topology.up()
    env = {
        **os.environ,
        "EDGETUNE_IPFS_HOST": CONTENT_IP,
        "EDGETUNE_IPFS_API_PORT": str(CONTENT_PORT),
        "EDGETUNE_IPFS_REPO": str(workdir / "ipfs"),
    }
    try:
        # The content node starts while the coordinator imports; it waits for the node's API.
        content = subprocess.Popen(
            topology.exec_argv(topology.content, [str(IPFS_NODE), "start"]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        coordinator = [sys.executable, str(Path(__file__).parent), "coordinate", *forwarded(args)]
        done = subprocess.run(
            topology.exec_argv(topology.chain, coordinator), timeout=RUN_TIMEOUT_S
        )
        if content.wait(timeout=120) != 0:
            raise Refused(f"the content node did not start: {content.stderr.read().strip()}")
        if done.returncode != 0 or not result_file.exists():
            raise Refused(f"the coordinator failed (exit {done.returncode}); logs in {workdir}")
    finally:
        subprocess.run(
            topology.exec_argv(topology.content, [str(IPFS_NODE), "stop"]),
            env=env,
            capture_output=True,
            timeout=60,
        )
        down(args.prefix)
    summarize(json.loads(result_file.read_text()), time.monotonic() - started)
    return 0


def coordinate(args: argparse.Namespace) -> int:
    from coordinator import RunSettings
    from coordinator import coordinate as run_owner

    from edgetune.cli.common import quiet_libraries

    quiet_libraries()  # the owner's model loads print progress bars and warnings otherwise
    wait_for_content()
    settings = RunSettings(
        args.prefix,
        args.edges,
        args.rounds,
        args.workdir,
        None if args.partition_edge == -1 else args.partition_edge,
        args.partition_round,
        args.steps,
        args.phase_blocks,
        args.commit_blocks,
        args.tick,
    )
    result = run_owner(settings, lambda line: print(f"[chain] {line}", flush=True))
    (args.workdir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def wait_for_content(timeout_s: float = 120) -> None:
    """Until the content node's API answers over the bridge."""
    url = f"http://{CONTENT_IP}:{CONTENT_PORT}/api/v0/version"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise Refused(f"no content node at {url} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


def summarize(result: dict, wall_s: float) -> None:
    rewards = result["rewards"]
    for r in rewards["rounds"]:
        state = "accepted" if r["accepted"] else "rejected"
        print(f"round {r['round']}: {state}, paid {r['paid'] / 1e18:.4f} ETH")
    slashes = {(s["edge"], s["round"]): s for s in result["events"]["Slashed"]}
    for edge in rewards["edges"]:
        cut = [
            f"(round {r} {SLASH_REASONS[s['reason']]} {s['amount'] / 1e18:g})"
            for (a, r), s in slashes.items()
            if a == edge["address"]
        ]
        print(
            f"edge {edge['index']} {edge['address'][:10]}: earned {edge['earned'] / 1e18:.4f} "
            f"ETH, slashed {edge['slashed'] / 1e18:g} ETH {' '.join(cut)}"
        )
    if partition := result["partition"]:
        moves = ", ".join(
            f"{e['link']} at block {e['block']} (round {e['round']} {e['phase']})"
            for e in partition["events"]
        )
        print(f"partition of edge {partition['edge']}: {moves}; missed {partition['missed']}")
    steps = ", ".join(f"{what} {at:.0f} s" for what, at in result["milestones_s"].items())
    print(f"chain host: {steps}")
    print(f"wall time {wall_s:.0f} s")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so every `finally` tears down what it started


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args = parse(argv)
        if args.command == "down":
            removed = down(args.prefix)
            print(f"removed {len(removed)} namespaces{': ' if removed else ''}{' '.join(removed)}")
            return 0
        return run(args) if args.command == "run" else coordinate(args)
    except (Refused, TopologyError, EdgetuneError, RuntimeError) as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; everything this run started was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
