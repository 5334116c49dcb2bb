"""One embedded chain and one EdgeTune deployment per test module; each test runs from a
snapshot of it, so tests are independent and the 2 s deployment is paid once."""

from collections.abc import Iterator

import pytest
from web3 import Web3

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, connect
from edgetune.chain.deploy import deploy

from .rounds import TaskHarness, one_run_gas_estimates


@pytest.fixture(scope="module")
def deployed() -> tuple[Chain, EdgeTuneClient]:
    chain = connect("embedded")
    one_run_gas_estimates(chain)
    client, _ = deploy(chain, chain.accounts[0])
    return chain, client


@pytest.fixture
def w3(deployed) -> Iterator[Web3]:
    chain, _ = deployed
    tester = chain.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield chain.w3
    tester.revert_to_snapshot(snapshot)
    chain.forget_nonces()


@pytest.fixture
def owner(w3, deployed) -> EdgeTuneClient:
    return deployed[1]


@pytest.fixture
def harness(w3, deployed) -> TaskHarness:
    return TaskHarness(*deployed)
