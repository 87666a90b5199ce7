"""Equal training compute (`train.budget: {tflops: X}`): the iterations a budget implies, against fvcore's own count;
a tiny run on the built-in scenes records them; bad grids are one sentence, exit 2; the estimate and the leaderboard
handle budget cells."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from segbench.analysis.leaderboard import print_leaderboard
from segbench.cell.budget import TrainingLength, training_length
from segbench.cli import app
from segbench.errors import ConfigError
from segbench.execution.estimate import expected_time, training_iterations
from segbench.grid.cells import expand
from segbench.grid.load import parse_grid
from segbench.models import build_model
from segbench.records.rows import record_row, time_to_accuracy
from segbench.records.schema import as_record

from support.grids import read_records, tiny_grid, write_grid

CROP = (64, 64)
BATCH = 4
TFLOPS = 0.05


def budget_grid(models: list[str], tflops: float = TFLOPS, measure: dict | None = None) -> dict:
    """tiny_grid at 64x64 crops with a compute budget in place of its epochs."""
    document = tiny_grid(models=models, train={"crop": list(CROP), "batch_size": BATCH}, measure=measure)
    del document["train"]["epochs"]
    document["train"]["budget"] = {"tflops": tflops}
    return document


def fvcore_macs(model: torch.nn.Module, crop: tuple[int, int]) -> int:
    """fvcore's count of one forward pass at batch 1, called directly (not through segbench.measure)."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, torch.zeros(1, 3, *crop))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())


@pytest.mark.parametrize("model_name", ["unet", "fpn"])
def test_budget_iterations_match_fvcore(model_name: str):
    cell = expand(parse_grid(budget_grid([model_name]))).cells[0]
    model = build_model(cell.model, encoder=cell.encoder, classes=19, encoder_weights=None)
    length = training_length(cell, model, steps_per_epoch=2, batch_size=BATCH)
    flops_per_iteration = 3 * 2 * fvcore_macs(model, CROP) * BATCH
    assert length.basis == "tflops" and length.tflops == TFLOPS
    assert length.train_flops_per_iteration == flops_per_iteration
    assert length.iterations == math.ceil(TFLOPS * 1e12 / flops_per_iteration) > 1
    # half the batch (an out-of-memory retry): twice the iterations' worth of compute per image, same budget
    halved = training_length(cell, model, steps_per_epoch=2, batch_size=BATCH // 2)
    assert halved.iterations == math.ceil(TFLOPS * 1e12 / (flops_per_iteration / 2))
    record = length.record()
    assert record["basis"] == "tflops" and record["iterations"] == length.iterations and "fvcore" in record["method"]


def test_epochs_and_iterations_record_their_basis():
    epochs = expand(parse_grid(tiny_grid(train={"epochs": 3}))).cells[0]
    assert training_length(epochs, torch.nn.Identity(), steps_per_epoch=2, batch_size=BATCH) == TrainingLength(
        "epochs", 6)
    iterations = tiny_grid(train={"iterations": 5})
    del iterations["train"]["epochs"]
    cell = expand(parse_grid(iterations)).cells[0]
    length = training_length(cell, torch.nn.Identity(), steps_per_epoch=2, batch_size=BATCH)
    assert length.record() == {"basis": "iterations", "iterations": 5}


class Untraceable(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("data-dependent control flow\nsecond line")


def test_a_model_fvcore_cannot_count_is_a_config_error_naming_it():
    cell = expand(parse_grid(budget_grid(["unet"]))).cells[0]
    with pytest.raises(ConfigError) as error:
        training_length(cell, Untraceable(), steps_per_epoch=2, batch_size=BATCH)
    message = str(error.value)
    assert "unet (resnet18)" in message and "data-dependent control flow" in message
    assert "\n" not in message and "train.epochs or train.iterations" in message


@pytest.mark.parametrize("lengths", [{"epochs": 1}, {"iterations": 3}])
def test_two_training_lengths_are_one_sentence_exit_2(tmp_path: Path, lengths: dict):
    document = budget_grid(["unet"])
    document["train"].update(lengths)
    grid = write_grid(tmp_path / "bad.yaml", document)
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(tmp_path / "results"), "--dry-run"])
    assert outcome.exit_code == 2, outcome.output
    assert "set exactly one of train.epochs, train.iterations and train.budget" in outcome.output
    assert outcome.output.count("error:") == 1 and outcome.output.count("\n") == 1


def test_a_negative_budget_is_refused(tmp_path: Path):
    grid = write_grid(tmp_path / "bad.yaml", budget_grid(["unet"], tflops=-0.5))
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(tmp_path / "results"), "--dry-run"])
    assert outcome.exit_code == 2 and "train.budget.tflops = -0.5" in outcome.output


def test_the_estimate_does_not_guess_a_budget_cell():
    cells = expand(parse_grid(budget_grid(["unet"]))).cells
    assert training_iterations(cells[0]) is None
    assert expected_time(cells, "cpu") is None  # no model is built in the runner process to count MACs


@pytest.mark.slow
@pytest.mark.timeout(240)  # 41 s here on the shared 2-core machine: a worker's start, 4 steps, evaluation, examples
def test_a_budget_run_records_the_iterations_it_implied(tmp_path: Path):
    grid = write_grid(tmp_path / "budget.yaml", budget_grid(["unet"], measure={"enabled": False}))
    results = tmp_path / "results"
    outcome = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    (raw,) = read_records(results).values()
    record = as_record(raw)
    assert record.status == "ok", raw.get("error")
    assert record.budget.basis == "tflops" and record.budget.tflops == TFLOPS
    assert record.timing.iterations == record.budget.iterations == math.ceil(
        TFLOPS * 1e12 / record.budget.train_flops_per_iteration)
    assert record.history[-1].val_miou is not None  # evaluated at the end, so time to accuracy has a value
    assert time_to_accuracy(record.history) != (None, None)
    assert record_row(record)["budget"] == f"{TFLOPS:g} TFLOPs ({record.budget.iterations} it)"
    console = Console(width=200, record=True)
    epochs_document = tiny_grid(train={"crop": list(CROP), "batch_size": BATCH})
    epochs_record = as_record({**raw, "budget": {"basis": "epochs", "iterations": 4},
                               "config": {**raw["config"], "train": epochs_document["train"]}})
    print_leaderboard(console, [record, epochs_record])
    text = console.export_text()
    assert "budget" in text and f"{TFLOPS:g} TFLOPs ({record.budget.iterations} it)" in text and "2 epochs" in text
