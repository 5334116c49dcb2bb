"""Fixtures shared by the chain tests."""

from pathlib import Path

import pytest

from .helpers import make_project


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shared throwaway project (tests that edit sources make their own)."""
    return make_project(tmp_path_factory.mktemp("project"))
