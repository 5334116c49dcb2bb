"""One local anvil and one EdgeTune deployment per test module; each test runs from a snapshot
of it, so tests are independent and the deployment is paid once. (On the embedded py-evm chain
the same tests took about twice as long; test_anvil_round and the agent tests show the client
behaves alike on both.)"""

from collections.abc import Iterator

import pytest
from web3 import Web3

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain
from edgetune.chain.deploy import deploy

from ..anvil import local_anvil
from .rounds import TaskHarness, revert_to_snapshot, take_snapshot


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[tuple[Chain, EdgeTuneClient]]:
    with local_anvil(tmp_path_factory.mktemp("anvil")) as chain:
        client, _ = deploy(chain, chain.accounts[0])
        yield chain, client


@pytest.fixture
def w3(deployed) -> Iterator[Web3]:
    chain, _ = deployed
    snapshot = take_snapshot(chain)
    yield chain.w3
    revert_to_snapshot(chain, snapshot)


@pytest.fixture
def owner(w3, deployed) -> EdgeTuneClient:
    return deployed[1]


@pytest.fixture
def harness(w3, deployed) -> TaskHarness:
    return TaskHarness(*deployed)
