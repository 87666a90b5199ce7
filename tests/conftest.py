"""Shared test settings: offline, a private dataset cache, and few threads (CI has 2 cores)."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test run uses its own dataset cache, so no test depends on what an earlier run left behind."""
    os.environ["SEGBENCH_CACHE"] = str(tmp_path_factory.mktemp("segbench-cache"))
