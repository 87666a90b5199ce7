"""An equal tuning budget per configuration (grid `tune:`): the section's sentences, the studies' resume (a fake runner
that writes records, so a kill can land exactly between a record and Optuna's tell), and tiny sweeps end to end."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from segbench.errors import ConfigError
from segbench.execution.executor import CellTask
from segbench.execution.tuning import run_studies, seeded_params
from segbench.grid.cells import expand
from segbench.grid.load import parse_grid
from segbench.records.paths import studies_file, tuning_dir
from segbench.records.store import new_record, write_record

from support.grids import Sweep, tiny_grid

optuna = pytest.importorskip("optuna")

SPACE = {"lr": {"log_uniform": [1.0e-4, 1.0e-2]}, "weight_decay": {"choice": [0.0, 1.0e-4]}}
TUNE = {"space": SPACE, "trials": 3, "sampler": "random", "iterations": 1, "holdout": 0.25}


def grid_with(tune: dict | None, **sections):
    return parse_grid(tiny_grid(**({"tune": tune} if tune is not None else {}), **sections))


@pytest.mark.parametrize(("tune", "sentence"), [
    (TUNE | {"space": {"crop": {"int": [1, 2]}}},
     "tune.space key 'crop' is not a numeric train key that can be tuned; use one of lr, weight_decay"),
    (TUNE | {"space": {"lr": {"uniform": [0.0, 0.1]}}}, "holds 0.0, but train.lr must be a positive number"),
    (TUNE | {"space": {"lr": {"log_uniform": [1.0e-4, 1.0e-2], "uniform": [0.1, 0.2]}}},
     "give exactly one distribution of log_uniform, uniform, int, choice"),
    (TUNE | {"sampler": "grid"}, "tune.sampler: grid needs points, not ranges: give lr as {choice: [...]}"),
    (TUNE | {"epochs": 1}, "set exactly one of tune.iterations and tune.epochs"),
    (TUNE | {"trials": 0}, "tune.trials"),
])
def test_tune_section_refused_in_one_sentence(tune: dict, sentence: str):
    with pytest.raises(ConfigError) as caught:
        grid_with(tune)
    assert sentence in str(caught.value) and "\n" not in str(caught.value)


def test_grids_without_tune_keep_their_cell_ids():
    plain, tuned = expand(grid_with(None)).cells, expand(grid_with(TUNE)).cells
    assert [cell.id for cell in plain] == [cell.id for cell in tuned]
    assert "trial" not in plain[0].resolved()


@pytest.mark.parametrize("sampler", ["random", "grid"])
def test_seeded_samplers_ask_by_number(sampler: str):
    space = SPACE if sampler == "random" else {"lr": {"choice": [0.001, 0.01]}, "batch_size": {"int": [2, 4]}}
    tune = grid_with(TUNE | {"sampler": sampler, "space": space, "trials": 6}).tune
    asked = [seeded_params(tune, number) for number in range(6)]
    assert asked == [seeded_params(tune, number) for number in range(6)]  # a resumed study asks the same
    assert len({json.dumps(params, sort_keys=True) for params in asked}) == 6
    if sampler == "grid":  # every point of the 2 x 3 grid once
        assert {(p["lr"], p["batch_size"]) for p in asked} == {(a, b) for a in (0.001, 0.01) for b in (2, 3, 4)}


class Killed(Exception):
    """Stands for the runner process dying (SIGKILL) in the middle of a round."""


class FakeRunner:
    """Runs trial tasks by writing an ok record whose holdout mIoU is a function of lr; kill_after makes the
    n-th task die, before (`record_first` False) or after its record is written."""

    def __init__(self, results: Path, kill_at: int | None = None, record_first: bool | None = False,
                 tune=None) -> None:
        self.results, self.kill_at, self.record_first, self.tune = results, kill_at, record_first, tune
        self.ran: list[tuple[str, int, dict]] = []

    def task_for(self, cell) -> CellTask:
        return CellTask(cell, tuning_dir(self.results), "cpu", self.results, "attempt")

    def __call__(self, tasks: list[CellTask]) -> bool:
        for task in tasks:
            cell = task.cell
            dies = self.kill_at is not None and len(self.ran) == self.kill_at
            if dies and self.record_first is None:  # killed after the next trial was enqueued, before it was asked
                study = optuna.load_study(study_name=cell.trial.study, storage=f"sqlite:///{studies_file(self.results)}")
                study.enqueue_trial(seeded_params(self.tune, cell.trial.number + 1))
                raise Killed
            if dies and not self.record_first:
                raise Killed
            self.ran.append((cell.trial.study, cell.trial.number, {"lr": cell.train.lr}))
            write_record(task.results, new_record(cell, "ok", metrics={"miou": cell.train.lr * 10}))
            if dies:
                raise Killed
        return False


def studies(results: Path) -> dict[str, list]:
    storage = f"sqlite:///{studies_file(results)}"
    return {summary.study_name: optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
            for summary in optuna.get_all_study_summaries(storage)}


@pytest.mark.parametrize("record_first", [False, True, None],
                         ids=["killed-before-record", "killed-before-tell", "killed-between-enqueue-and-ask"])
def test_killed_study_resumes_without_repeating_or_losing_a_trial(tmp_path: Path, record_first: bool | None):
    """A kill before a trial's record, between its record and the study's tell, or (the random sampler enqueues
    each trial's seeded parameters, then asks) between the next trial's enqueue and its ask: the resumed study runs
    each of its 3 trials once, with the parameters an uninterrupted run uses."""
    grid = grid_with(TUNE, losses=["ce", "focal"])
    cells = expand(grid).cells
    uninterrupted = FakeRunner(tmp_path / "once")
    run_studies(grid.tune, cells, uninterrupted.results, uninterrupted.task_for, uninterrupted)

    killed = FakeRunner(tmp_path / "twice", kill_at=3, record_first=record_first, tune=grid.tune)
    with pytest.raises(Killed):
        run_studies(grid.tune, cells, killed.results, killed.task_for, killed)
    left = {t.state.name for trials in studies(killed.results).values() for t in trials}
    assert "RUNNING" in left and ("WAITING" in left) == (record_first is None)  # asked and not told (enqueued)
    resumed = FakeRunner(killed.results)
    tuned = run_studies(grid.tune, cells, resumed.results, resumed.task_for, resumed)

    ran = killed.ran + resumed.ran
    assert len(ran) == len({(study, number) for study, number, _ in ran}) == 2 * 3  # none twice, none lost
    assert sorted(ran, key=repr) == sorted(uninterrupted.ran, key=repr)  # the same parameters, in the same order
    for trials in studies(killed.results).values():
        assert [t.number for t in trials] == [0, 1, 2] and {t.state.name for t in trials} == {"COMPLETE"}
    records = list((tuning_dir(killed.results) / "cells").glob("*/record.json"))
    assert len(records) == 6
    part = next(iter(tuned.parts.values()))
    assert part["completed"] == 3 and part["best_value"] == pytest.approx(part["best_params"]["lr"] * 10)
    assert {cell.train.lr for cell in tuned.cells} <= {params["lr"] for _, _, params in ran}


def tiny_tuned(**tune) -> dict:
    return tiny_grid("tiny-tune", train={"epochs": None, "iterations": 1, "batch_size": 2},
                     tune=TUNE | {"trials": 2} | tune)


def move_val(cache: Path, away: bool) -> None:
    """Move the synthetic scenes' val images and labels out of the dataset folder (away) or back."""
    for root in cache.glob("synthetic-*"):
        for kind in ("leftImg8bit", "gtFine"):
            here, there = root / kind / "val", root / kind / "val-away"
            shutil.move(here, there) if away else shutil.move(there, here)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_tiny_study_end_to_end_never_reads_val(tmp_path: Path):
    import os

    from segbench.datasets import parse_dataset_params, prepare_dataset

    document = tiny_tuned()
    cache = Path(os.environ["SEGBENCH_CACHE"])
    params = document["datasets"][0]["params"]
    prepare_dataset("synthetic", parse_dataset_params("synthetic", params), cache)
    sweep = Sweep(tmp_path, document)
    move_val(cache, away=True)
    try:  # without val the trials still train and score (on the holdout); the final cells cannot evaluate
        first = sweep.run()
    finally:
        move_val(cache, away=False)
    trials = {p.parent.name: json.loads(p.read_text())
              for p in (tuning_dir(sweep.results) / "cells").glob("*/record.json")}
    assert len(trials) == 2 and all(r["status"] == "ok" for r in trials.values()), first.stderr
    assert {r["dataset"]["num_val"] for r in trials.values()} == {2}  # a 0.25 holdout of the 8 training scenes
    assert {r["dataset"]["num_train"] for r in trials.values()} == {6}
    assert [r["status"] for r in sweep.records().values()] == ["failed"]

    second = sweep.run("--retry-failed")
    assert second.returncode == 0, second.stderr
    again = {p.parent.name: json.loads(p.read_text())
             for p in (tuning_dir(sweep.results) / "cells").glob("*/record.json")}
    assert {k: r["attempt"] for k, r in again.items()} == {k: r["attempt"] for k, r in trials.items()}  # not rerun
    finals = sweep.records()
    assert len(finals) == 1
    record = next(iter(finals.values()))
    assert record["status"] == "ok" and record["dataset"]["num_val"] == 4
    tuning = record["tuning"]
    assert tuning["trials"] == tuning["completed"] == 2 and tuning["sampler"] == "random"
    assert tuning["best_params"]["lr"] == record["config"]["train"]["lr"]
    assert tuning["best_value"] == max(r["metrics"]["miou"] for r in trials.values())
    assert set(tuning) >= {"study", "space", "objective", "holdout", "seed"}
    from segbench.records.schema import as_record, unknown_fields

    assert all(unknown_fields(as_record(r)) == [] for r in [record, *again.values()])  # records/schema.py knows them

    summary_out = sweep.results / "summary.json"
    from typer.testing import CliRunner

    from segbench.cli import app

    outcome = CliRunner().invoke(app, ["summary", str(sweep.results), "-o", str(summary_out)])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(summary_out.read_text())
    assert json.dumps(summary).count("__t") == 0 and record["cell_id"] in json.dumps(summary)

    from segbench.analysis.report import write_report

    report = write_report(sweep.results).read_text()
    section = report.split("## Tuning")[1].split("\n## ")[0]
    assert "2 trials (random sampler)" in section and "`lr` log-uniform in [0.0001, 0.01]" in section
    assert f"{tuning['best_params']['lr']:.4g}"[:5] in section and "figures/tuning.png" in section
    assert (sweep.results / "report" / "figures" / "tuning.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sweep_killed_mid_tuning_resumes(tmp_path: Path):
    sweep = Sweep(tmp_path, tiny_tuned(trials=3))
    trials_dir = tuning_dir(sweep.results) / "cells"
    process = sweep.start()
    sweep.wait_for(lambda: len(list(trials_dir.glob("*/record.json"))) >= 1, process)
    os_kill_group(process)
    before = {p.parent.name: json.loads(p.read_text())["attempt"] for p in trials_dir.glob("*/record.json")}

    finished = sweep.run()
    assert finished.returncode == 0, finished.stderr
    after = {p.parent.name: json.loads(p.read_text()) for p in trials_dir.glob("*/record.json")}
    assert len(after) == 3 and all(r["status"] == "ok" for r in after.values())
    assert {k: after[k]["attempt"] for k in before} == before  # a finished trial is never run again
    (trials,) = studies(sweep.results).values()
    assert [t.number for t in trials] == [0, 1, 2] and {t.state.name for t in trials} == {"COMPLETE"}
    assert sorted(t.value for t in trials) == sorted(r["metrics"]["miou"] for r in after.values())
    assert [r["tuning"]["completed"] for r in sweep.records().values()] == [3]


def os_kill_group(process) -> None:
    import os

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_every_sampler_runs_its_budget(tmp_path: Path, sampler: str):
    space = SPACE if sampler == "tpe" else {"lr": {"choice": [0.001, 0.01]}, "weight_decay": {"choice": [0.0]}}
    grid = grid_with(TUNE | {"sampler": sampler, "space": space})
    runner = FakeRunner(tmp_path)
    tuned = run_studies(grid.tune, expand(grid).cells, tmp_path, runner.task_for, runner)
    assert [number for _, number, _ in runner.ran] == [0, 1, 2]
    (part,) = tuned.parts.values()
    assert part["sampler"] == sampler and part["completed"] == 3
    assert part["best_params"]["lr"] == max(params["lr"] for _, _, params in runner.ran)


def test_a_holdout_that_leaves_less_than_a_batch_is_refused_before_any_trial(tmp_path: Path):
    grid = grid_with(TUNE | {"holdout": 0.6}, train={"batch_size": 4})
    runner = FakeRunner(tmp_path)
    with pytest.raises(ConfigError, match="tune.holdout 0.6 leaves 3 of the 8 training images of dataset 'synthetic' "
                       "to train a trial on, fewer than its batch of 4"):
        run_studies(grid.tune, expand(grid).cells, tmp_path, runner.task_for, runner)
    assert runner.ran == [] and not studies_file(tmp_path).exists()
