"""--executor ray before any cluster work: Ray missing, a bad address, options without Ray, and the sizing of cells
on a cluster's nodes. No Ray cluster is started here."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segbench.cli import app
from segbench.errors import ConfigError
from segbench.execution.ray_cluster import CellResources, size_cells

runner = CliRunner()


@pytest.fixture
def grid_file(sweep) -> str:
    return str(sweep().grid)


def test_without_ray_the_ray_executor_names_the_install_command(grid_file: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the package
    result = runner.invoke(app, ["run", grid_file, "--results", str(tmp_path / "r"), "--executor", "ray"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --executor ray needs Ray, which is not installed; install it with "
                                     "pip install 'segbench[ray]'.")
    assert not (tmp_path / "r" / "cells").exists()


def test_an_address_where_nothing_listens_fails_at_once_in_one_sentence(grid_file: str, tmp_path: Path):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a free port on this machine: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = runner.invoke(app, ["run", grid_file, "--results", str(tmp_path / "r"), "--executor", "ray",
                                 "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < 30
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: nothing answers at --address 127.0.0.1:{port} (")
    assert line.endswith("start the head node there with `ray start --head`, or pass the address it printed.")


@pytest.mark.parametrize("options", [["--address", "auto"], ["--cpus-per-cell", "2"]])
def test_ray_options_without_the_ray_executor_are_refused(grid_file: str, tmp_path: Path, options: list[str]):
    result = runner.invoke(app, ["run", grid_file, "--results", str(tmp_path / "r"), *options])
    assert result.exit_code == 2
    assert "apply to --executor ray only; add --executor ray" in result.output


def test_an_unknown_executor_is_refused(grid_file: str):
    result = runner.invoke(app, ["run", grid_file, "--executor", "slurm"])
    assert result.exit_code == 2 and "--executor must be local or ray, not 'slurm'" in result.output


GPU_NODES = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 12.0, "GPU": 2.0}, {"CPU": 4.0}]  # two GPU nodes, one CPU node


def test_on_cuda_a_cell_takes_a_gpu_and_its_share_of_the_node_and_every_gpu_is_used():
    assert size_cells(GPU_NODES, "cuda", None, None, None) == CellResources(cpus=4, gpus=1, max_in_flight=6)
    assert size_cells(GPU_NODES, "cuda", 2, None, None) == CellResources(cpus=4, gpus=1, max_in_flight=2)
    assert size_cells(GPU_NODES, "cuda", None, 8, None) == CellResources(cpus=8, gpus=1, max_in_flight=3)


def test_on_the_cpu_a_cell_takes_the_smallest_node_so_every_cell_computes_with_the_same_threads():
    assert size_cells(GPU_NODES, "cpu", None, None, None) == CellResources(cpus=4, gpus=0, max_in_flight=8)
    assert size_cells(GPU_NODES, "cpu", None, 2, None) == CellResources(cpus=2, gpus=0, max_in_flight=16)
    assert size_cells([{"CPU": 2.0}], "cpu", None, 2, None) == CellResources(cpus=2, gpus=0, max_in_flight=1)


def test_cells_that_fit_no_node_are_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"--cpus-per-cell 32 is more than any node .* \(at most 16 CPUs\)"):
        size_cells(GPU_NODES, "cpu", None, 32, None)
    with pytest.raises(ConfigError, match="no node of the Ray cluster has 1 GPU"):
        size_cells([{"CPU": 8.0}], "cuda", None, None, None)
    with pytest.raises(ConfigError, match="--parallel must be at least 1, not 0"):
        size_cells(GPU_NODES, "cpu", 0, None, None)
    with pytest.raises(ConfigError, match="--cpus-per-cell must be at least 1, not 0"):
        size_cells(GPU_NODES, "cpu", None, 0, None)
