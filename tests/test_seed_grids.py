"""The seed-study grids (grids/seeds/) stay valid: they parse and expand as written (their data roots do not exist
here), their datasets load from tiny replicas of the real layouts, and each runs end to end on synthetic data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from segbench.cell.data import make_datasets
from segbench.cli import app
from segbench.grid.cells import expand
from segbench.grid.load import load_grid, load_yaml, parse_grid

from support.replicas import (
    cityscapes_stems,
    shuffled,
    write_bdd100k,
    write_camvid,
    write_cityscapes,
    write_kitti,
    write_odgt,
)

GRIDS = Path(__file__).resolve().parents[1] / "grids" / "seeds"
STUDIES = {
    "a_bdd100k_pspnet.yaml": ("A", {"bdd100k-odgt38": 38}, 1),
    "b_bdd100k_unet.yaml": ("B", {"bdd100k-unknown": 20}, 2),
    "c_cityscapes_unets.yaml": ("C", {"cityscapes": 19}, 3),
    "d_cityscapes_kitti_resnext.yaml": (
        "D",
        {"cityscapes-road": 2, "cityscapes-categories": 7, "cityscapes": 19, "kitti-road": 2},
        8,
    ),
    "e_camvid_unet.yaml": ("E", {"camvid": 11}, 2),
}
# The synthetic stand-in (also in docs/seed-studies.md): tiny scenes, one epoch, no resize, a minimal measurement
# (no peak-memory measurement: it starts a fresh process per cell and is covered by tests/test_measure.py).
STANDIN = [
    "datasets=[{name: synthetic, params: {n_train: 4, n_val: 2, height: 64, width: 128}}]",
    "train.epochs=1",
    "train.batch_size=2",
    "train.crop=[64,128]",
    "train.scale_range=[1.0,1.0]",
    "eval.size=null",
    "eval.batch_size=2",
    "measure={budget_s: null, warmup: 1, iters: 1, batch_size: 2, memory: false}",
    "seeds=[0]",
]
H, W = 24, 40


def test_one_grid_per_study():
    assert sorted(path.name for path in GRIDS.glob("*.yaml")) == sorted(STUDIES)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_grid_parses_and_expands_as_written(name):
    study, datasets, cells = STUDIES[name]
    text = (GRIDS / name).read_text()
    assert text.startswith(f"# Study {study} ") and "What differs, and why:" in text
    grid = load_grid(GRIDS / name)  # the roots (/data/...) do not exist here: only prepare() looks at them
    expansion = expand(grid)
    assert not expansion.skipped, expansion.skipped
    assert len(expansion.cells) == cells
    assert [dataset.key for dataset in grid.datasets] == list(datasets)
    outcome = CliRunner().invoke(app, ["run", str(GRIDS / name), "--dry-run"])
    assert outcome.exit_code == 0, outcome.output


# -- tiny replicas of the real layouts, to load every dataset of every grid with its own options ---------------------


def replica(dataset: str, root: Path) -> None:
    """Two train and two val samples of `dataset`'s real layout under `root` (KITTI: four, split by the loader)."""
    rng = np.random.default_rng(0)
    if dataset == "kitti":
        write_kitti(root, 4, rng, size=(H, W))
        return
    for split in ("train", "val"):
        names = [f"{split}{index}" for index in range(2)]
        if dataset == "cityscapes":
            write_cityscapes(root, split, cityscapes_stems("ulm", 2), rng, size=(H, W))
        elif dataset == "bdd100k":
            write_bdd100k(root, split, names, rng, size=(H, W))
        elif dataset == "camvid":
            write_camvid(root, split, 2, rng, size=(H, W))
        elif dataset == "odgt":  # the BDD100K CSAIL conversion of study A: 38 classes
            manifest = {"train": "training.odgt", "val": "validation.odgt"}[split]
            entries = [(f"images/{n}.jpg", f"segm/{n}.png", shuffled([*range(38), 255], rng, H, W)) for n in names]
            write_odgt(root, manifest, entries, rng)
    if dataset == "odgt":
        rows = ["class_name,train_id,color", 'unlabeled,255,"0,0,0"'] + [f"class{i},{i}," for i in range(38)]
        (root / "bdd38_classes.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_grid_datasets_load_from_replicas_with_their_options(name, tmp_path):
    _, expected_classes, _ = STUDIES[name]
    document = copy.deepcopy(load_yaml(GRIDS / name))
    for entry in document["datasets"]:
        root = tmp_path / entry["name"]
        if not root.exists():
            replica(entry["name"], root)
        entry["params"]["root"] = str(root)
    grid = parse_grid(document, name)
    seen = {}
    for cell in expand(grid).cells:
        train_set, val_set = make_datasets(cell, 32, tmp_path / "cache")
        image_tensor, label = train_set[0]
        assert tuple(image_tensor.shape[1:]) == tuple(grid.train.crop) == tuple(label.shape)
        val_image, val_label = val_set[0]
        assert val_label.max() < val_set.info.num_classes or val_label.max() == 255
        assert len(val_set.info.palette) == val_set.info.num_classes
        seen[cell.dataset.key] = val_set.info.num_classes
    assert seen == expected_classes


# -- end to end on the synthetic stand-in --------------------------------------------------------------------------


def first_cell_overrides(name: str) -> list[str]:
    """Run one cell per grid: the first model and encoder, and the last loss (study B: focal with class weights)."""
    document = load_yaml(GRIDS / name)
    loss = document["losses"][-1]
    loss = loss if isinstance(loss, str) else yaml.safe_dump(loss, default_flow_style=True).strip()
    return [*STANDIN, f"models=[{document['models'][0]}]", f"encoders=[{document['encoders'][0]}]", f"losses=[{loss}]"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_grid_runs_end_to_end_on_the_synthetic_stand_in(name, tmp_path):
    overrides = first_cell_overrides(name)
    assert len(expand(load_grid(GRIDS / name, overrides)).cells) == 1
    results = tmp_path / "results"
    args = ["run", str(GRIDS / name), "--results", str(results), "--device", "cpu"]
    args += [item for override in overrides for item in ("-o", override)]
    outcome = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    (record_path,) = (results / "cells").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok", record.get("error")
    assert record["dataset"]["name"] == "synthetic" and len(record["confusion_matrix"]) == 19
    assert 0 < record["metrics"]["num_pixels"] <= 2 * 64 * 128  # the labelled pixels of the two val scenes
    assert record["cost"]["params"]["total"] > 0 and record["history"][0]["epoch"] == 1
