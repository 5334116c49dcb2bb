"""Shared fixtures. A real IPFS node for the `ipfs`-marked tests (storage, and the federation on
separate processes), started once per session by scripts/ipfs-node.

It runs on free ports with its own temporary repo, so a node the user runs (port 5001,
.edgetune/ipfs-repo) is left alone. If no node can be started the tests skip, unless
EDGETUNE_REQUIRE_IPFS=1 (CI), where they fail: CI must never pass by skipping.
With it, a missing js-ipfs is installed in the background as the session starts; without it, it
is not (minutes, ~290 MB): run `scripts/ipfs-node install` once to enable the tests locally.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetune.storage import IpfsStore

from .ports import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ipfs-node"
JS_BIN = ROOT / ".edgetune" / "js-ipfs" / "node_modules" / ".bin" / "jsipfs"


_install: subprocess.Popen | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where CI requires the node and js-ipfs is missing, install it in the background from the
    start: ~45 s, mostly waiting on npm and the disk, overlapped with the tests that run first."""
    global _install
    required = os.environ.get("EDGETUNE_REQUIRE_IPFS") == "1"
    if required and not (shutil.which("ipfs") or JS_BIN.exists()):
        _install = subprocess.Popen(
            [str(SCRIPT), "install"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _install is not None and _install.poll() is None:  # the IPFS tests were deselected
        _install.kill()
        _install.wait()


def _give_up(reason: str) -> None:
    if os.environ.get("EDGETUNE_REQUIRE_IPFS") == "1":
        pytest.fail(f"EDGETUNE_REQUIRE_IPFS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ipfs_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsStore]:
    """An IpfsStore talking to a freshly started local node; the node is stopped afterwards."""
    required = os.environ.get("EDGETUNE_REQUIRE_IPFS") == "1"
    if not required and not (shutil.which("ipfs") or JS_BIN.exists()):
        pytest.skip("no IPFS node installed (run scripts/ipfs-node install)")
    if _install is not None:
        _, errors = _install.communicate(timeout=900)
        if _install.returncode != 0:
            _give_up(f"scripts/ipfs-node install failed: {errors.strip()[-500:]}")
    env = {
        **os.environ,
        "EDGETUNE_IPFS_API_PORT": str(free_port()),
        "EDGETUNE_IPFS_GATEWAY_PORT": str(free_port()),
        "EDGETUNE_IPFS_RPC_PORT": str(free_port()),
        "EDGETUNE_IPFS_REPO": str(tmp_path_factory.mktemp("ipfs-repo")),
    }
    try:
        started = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        _give_up("scripts/ipfs-node start timed out")
    if started.returncode != 0:
        _give_up(f"IPFS node did not start: {started.stderr.strip()[-500:]}")
    store = IpfsStore(started.stdout.strip().splitlines()[-1], timeout=60)
    try:
        yield store
    finally:
        store.close()
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
