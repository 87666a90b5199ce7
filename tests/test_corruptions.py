"""Weather and sensor corruptions (segbench/datasets/corruptions.py) and their evaluation (segbench/cell/robustness.py).

tests/data/corruption-pins.json holds each corruption's output (severity 3) on a small seeded image, written by this
implementation when it was checked against the published definitions: an update of numpy, scipy, Pillow or
matplotlib that moves any pixel by more than one grey level fails here instead of silently changing what the
benchmark measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segbench.datasets.corruptions import CORRUPTIONS, corrupt, plasma_fractal
from segbench.grid.schema import EvalConfig

PINS = json.loads((Path(__file__).parent / "data" / "corruption-pins.json").read_text())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_pinned_within_one_grey_level(name):
    image = np.random.default_rng(PINS["image_seed"]).integers(0, 256, size=PINS["shape"], dtype=np.uint8)
    out = corrupt(image, name, PINS["severity"], tuple(PINS["key"]))
    expected = np.asarray(PINS["outputs"][name])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - {"saturate"}))
def test_a_stronger_severity_moves_the_image_further(name):
    """Severity 5 departs further from an image than severity 1 (the definitions' constants grow with severity;
    not for saturate, whose levels 1-2 take colour away and 3-5 add it), and the same key gives the same pixels."""
    image = np.random.default_rng(11).integers(30, 226, size=(48, 64, 3), dtype=np.uint8)
    weak, strong = (np.abs(corrupt(image, name, level, (3, 4)).astype(int) - image).mean() for level in (1, 5))
    assert strong > weak
    assert np.array_equal(corrupt(image, name, 2, (3, 4)), corrupt(image, name, 2, (3, 4)))


def test_noise_depends_on_the_key_and_fog_on_a_plasma_fractal():
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    assert not np.array_equal(corrupt(image, "gaussian_noise", 3, (0, 1)), corrupt(image, "gaussian_noise", 3, (0, 2)))
    field = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert field.shape == (32, 32) and field.min() == 0.0 and field.max() == 1.0


@pytest.mark.parametrize(("section", "message"), [
    ({"names": ["rain"]}, "rain not known"),
    ({"names": []}, "none given not known"),
    ({"names": ["fog"], "severities": [0, 6]}, "distinct levels from 1 to 5"),
    ({"names": ["fog"], "severities": [2, 2]}, "distinct levels from 1 to 5"),
])
def test_the_grid_refuses_unknown_corruptions_and_levels(section, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig.model_validate({"corruptions": section})
    assert EvalConfig.model_validate({"corruptions": {"names": "all"}}).corruptions.names == tuple(CORRUPTIONS)


@pytest.mark.slow
def test_a_cell_under_corruptions_and_its_brightness_3_redone_by_hand(tmp_path):
    """The record's clean mIoU is the cell's own; each (corruption, severity) is scored; corrupting the val images
    by hand (brightness, severity 3, the cell's seed and each image's checksum) and evaluating the checkpoint on them
    reproduces the recorded mIoU exactly."""
    import zlib

    from PIL import Image
    from typer.testing import CliRunner

    from segbench.analysis.report import write_report
    from segbench.cell.data import eval_transform
    from segbench.cli import app
    from segbench.datasets import build_dataset, parse_dataset_params
    from segbench.grid.cells import Cell
    from segbench.models import MODELS

    from support.checkpoints import evaluate_checkpoint
    from support.grids import read_records, tiny_grid, write_grid

    document = tiny_grid(train={"epochs": 1},
                         eval={"corruptions": {"names": ["brightness", "fog"], "severities": [1, 3]}})
    grid = write_grid(tmp_path / "grid.yaml", document)
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    ((cell_id, record),) = read_records(results).items()
    part = record["corruptions"]
    assert part["clean_miou"] == pytest.approx(record["metrics"]["miou"], abs=1e-12)
    assert [(r["name"], r["severity"]) for r in part["results"]] == [("brightness", 1), ("brightness", 3),
                                                                     ("fog", 1), ("fog", 3)]
    assert part["relative_robustness"] == pytest.approx(part["mean_corrupted_miou"] / part["clean_miou"])

    cell = Cell.model_validate(record["config"])
    pad_multiple = MODELS.get(cell.model).pad_multiple
    plain = eval_transform(cell, pad_multiple)

    def by_hand(image: Image.Image, label: np.ndarray):
        from segbench.datasets.corruptions import corrupt

        pixels = np.asarray(image.convert("RGB"))
        shot = corrupt(pixels, "brightness", 3, (cell.seed, zlib.crc32(pixels.tobytes())))
        return plain(Image.fromarray(shot), label)

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    val = build_dataset(cell.dataset.name, params, cell.eval.split, by_hand, None)
    again = evaluate_checkpoint(results / "cells" / cell_id, record, val)
    (recorded,) = [r for r in part["results"] if (r["name"], r["severity"]) == ("brightness", 3)]
    assert again.metrics["miou"] == recorded["miou"]
    text = write_report(results, tmp_path / "report").read_text()
    assert "### Robustness" in text and "(figures/synthetic-corruptions.png)" in text
