"""`segbench export mlflow`: records written by support.records, exported into a real local MLflow store (SQLite)
and read back with MlflowClient. The store's migrations take seconds, so the module shares one store (the default
one, in the exported results folder); tests that need their own runs export into their own experiment of it."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from segbench.cli import app
from segbench.records.paths import cell_dir

from support.records import record, write_results

OK = record("unet__resnet18__ce__synthetic__s0", quality=True, history_shares=(0.5, 0.8, 0.9, 1.0))
LONG = record("fpn__resnet18__ce__synthetic__s0")
LONG["config"]["dataset"]["params"]["note"] = "x" * 7000  # longer than MLflow's 6000 characters for a parameter
FAILED = record("unet__resnet18__focal__synthetic__s0", status="failed", error_kind="oom")
GRID_NAME = "demo"


def export(results: Path, *options: str) -> Any:
    return CliRunner().invoke(app, ["export", "mlflow", str(results), *options])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with two finished cells (examples on disk), a failed one, a resolved grid and a report."""
    folder = write_results(tmp_path_factory.mktemp("mlflow") / "results", [OK, LONG, FAILED], files=True)
    (folder / "grids").mkdir()
    (folder / "grids" / f"{GRID_NAME}-0123456789.yaml").write_text(f"name: {GRID_NAME}\n", encoding="utf-8")
    (folder / "report" / "figures").mkdir(parents=True)
    (folder / "report" / "report.md").write_text("# segbench report\n", encoding="utf-8")
    (folder / "report" / "figures" / "pareto.png").write_bytes(b"\x89PNG\r\n")
    return folder


@pytest.fixture(scope="module")
def exported(results: Path) -> tuple[Any, Any]:
    """The folder exported twice with the defaults (store RESULTS/mlflow.db, experiment: the grid's name)."""
    pytest.importorskip("mlflow")
    return export(results), export(results)


@pytest.fixture(scope="module")
def store(results: Path, exported: tuple[Any, Any]) -> str:
    return f"sqlite:///{(results / 'mlflow.db').resolve().as_posix()}"


