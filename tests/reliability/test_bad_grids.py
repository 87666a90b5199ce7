"""Malformed and mistyped grid documents: always one clean sentence and exit code 2, never a traceback, nothing
written."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segbench.cli import app
from segbench.errors import SegbenchError
from segbench.grid.load import parse_grid

VALID = {
    "name": "fuzz",
    "datasets": [{"name": "synthetic", "params": {"n_train": 4, "n_val": 2, "height": 64, "width": 64}}],
    "models": ["unet"],
    "encoders": ["resnet18"],
    "losses": ["ce", {"name": "focal", "gamma": 2.0}],
    "seeds": [0],
    "train": {"epochs": 1, "batch_size": 2, "crop": [64, 64]},
    "eval": {"batch_size": 2},
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["../../etc", "unte", "foca", "adamx", "-1", "1e-3"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [path for path in paths(VALID) if path]


def mutate(document, path, action, value):
    import copy

    document = copy.deepcopy(document)
    node = document
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if action == "delete" and isinstance(node, dict):
        del node[last]
    elif action == "rename" and isinstance(node, dict):
        node[f"{last}x"] = node.pop(last)
    else:
        node[last] = value
    return document


mutations = st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["replace", "delete", "rename"]), values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=1, max_size=3))
def test_mutated_grids_raise_only_segbench_errors(changes):
    document = VALID
    for path, action, value in changes:
        try:
            document = mutate(document, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    try:
        parse_grid(document, source="fuzz.yaml")
    except SegbenchError as error:
        message = str(error)
        assert message.startswith("fuzz.yaml") or "dataset" in message
        assert "\n" not in message and "Traceback" not in message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(values, st.text(max_size=40)))
def test_any_yaml_document_through_the_cli_exits_2_or_runs_dry(tmp_path_factory, document):
    folder = tmp_path_factory.mktemp("grid")
    path = folder / "grid.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    results = folder / "results"
    outcome = CliRunner().invoke(app, ["run", str(path), "--results", str(results), "--dry-run"])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.startswith("error: ") and outcome.output.count("\n") == 1
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert not results.exists()


def test_yaml_cannot_construct_python_objects(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    outcome = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert outcome.exit_code == 2 and not marker.exists()


def test_ids_cannot_escape_the_results_folder(tmp_path: Path):
    for change in ({"name": "../../outside"}, {"datasets": [{"name": "synthetic", "id": "../x"}]},
                   {"losses": [{"name": "ce", "id": "a/b"}]}):
        path = tmp_path / "grid.yaml"
        path.write_text(yaml.safe_dump({**VALID, **change}))
        outcome = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "r")])
        assert outcome.exit_code == 2 and "file names" in outcome.output, outcome.output
    assert not (tmp_path / "r").exists() and not (tmp_path.parent / "outside").exists()
