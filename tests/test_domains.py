"""Cross-domain evaluation: the built-in scenes' `domain` (day, dusk, fog, night), `eval.datasets` with labels mapped by
class name (segbench/cell/domains.py), and the record and report they give."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from segbench.cell.domains import class_table
from segbench.datasets.camvid import CAMVID_CLASSES, CAMVID_TO_CITYSCAPES
from segbench.datasets.labels import TRAIN_CLASSES
from segbench.datasets.synthetic import GENERATOR_VERSION, SyntheticParams, photograph
from segbench.grid.schema import EvalConfig


def test_the_default_domain_keeps_the_scenes_cache_key():
    """Scenes rendered before domains existed are found again: the key of a day grid hashes what it hashed then."""
    params = SyntheticParams(n_train=8, n_val=4, height=64, width=128, seed=5)
    before = params.model_dump(exclude={"root", "domain"}) | {"generator": GENERATOR_VERSION}
    assert params.content_key() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert SyntheticParams(domain="fog").content_key() != SyntheticParams().content_key()


@pytest.mark.parametrize("domain", ["dusk", "fog", "night"])
def test_a_domain_changes_the_light_not_the_scene(domain):
    image = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    shot = photograph(image, domain, np.random.default_rng(1))
    assert shot.shape == image.shape and shot.dtype == np.uint8
    assert np.abs(shot.astype(int) - image.astype(int)).mean() > 4
    assert np.array_equal(photograph(image, domain, np.random.default_rng(1)), shot)  # seeded: reruns are equal
    assert np.array_equal(photograph(image, "day", np.random.default_rng(1)), image)
    if domain != "fog":
        assert shot.mean() < image.mean()  # less light
    else:
        assert shot[0].std() < image[0].std()  # the haze is thickest at the top


def test_labels_are_mapped_by_class_name_and_the_rest_ignored():
    table, matched = class_table(["sky", "building", "void", "car", "tree"], 2, ["road", "building", "sky", "car"],
                                 255)
    assert matched == ["sky", "building", "car"]
    assert table[[0, 1, 2, 3, 4, 255]].tolist() == [2, 1, 255, 3, 255, 255]


def test_camvid_classes_meet_the_cityscapes_classes_through_their_counterparts():
    """Trained on the 19 Cityscapes classes, scored on CamVid labels: each CamVid class with a counterpart becomes it,
    bicyclist (a rider and a bicycle in Cityscapes) is ignored."""
    table, matched = class_table(list(CAMVID_CLASSES), 255, list(TRAIN_CLASSES), 255)
    expected = {"sky": "sky", "building": "building", "pole": "pole", "road": "road", "pavement": "sidewalk",
                "tree": "vegetation", "sign symbol": "traffic sign", "fence": "fence", "car": "car",
                "pedestrian": "person"}
    assert matched == list(expected)
    for camvid, cityscapes in expected.items():
        assert table[CAMVID_CLASSES.index(camvid)] == TRAIN_CLASSES.index(cityscapes), camvid
    assert table[CAMVID_CLASSES.index("bicyclist")] == 255 and table[11] == 255 and table[255] == 255
    # the table is one-to-one onto train classes, so it reads the same way round
    assert set(CAMVID_TO_CITYSCAPES) <= set(CAMVID_CLASSES) and set(CAMVID_TO_CITYSCAPES.values()) <= set(TRAIN_CLASSES)
    assert len(set(CAMVID_TO_CITYSCAPES.values())) == len(CAMVID_TO_CITYSCAPES)


def test_cityscapes_classes_meet_a_camvid_model_through_the_same_counterparts():
    """Trained on CamVid, scored on Cityscapes-class labels: the counterparts map back; what CamVid merges into a class
    but Cityscapes labels apart (wall, traffic light, truck, bus, train) and rider, bicycle, motorcycle are ignored."""
    table, matched = class_table(list(TRAIN_CLASSES), 255, list(CAMVID_CLASSES), 255)
    assert matched == [name for name in TRAIN_CLASSES if name in CAMVID_TO_CITYSCAPES.values()]
    for camvid, cityscapes in CAMVID_TO_CITYSCAPES.items():
        assert table[TRAIN_CLASSES.index(cityscapes)] == CAMVID_CLASSES.index(camvid), cityscapes
    ignored = ["wall", "traffic light", "terrain", "rider", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert sorted(set(TRAIN_CLASSES) - set(matched)) == sorted(ignored)
    assert all(table[TRAIN_CLASSES.index(name)] == 255 for name in ignored)
    # between two datasets of the same classes the map stays the identity, renamed classes or not
    identity, _ = class_table(list(CAMVID_CLASSES), 255, list(CAMVID_CLASSES), 255)
    assert identity[:11].tolist() == list(range(11))


def test_eval_datasets_are_named_and_distinct():
    config = EvalConfig.model_validate({"datasets": ["synthetic", {"name": "synthetic", "id": "fog",
                                                                     "params": {"domain": "fog"}}]})
    assert [d.key for d in config.datasets] == ["synthetic", "fog"] and config.datasets[0].split == "val"
    with pytest.raises(ValueError, match="lists 'synthetic/val' twice"):
        EvalConfig.model_validate({"datasets": ["synthetic", "synthetic"]})


@pytest.mark.slow
def test_a_cell_is_evaluated_on_its_own_split_again_and_on_another_domain(tmp_path):
    """eval.datasets naming the cell's own dataset and split reproduces its confusion matrix exactly (the map is the
    identity for the same classes); a fog domain of the same scenes is evaluated beside it, and the report shows
    both with their gap."""
    from typer.testing import CliRunner

    from segbench.analysis.report import write_report
    from segbench.cli import app

    from support.grids import read_records, tiny_grid, write_grid

    document = tiny_grid(train={"epochs": 1})
    params = document["datasets"][0]["params"]
    document["eval"]["datasets"] = [{"name": "synthetic", "id": "same", "params": params},
                                    {"name": "synthetic", "id": "fog", "params": {**params, "domain": "fog"}}]
    grid = write_grid(tmp_path / "grid.yaml", document)
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    ((_, record),) = read_records(results).items()
    assert record["status"] == "ok", record.get("error")
    same, fog = record["domains"]
    assert same["confusion_matrix"] == record["confusion_matrix"] and same["classes_mapped"] == 19
    assert same["metrics"]["miou"] == pytest.approx(record["metrics"]["miou"], abs=1e-12)
    assert fog["dataset"] == "fog" and fog["images"] == record["dataset"]["num_val"]
    assert sum(map(sum, fog["confusion_matrix"])) == fog["metrics"]["num_pixels"] > 0
    text = write_report(results, tmp_path / "report").read_text()
    assert "### Other domains" in text and "fog (val)" in text
    assert torch.tensor(fog["confusion_matrix"]).shape == (19, 19)


def test_a_missing_evaluation_dataset_folder_stops_the_run_before_anything_is_written(tmp_path):
    """A further dataset of eval.datasets whose folder is not there: one sentence naming it and what to put there,
    exit 2, no cell written (checked with the grid's own datasets, before any training)."""
    from support.grids import Sweep, tiny_grid

    document = tiny_grid(eval={"datasets": [{"name": "cityscapes", "params": {"root": str(tmp_path / "nowhere")}}]})
    sweep = Sweep(tmp_path / "run", document)
    outcome = sweep.run()
    said = " ".join((outcome.stdout + outcome.stderr).split())
    assert outcome.returncode == 2 and not (sweep.results / "cells").exists()
    assert f"Cityscapes root {tmp_path / 'nowhere'} does not exist or is not a folder" in said
    assert "leftImg8bit/ and gtFine/" in said
