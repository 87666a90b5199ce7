"""Shared test settings: offline, a private dataset cache, and few threads (CI has 2 cores); no test leaves a
process it started behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from support.processes import kill_tracked

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test run uses its own dataset cache, so no test depends on what an earlier run left behind."""
    os.environ["SEGBENCH_CACHE"] = str(tmp_path_factory.mktemp("segbench-cache"))


@pytest.fixture(autouse=True)
def _kill_tracked_process_groups() -> Iterator[None]:
    """At every test's teardown, passed, failed or timed out: the process groups it started (support.processes)."""
    yield
    kill_tracked()
