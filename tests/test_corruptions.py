"""Weather and sensor corruptions (segbench/datasets/corruptions.py) and their evaluation (segbench/cell/robustness.py).

tests/data/corruption-pins.json holds each corruption's output (severity 3) on a small seeded image, written by this
implementation when it was checked against the published definitions (defocus, glass, motion and zoom blur, snow,
frost, spatter and the elastic transform also against imagecorruptions 1.1.2 fed the same random draws: within one
grey level everywhere, equal on all but about one value in 10^4): an update of numpy, scipy, Pillow or matplotlib
that moves any pixel by more than one grey level fails here instead of silently changing what the benchmark
measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segbench.datasets.corruptions import (
    CORRUPTIONS,
    FROST_IMAGES,
    _clipped_zoom,
    _frost_image,
    _glass_shuffle,
    corrupt,
    plasma_fractal,
)
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


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("shape", [(64, 128, 3), (5, 3, 3)])
def test_each_corruption_keeps_any_shape_and_repeats_for_a_key(name, shape):
    """A non-square image, and one smaller than every kernel, comes back as uint8 of its own shape at severities
    1 and 5, and a rerun with the same key gives the same pixels."""
    image = np.random.default_rng(5).integers(0, 256, size=shape, dtype=np.uint8)
    for severity in (1, 5):
        out = corrupt(image, name, severity, (8, 9))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out, corrupt(image, name, severity, (8, 9)))


@pytest.mark.parametrize("delta", [1, 2, 4])
def test_the_glass_shuffle_is_the_packages_loop_vectorised(delta):
    """The package's loop, statement for statement (its tuple assignment through numpy views copies the displaced
    neighbour's current value), with the same draws, gives the same pixels as the vectorised sweep."""
    x = np.random.default_rng(0).integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    rows, cols = range(13 - delta, delta, -1), range(17 - delta, delta, -1)
    shifts = np.random.default_rng(1).integers(-delta, delta, size=(len(rows), len(cols), 2))
    looped = x.copy()
    for i, h in enumerate(rows):
        for j, w in enumerate(cols):
            dx, dy = shifts[i, j]
            looped[h, w], looped[h + dy, w + dx] = looped[h + dy, w + dx], looped[h, w]
    assert np.array_equal(_glass_shuffle(x, delta, np.random.default_rng(1)), looped)


def test_the_clipped_zoom_is_scipys_linear_zoom_of_the_centre():
    """Including scipy's 0 where rounding puts the last sample past the last pixel (width 320 at factor 2.5)."""
    from scipy.ndimage import zoom

    x = np.random.default_rng(2).random((40, 320, 3)).astype(np.float32)
    for factor in (1.0, 1.07, 1.25, 2.5, 4.5):
        height, width = (int(np.ceil(n / factor)) for n in x.shape[:2])
        top, left = (x.shape[0] - height) // 2, (x.shape[1] - width) // 2
        expected = zoom(x[top:top + height, left:left + width], (factor, factor, 1), order=1)
        np.testing.assert_allclose(_clipped_zoom(x, factor), expected, atol=1e-6)


def test_the_frost_photographs_ship_with_the_package():
    for index in range(len(FROST_IMAGES)):
        pixels = _frost_image(index)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 300


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
