"""Grid files: valid ones parse into typed objects; every bad one is one sentence (ConfigError / UnknownNameError)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from segbench.errors import ConfigError, SegbenchError, UnknownNameError
from segbench.grid.cells import expand
from segbench.grid.load import apply_overrides, load_grid, parse_grid
from segbench.grid.schema import GridConfig

BASE = {
    "name": "t",
    "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128}}],
    "models": ["unet", "fpn"],
    "encoders": ["resnet18"],
    "losses": ["ce", {"name": "focal", "gamma": 1.5, "class_weights": "median_freq"}],
    "seeds": [0, 1],
    "train": {"epochs": 1, "batch_size": 4, "crop": [64, 128]},
}


def with_change(path: str, value) -> dict:
    return apply_overrides(BASE, [f"{path}={yaml.safe_dump(value, default_flow_style=True).strip()}"])


def test_valid_grid_parses_into_frozen_objects():
    grid = parse_grid(BASE)
    assert isinstance(grid, GridConfig)
    assert grid.losses[1].key == "focal-g1.5-medfreq"
    assert grid.train.crop == (64, 128)
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen error type)
        grid.train.lr = 1.0


def test_expansion_gives_stable_ids_and_exclusions():
    grid = parse_grid({**BASE, "exclude": [{"model": "fpn", "seed": 1}]})
    expansion = expand(grid)
    slugs = [cell.slug for cell in expansion.cells]
    assert len(slugs) == 2 * 2 * 2 - 2
    assert "unet__resnet18__ce__synthetic__s0" in slugs
    assert all("fpn" not in item.slug or item.slug.endswith("s1") for item in expansion.skipped)
    again = expand(parse_grid({**BASE, "exclude": [{"model": "fpn", "seed": 1}]}))
    assert [c.id for c in again.cells] == [c.id for c in expansion.cells]


def test_hash_changes_with_any_setting_but_slug_does_not():
    first = expand(parse_grid(BASE)).cells[0]
    second = expand(parse_grid(with_change("train.lr", 0.01))).cells[0]
    assert first.slug == second.slug
    assert first.config_hash != second.config_hash


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("train.batch_size", "eight", "train.batch_size"),
        ("train.optimizer", "adamx", "'adamw', 'adam' or 'sgd'"),
        ("train.epochs", 0, "train.epochs"),
        ("train.lr", -1, "train.lr"),
        ("train.bogus", 1, "unknown key 'train.bogus'"),
        ("losses", [{"name": "focal", "class_weights": "magic"}], "losses[0].class_weights"),
        ("seeds", [], "seeds"),
        ("train.crop", [64], "train.crop"),
        ("eval.mode", "slide", "eval.mode: slide needs eval.crop"),
        ("eval.corruptions", {"names": ["rain"]}, "rain not known"),
        ("eval.datasets", [{"name": "synthetic", "params": {"domain": "snow"}}], "domain"),
    ],
)
def test_bad_values_name_the_key(path, value, expected):
    with pytest.raises(ConfigError) as error:
        parse_grid(with_change(path, value))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "lengths",
    [{"epochs": 1, "iterations": 10}, {"epochs": 1, "budget": {"tflops": 0.5}},
     {"iterations": 10, "budget": {"tflops": 0.5}}, {}],
)
def test_exactly_one_of_epochs_iterations_and_budget(lengths):
    train = {key: value for key, value in BASE["train"].items() if key != "epochs"} | lengths
    with pytest.raises(ConfigError) as error:
        parse_grid({**BASE, "train": train})
    message = str(error.value)
    assert "set exactly one of train.epochs, train.iterations and train.budget ({tflops: X})" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("budget", "expected"),
    [({"tflops": -1}, "train.budget.tflops = -1"), ({"tflops": 0}, "train.budget.tflops = 0"),
     ({"tflops": ".inf"}, "train.budget.tflops"), ({"flops": 1}, "train.budget.tflops' is missing")],
)
def test_bad_compute_budgets_are_refused(budget, expected):
    train = {key: value for key, value in BASE["train"].items() if key != "epochs"} | {"budget": budget}
    with pytest.raises(ConfigError) as error:
        parse_grid({**BASE, "train": train})
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_compute_budget_enters_the_hash_only_when_set():
    plain = expand(parse_grid(BASE)).cells[0]
    assert "budget" not in plain.resolved()["train"]  # grids without one keep their cells' ids
    train = {key: value for key, value in BASE["train"].items() if key != "epochs"} | {"budget": {"tflops": 0.5}}
    budgeted = expand(parse_grid({**BASE, "train": train})).cells[0]
    assert budgeted.resolved()["train"]["budget"] == {"tflops": 0.5}
    assert budgeted.slug == plain.slug and budgeted.config_hash != plain.config_hash


@pytest.mark.parametrize(
    ("path", "value", "suggestion"),
    [
        ("models", ["unte"], "did you mean 'unet'?"),
        ("encoders", ["resnet43"], "did you mean 'resnet34'?"),
        ("losses", ["foca"], "did you mean 'focal'?"),
        ("datasets", [{"name": "cityscape", "params": {}}], "did you mean 'cityscapes'?"),
        ("eval.datasets", [{"name": "cityscape", "params": {}}], "did you mean 'cityscapes'?"),
    ],
)
def test_unknown_names_suggest_the_closest(path, value, suggestion):
    with pytest.raises(UnknownNameError, match=suggestion):
        parse_grid(with_change(path, value))


def test_missing_required_key():
    document = {key: value for key, value in BASE.items() if key != "models"}
    with pytest.raises(ConfigError, match="required key 'models' is missing"):
        parse_grid(document)


def test_duplicate_axis_entries_are_refused():
    with pytest.raises(ConfigError, match="lists 'ce' twice"):
        parse_grid(with_change("losses", ["ce", "ce"]))


def test_bad_dataset_params_name_the_key():
    with pytest.raises(ConfigError, match="n_trian"):
        parse_grid(with_change("datasets", [{"name": "synthetic", "params": {"n_trian": 3}}]))


def test_yaml_files(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unet\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_grid(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_grid(scalar)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SegbenchError):
        load_grid(unsafe)


def test_overrides(tmp_path: Path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(BASE))
    grid = load_grid(path, ["train.epochs=3", "eval.batch_size=2", "models=[unet]"])
    assert grid.train.epochs == 3 and grid.eval.batch_size == 2 and grid.models == ["unet"]
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_grid(path, ["train.epochs"])
    with pytest.raises(ConfigError, match="'models=\\[unet' holds a value that is not valid YAML"):
        load_grid(path, ["models=[unet"])


@pytest.mark.slow  # 6 s
def test_every_shipped_grid_is_valid():
    grids = sorted((Path(__file__).parents[1] / "grids").rglob("*.yaml"))
    assert grids, "the repository ships example grids"
    for path in grids:
        grid = load_grid(path)
        assert expand(grid).cells, f"{path} expands to no cell"


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        ({"select": "best"}, "needs one selection split that is not the reported split"),
        ({"select": "best", "select_split": "test", "holdout": 0.1}, "not both"),
        ({"select": "best", "select_split": "val"}, "is the reported split"),
        ({"holdout": 0.1}, "only apply with eval.select: best"),
        ({"select": "best", "holdout": 1.5}, "eval.holdout"),
    ],
)
def test_best_checkpoint_selection_needs_a_split_other_than_the_reported_one(evaluation, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        parse_grid({**BASE, "eval": evaluation})
    assert "\n" not in str(error.value)


def test_selection_defaults_to_the_final_model_and_best_is_part_of_the_hash():
    last = expand(parse_grid(BASE)).cells[0]
    assert last.eval.select == "last"
    best = expand(parse_grid({**BASE, "eval": {"select": "best", "holdout": 0.1}})).cells[0]
    assert best.slug == last.slug and best.config_hash != last.config_hash


@pytest.mark.parametrize(("path", "shown"), [("train", "unknown key 'train.\\n'"),
                                             ("datasets.0.params", "has no option '\\n'")])
def test_a_key_with_a_control_character_is_quoted_on_one_line(path, shown):
    """Found by the grid fuzzing test (tests/reliability/test_bad_grids.py): a YAML key holding a newline was
    echoed as it is, breaking the one-line message."""
    document = copy.deepcopy(BASE)
    node = document
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    node["\n"] = None
    with pytest.raises(ConfigError) as error:
        parse_grid(document)
    assert shown in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("axis", ["datasets", "losses"])
def test_an_unknown_name_with_a_control_character_is_quoted_on_one_line(axis):
    with pytest.raises(UnknownNameError) as error:
        parse_grid({**BASE, axis: ["a\nb"]})
    assert "'a\\nb'" in str(error.value) and "\n" not in str(error.value)
