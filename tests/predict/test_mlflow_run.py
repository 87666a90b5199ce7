"""`segbench run --mlflow URI`: each cell logged to MLflow as it finishes, here the session's trained cell evaluated
again with a new corruption (nothing trains); an unreachable store stops the run before anything is written."""

from __future__ import annotations

import copy
import shutil

import pytest

from support.grids import PREDICT_GRID, Sweep


@pytest.mark.slow
def test_a_run_logs_each_finished_cell_to_mlflow(trained_cell, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    document = copy.deepcopy(PREDICT_GRID)
    document["eval"]["corruptions"] = {"names": ["brightness"], "severities": [1]}
    sweep = Sweep(tmp_path, document)
    shutil.copytree(trained_cell.results, sweep.results)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    outcome = sweep.run("--mlflow", uri, "--experiment", "runs", fault="no_training=1")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert f"MLflow runs in {uri}, experiment runs" in " ".join(outcome.stderr.split())
    (record,) = sweep.records().values()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("runs").experiment_id])
    assert run.data.tags["cell_id"] == record["cell_id"] and run.info.status == "FINISHED"
    assert run.data.metrics["miou"] == pytest.approx(record["metrics"]["miou"])
    assert run.data.params["eval.corruptions.names"] == "[\"brightness\"]"  # the settings it was evaluated with


def test_an_unreachable_store_stops_the_run_before_anything_is_written(tmp_path):
    pytest.importorskip("mlflow")
    sweep = Sweep(tmp_path, PREDICT_GRID)
    outcome = sweep.run("--mlflow", "unknownscheme://nowhere")
    said = " ".join((outcome.stdout + outcome.stderr).split())
    assert outcome.returncode == 2 and "the MLflow tracking store unknownscheme://nowhere cannot be opened" in said
    assert not sweep.results.exists()


def test_experiment_without_mlflow_is_one_sentence_and_nothing_written(tmp_path):
    sweep = Sweep(tmp_path, PREDICT_GRID)
    outcome = sweep.run("--experiment", "runs")
    said = " ".join((outcome.stdout + outcome.stderr).split())
    assert outcome.returncode == 2 and "--experiment names the MLflow experiment of --mlflow" in said
    assert not sweep.results.exists()
