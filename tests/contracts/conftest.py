"""One embedded chain and one EdgeTune deployment per test module; each test runs from a
snapshot of it, so tests are independent and the 2 s deployment is paid once."""

from collections.abc import Iterator

import pytest
from web3 import EthereumTesterProvider, Web3

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.deploy import deploy

from .rounds import TaskHarness


@pytest.fixture(scope="module")
def chain() -> tuple[Web3, EdgeTuneClient]:
    w3 = Web3(EthereumTesterProvider())
    client, _ = deploy(w3, w3.eth.accounts[0])
    return w3, client


@pytest.fixture
def w3(chain) -> Iterator[Web3]:
    w3, _ = chain
    tester = w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield w3
    tester.revert_to_snapshot(snapshot)


@pytest.fixture
def owner(w3, chain) -> EdgeTuneClient:
    return chain[1]


@pytest.fixture
def harness(w3, owner) -> TaskHarness:
    return TaskHarness(w3, owner)