@pytest.fixture(scope="module")
def runs(store: str) -> dict[str, Any]:
    """The experiment's runs by cell id (the report's run under "report")."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(GRID_NAME)
    found = client.search_runs([experiment.experiment_id])
    return {run.data.tags.get("cell_id", run.data.tags["kind"]): run for run in found}


def client_of(store: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(store)


def test_exporting_twice_gives_one_run_per_cell(results: Path, exported: tuple[Any, Any], runs: dict[str, Any]):
    first, second = exported
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "3 runs created, 0 updated, 1 not finished" in first.output.replace("\n", " ")
    assert "0 runs created, 3 updated, 1 not finished" in second.output.replace("\n", " ")
    assert sorted(runs) == sorted([OK["cell_id"], LONG["cell_id"], FAILED["cell_id"], "report"])
    assert (results / "mlflow.db").is_file() and (results / "mlartifacts").is_dir()  # nothing in the working folder


def test_parameters_are_the_flattened_configuration(runs: dict[str, Any]):
    params = runs[OK["cell_id"]].data.params
    assert params["train.lr"] == json.dumps(OK["config"]["train"]["lr"])
    assert params["eval.split"] == "val" and params["model"] == "unet" and params["seed"] == "0"
    assert params["dataset.params.height"] == str(OK["config"]["dataset"]["params"]["height"])
    assert params["train.crop"] == json.dumps(OK["config"]["train"]["crop"])
    long = runs[LONG["cell_id"]]
    note = long.data.params["dataset.params.note"]
    assert len(note) == 6000 and note.endswith("...[cut]") and note.startswith("xxx")
    assert long.data.tags["params_truncated"].startswith("dataset.params.note: cut to MLflow's 6000 characters")
    assert "params_truncated" not in runs[OK["cell_id"]].data.tags


def test_metrics_and_history(store: str, runs: dict[str, Any]):
    metrics = runs[OK["cell_id"]].data.metrics
    assert metrics["miou"] == pytest.approx(OK["metrics"]["miou"])
    assert metrics["pixel_accuracy"] == pytest.approx(OK["metrics"]["pixel_accuracy"])
    assert metrics["params"] == OK["cost"]["params"]["total"]
    assert metrics["latency_ms_p50"] == pytest.approx(OK["cost"]["latency"]["batch_1"]["latency_ms_p50"])
    assert metrics["ece"] == pytest.approx(OK["calibration"]["ece"])
    assert metrics["boundary_miou"] == pytest.approx(OK["boundary"]["boundary_miou"])
    assert "ece" not in runs[LONG["cell_id"]].data.metrics  # not measured: left out, not logged as NaN
    client = client_of(store)
    run_id = runs[OK["cell_id"]].info.run_id
    for key in ("val_miou", "train_loss", "lr"):
        history = sorted((point.step, point.value) for point in client.get_metric_history(run_id, key))
        # exported twice, each epoch once
        assert history == [(row["epoch"], row[key]) for row in OK["history"]], key
    assert [point.step for point in client.get_metric_history(run_id, "miou")] == [0]


def test_tags_and_status(runs: dict[str, Any]):
    ok, failed = runs[OK["cell_id"]], runs[FAILED["cell_id"]]
    assert ok.info.status == "FINISHED" and ok.info.run_name == OK["slug"]
    tags = ok.data.tags
    assert {key: tags[key] for key in ("kind", "cell_id", "slug", "config_hash", "status", "dataset", "model",
                                       "encoder", "loss", "seed")} == {
        "kind": "cell", "cell_id": OK["cell_id"], "slug": OK["slug"], "config_hash": OK["config_hash"],
        "status": "ok", "dataset": "synthetic", "model": "unet", "encoder": "resnet18", "loss": "ce", "seed": "0"}
    assert tags["segbench_version"] == OK["segbench_version"] and tags["machine"] == "machine-a"
    assert "error" not in tags
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error_kind"] == "oom" and failed.data.tags["error"] == FAILED["error"]["message"]
    assert not failed.data.metrics


def test_artifacts(store: str, runs: dict[str, Any]):
    client = client_of(store)
    ok = runs[OK["cell_id"]].info.run_id
    assert sorted(item.path for item in client.list_artifacts(ok)) == ["examples", "record.json"]
    assert sorted(item.path for item in client.list_artifacts(ok, "examples")) == sorted(
        example[kind] for example in OK["examples"] for kind in ("image", "label", "pred"))
    assert [item.path for item in client.list_artifacts(runs[FAILED["cell_id"]].info.run_id)] == ["record.json"]
    report = runs["report"].info.run_id
    assert sorted(item.path for item in client.list_artifacts(report, "report")) == ["report/figures",
                                                                                      "report/report.md"]


def test_a_rerun_cell_updates_its_run(tmp_path: Path, store: str):
    """A failed cell that finished since: the same run, now FINISHED and without its error; an evaluation setting
    that changed (it keeps the cell id) is named, since MLflow keeps the first parameters."""
    folder = write_results(tmp_path / "results", [FAILED])
    assert export(folder, "--tracking-uri", store, "--experiment", "rerun").exit_code == 0
    finished = record(FAILED["slug"])
    finished["config"]["eval"]["split"] = "test"
    write_results(folder, [finished])
    outcome = export(folder, "--tracking-uri", store, "--experiment", "rerun")
    assert outcome.exit_code == 0, outcome.output
    assert "warning: " in outcome.output and "eval.split = val (the record now says test)" in outcome.output
    client = client_of(store)
    [run] = client.search_runs([client.get_experiment_by_name("rerun").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "ok"
    assert "error" not in run.data.tags and "error_kind" not in run.data.tags
    assert run.data.params["eval.split"] == "val" and run.data.tags["params_changed"] == "eval.split"
    assert run.data.metrics["miou"] == pytest.approx(finished["metrics"]["miou"])


def test_one_record_at_a_time(results: Path, store: str):
    """What a runner logging cells as they finish would call: the run is found by its cell id, never duplicated."""
    from segbench.analysis.mlflow_export import export_record, open_target
    from segbench.records.store import read_record

    target = open_target(store, "one-by-one")
    ok = read_record(cell_dir(results, OK["cell_id"]) / "record.json")
    first, second = (export_record(target, ok, cell_dir(results, OK["cell_id"])) for _ in range(2))
    assert first.created and not second.created and first.run_id == second.run_id
    assert len(client_of(store).search_runs([target.experiment_id])) == 1


def test_without_the_extra_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = write_results(tmp_path / "results", [FAILED])
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails and find_spec says absent
    outcome = export(folder)
    assert outcome.exit_code == 2
    assert outcome.output.startswith("error: ") and len(outcome.output.strip().splitlines()) == 1
    assert "pip install 'segbench[mlflow]'" in outcome.output
    assert sorted(tmp_path.rglob("*")) == before


def test_not_a_results_folder(tmp_path: Path):
    pytest.importorskip("mlflow")
    outcome = export(tmp_path)
    assert outcome.exit_code == 2 and outcome.output.startswith("error: ")
    assert "is not a results folder" in outcome.output and len(outcome.output.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_an_unreachable_store(tmp_path: Path):
    pytest.importorskip("mlflow")
    folder = write_results(tmp_path / "results", [FAILED])
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        for uri in (f"http://127.0.0.1:{closed.getsockname()[1]}", "nosuchscheme://store"):
            outcome = export(folder, "--tracking-uri", uri)
            assert outcome.exit_code == 2, outcome.output
            assert outcome.output.startswith(f"error: the MLflow tracking store {uri} cannot be opened")
            assert len(outcome.output.strip().splitlines()) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["cells"]
    assert cell_dir(folder, FAILED["cell_id"]).is_dir()
