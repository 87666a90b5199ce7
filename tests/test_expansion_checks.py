"""Cells that cannot run, found at expansion from the grid alone: a train.batch_size larger than a synthetic
dataset's training images (the training loader drops an incomplete last batch, so it would yield no batch) and an
evaluation split the dataset does not have. One sentence, exit 2, nothing trained or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segbench.cell.selection import holdout_indices
from segbench.errors import ConfigError
from segbench.grid.cells import expand, training_images
from segbench.grid.load import parse_grid

from support.grids import tiny_grid


def grid(n_train: int = 2, batch_size: int = 4, **sections) -> dict:
    return tiny_grid("small", dataset={"n_train": n_train}, train={"batch_size": batch_size}, **sections)


def expansion_error(document: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        expand(parse_grid(document))
    return str(caught.value)


def test_run_refuses_a_batch_larger_than_the_train_split_before_anything_is_written(tmp_path: Path):
    from segbench.cli import app

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(grid(n_train=2, batch_size=4)))
    results, cache = tmp_path / "results", tmp_path / "cache"
    tensorboard = tmp_path / "tb"
    for extra in ([], ["--dry-run"], ["--executor", "ray", "--tensorboard", str(tensorboard)]):
        outcome = CliRunner(env={"SEGBENCH_DEBUG": ""}).invoke(
            app, ["run", str(path), "--results", str(results), "--cache-dir", str(cache), "--device", "cpu", *extra])
        assert outcome.exit_code == 2, outcome.output
        assert outcome.output.startswith("error: ") and outcome.output.count("\n") == 1, outcome.output
        for part in ("train.batch_size 4", "2 images in the train split of dataset 'synthetic' (n_train)",
                     "cell unet__resnet18__ce__synthetic__s0", "set train.batch_size to at most 2",
                     "raise the dataset's n_train to at least 4"):
            assert part in outcome.output, outcome.output
    # no record, no lock, no generated scenes, no Ray instance's probe, no TensorBoard log
    assert not results.exists() and not cache.exists() and not tensorboard.exists()


def test_a_batch_equal_to_the_train_split_runs():
    assert len(expand(parse_grid(grid(n_train=4, batch_size=4))).cells) == 1


def test_many_cells_are_named_with_a_count():
    message = expansion_error(grid(seeds=[0, 1, 2, 3, 4]))
    assert "5 cells (unet__resnet18__ce__synthetic__s0, unet__resnet18__ce__synthetic__s1, " in message
    assert "and 2 more)" in message


def test_only_the_dataset_that_is_too_small_is_named():
    datasets = [{"name": "synthetic", "id": "big", "params": {"n_train": 8, "height": 64, "width": 128}},
                {"name": "synthetic", "id": "tiny", "params": {"n_train": 3, "height": 64, "width": 128}}]
    message = expansion_error(grid(datasets=datasets))
    assert "dataset 'tiny'" in message and "__big__" not in message and "cell unet__resnet18__ce__tiny__s0" in message


def test_excluded_cells_are_not_checked():
    document = grid(exclude=[{"dataset": "synthetic"}])
    assert expand(parse_grid(document)).cells == []


@pytest.mark.parametrize(("n_train", "fraction"), [(4, 0.1), (5, 0.5), (10, 0.2), (12, 0.25), (3, 0.9)])
def test_holdout_arithmetic_matches_the_cells_carving(n_train: int, fraction: float):
    try:
        expected = len(holdout_indices(n_train, fraction, seed=0)[0])
    except ValueError:  # the holdout takes every image
        expected = 0
    assert training_images(n_train, fraction) == expected


def test_holdout_counts_against_the_train_split():
    best = {"select": "best", "holdout": 0.1}
    assert expand(parse_grid(grid(n_train=5, batch_size=4, eval=best))).cells
    message = expansion_error(grid(n_train=4, batch_size=4, eval=best))
    assert "the 3 images of dataset 'synthetic' left to train on (n_train 4, 1 held out by eval.holdout 0.1)" in message
    assert "set train.batch_size to at most 3 or raise the dataset's n_train to at least 5" in message


def test_a_holdout_that_takes_every_training_image():
    message = expansion_error(grid(n_train=2, batch_size=2, eval={"select": "best", "holdout": 0.9}))
    assert "the 0 images of dataset 'synthetic' left to train on" in message
    assert message.endswith("raise the dataset's n_train to at least 16.")  # 15 keeps 1 of them, 16 keeps 2
    assert expand(parse_grid(grid(n_train=16, batch_size=2, eval={"select": "best", "holdout": 0.9}))).cells


@pytest.mark.parametrize("section", [{"split": "test"}, {"select": "best", "select_split": "test"}])
def test_an_evaluation_split_the_synthetic_dataset_lacks(section: dict):
    message = expansion_error(grid(n_train=8, eval=section))
    assert "dataset 'synthetic' has no split 'test'" in message and "use one of its splits: train, val" in message


def test_a_dataset_on_disk_is_checked_when_its_folder_is_read(tmp_path: Path):
    """Expansion does not read a real dataset's folder (it may live on another machine): no sizes, no check here."""
    document = grid(datasets=[{"name": "cityscapes", "params": {"root": str(tmp_path)}}], batch_size=64)
    assert len(expand(parse_grid(document)).cells) == 1


def test_a_dataset_read_in_the_worker_that_is_smaller_than_the_batch_is_a_config_error(tmp_path: Path):
    """Datasets on disk are first read in the worker: there a too-small train split is a configuration mistake (the
    record's kind `config`), not an exception. The cell is built directly, past expansion's check."""
    import torch

    from segbench.cell.pipeline import train_and_evaluate
    from segbench.grid.cells import Cell
    from segbench.grid.schema import DatasetSpec, EvalConfig, LossSpec, MeasureConfig, TrainConfig

    dataset = DatasetSpec(name="synthetic", params={"n_train": 2, "n_val": 1, "height": 32, "width": 64, "seed": 0})
    cell = Cell(dataset=dataset, model="unet", encoder="resnet18", loss=LossSpec(name="ce"), seed=0,
                train=TrainConfig(iterations=1, batch_size=4, crop=(32, 64)), eval=EvalConfig(batch_size=1),
                measure=MeasureConfig(enabled=False))
    with pytest.raises(ConfigError, match=r"the train split has 2 images, fewer than train.batch_size 4; set "
                                          r"train.batch_size to at most 2"):
        train_and_evaluate(cell, tmp_path, torch.device("cpu"), emit=lambda event: None, cache_dir=tmp_path)
