"""`--executor ray` with no other flag starts a local Ray instance (this module's one) and gives records whose
confusion matrices and metrics are exactly those of the local executor: same machine, seeds, CPU and threads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)  # 60-80 s here, 89 s beside another suite (the default bound is 180 s: pyproject.toml)
def test_the_ray_executor_gives_exactly_the_local_executors_results(sweep, tmp_path: Path):
    pytest.importorskip("ray")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    local = sweep("local")
    done = local.run(*cache, run_args=())  # the local executor
    assert done.returncode == 0, done.stdout + done.stderr
    on_ray = sweep("ray")
    # A local Ray instance (Ray 2.59 and later) writes a token to ~/.ray/auth_token, and every later `ray start
    # --head` of that user then turns token authentication on: a private home keeps the developer's own untouched.
    done = subprocess.run(on_ray.command(*cache), capture_output=True, text=True, timeout=600,
                          env={**on_ray.env(), "HOME": str(tmp_path / "home")})  # the CLI's defaults otherwise
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    expected, got = local.records(), on_ray.records()
    assert set(got) == set(expected) and len(got) == 2
    for cell_id, record in got.items():
        reference = expected[cell_id]
        assert record["status"] == reference["status"] == "ok"
        assert record["confusion_matrix"] == reference["confusion_matrix"]
        assert record["metrics"] == reference["metrics"]
        assert [row["train_loss"] for row in record["history"]] == [row["train_loss"] for row in reference["history"]]
        execution = record["execution"]
        assert execution["executor"] == "ray" and reference["execution"]["executor"] == "local"
        assert execution["threads"] == reference["execution"]["threads"]
        assert execution["host"] == reference["execution"]["host"] and execution["gpu_ids"] is None
        assert len(execution["node_id"]) == 56 and execution["node_ip"]
