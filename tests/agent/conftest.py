"""The federation that the end-to-end and fairness tests share (one real run, paid once per
session): six edges of real LoRA training on a local anvil (on the embedded chain its
py-evm transactions were ~25 s of the fixture's ~60 s).

    edge 0  honest
    edge 1  honest, holding a copy of edge 0's training data (its own training seed): a twin
    edge 2  honest
    edge 3  lazy: trains honestly, but scores every update 0 and approves without evaluating
    edge 4  copier: submits a near-copy of edge 0's update, revealed after it
    edge 5  free rider: resubmits the global adapter (a zero update)
"""

from collections.abc import Iterator
from dataclasses import replace

import pytest

from edgetune.agent.federation import FederationConfig
from edgetune.chain.connect import Chain
from edgetune.learning import TrainConfig

from ..anvil import local_anvil
from .federations import Chronicle, run_federation

HONEST, TWIN, OTHER, LAZY, COPIER, FREE_RIDER = range(6)
MIXED = FederationConfig(
    edges=6,
    rounds=2,
    free_riders=1,
    copiers=1,
    lazy=1,
    train=TrainConfig(steps=20),
    validation_per_class=2,  # 10 private validation examples per edge: Shapley is the cost
    test_per_class=10,
)


@pytest.fixture(scope="session")
def mixed_chain(tmp_path_factory) -> Iterator[Chain]:
    """The anvil node the shared federation runs on, kept up for the session: the tests read
    its events after the run."""
    with local_anvil(tmp_path_factory.mktemp("mixed-anvil")) as chain:
        yield chain


@pytest.fixture(scope="session")
def mixed_federation(tmp_path_factory, mixed_chain):
    config = replace(MIXED, workdir=tmp_path_factory.mktemp("mixed"))
    assert [config.behaviour(i) for i in range(6)] == [
        "honest",
        "honest",
        "honest",
        "lazy",
        "copier",
        "free-rider",
    ]
    return run_federation(config, twins={TWIN: HONEST}, chain=mixed_chain)


@pytest.fixture(scope="session")
def mixed_chronicle(mixed_federation) -> Chronicle:
    return Chronicle(mixed_federation)
