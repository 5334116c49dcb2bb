"""Shared fixtures: one tiny model per test session (built in a temp cache, a few seconds)."""

import os
from pathlib import Path

import pytest

from edgetune.learning import AdapterSpec, attach_adapter, ensure_tiny_model, load_base_model


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def adapted(tiny_path: Path):
    """A fresh tiny base with the default ffa adapter (fresh so tests cannot leak weights)."""
    return attach_adapter(load_base_model(tiny_path), AdapterSpec(rank=8, alpha=16.0))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this package's `slow` tests unless asked for with `-m slow` or EDGETUNE_SLOW=1."""
    if "slow" in (config.getoption("-m") or "") or os.environ.get("EDGETUNE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or EDGETUNE_SLOW=1")
    for item in items:
        if "slow" in item.keywords and Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)
