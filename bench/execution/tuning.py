"""An equal tuning budget per configuration (grid `tune:`): one Optuna study per configuration, its trials run as
cells by the runner, then the final cells with each configuration's best parameters.

A configuration is a model x encoder x weights x loss x dataset. Its study lives in Optuna's SQLite storage inside
the results folder (`<results>/tuning/studies.db`), which only the runner process opens; the trials are cells of
their own (`Cell.trial`, records under `<results>/tuning/cells/`), trained for the tune section's short length and
scored by their mIoU on a holdout of the training split carved by the study's seed: val is never read while tuning.

Resume: a trial is asked (RUNNING in the study) before its cell runs and told after its record is written. A sweep
killed in between leaves it RUNNING: the next run tells it from its record when the record is finished, and reruns
its cell (same number, same parameters) when it is not, so no trial is run twice or lost. With the random and grid
samplers a trial's parameters are a function of the study's seed and the trial's number (enqueued before it is
asked), so a resumed sweep asks what an uninterrupted one would; TPE's suggestions depend on the trials told so far.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segbench.errors import ConfigError
from segbench.execution.executor import CellTask
from segbench.grid.cells import Cell, TrialSpec
from segbench.grid.tune import TuneConfig
from segbench.records.paths import RECORD_FILE, cell_dir, studies_file, tuning_dir
from segbench.records.schema import Record
from segbench.records.store import is_finished, read_record, write_record

OBJECTIVE = "mIoU on a holdout of the training split (the trial's reported split; val is never read)"

# Runs a list of trial tasks to the end; True when the run was interrupted (the runner's loop, passed in so that
# this module does not import the runner).
RunTasks = Callable[[list[CellTask]], bool]


@dataclass
class Study:
    """One configuration's study: its name, the configuration's cell at the study's seed, and the Optuna study."""

    name: str
    base: Cell
    optuna_study: Any
    tasks: dict[int, CellTask] = field(default_factory=dict)  # trial number -> the task running it this round


@dataclass
class TunedCells:
    """The final cells (each configuration's best parameters, every seed) and the `tuning` part of each."""

    cells: list[Cell]
    parts: dict[str, dict[str, Any]]  # final cell id -> the record's tuning part


def configuration_key(cell: Cell) -> str:
    """The cell's configuration, as its slug names it without the seed."""
    return f"{cell.model}__{cell.encoder_key}__{cell.loss.key}__{cell.dataset.key}"


def study_name(base: Cell, tune: TuneConfig) -> str:
    """The configuration's key and a hash of everything a trial depends on (its resolved cell without the train keys
    the study sets, and the tune section): a changed grid starts a new study instead of resuming a stale one."""
    resolved = base.resolved()
    resolved["train"] = {key: value for key, value in resolved["train"].items() if key not in tune.space}
    payload = {"cell": resolved, "tune": tune.model_dump(mode="json")}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{configuration_key(base)}-{digest}"


def trial_cell(base: Cell, tune: TuneConfig, study: str, number: int, params: dict[str, Any]) -> Cell:
    """The cell that runs trial `number`: the suggested train values, the trial's short length, the last weights
    reported on the holdout, no cost measurement (the same for every trial of a configuration)."""
    train = base.train.model_copy(update={**params, "iterations": tune.iterations, "epochs": tune.epochs,
                                          "budget": None})
    evaluation = base.eval.model_copy(update={"select": "last", "select_split": None, "holdout": None})
    measure = base.measure.model_copy(update={"enabled": False})
    return base.model_copy(update={"train": train, "eval": evaluation, "measure": measure,
                                   "trial": TrialSpec(study=study, number=number, holdout=tune.holdout)})


def distributions(tune: TuneConfig) -> dict[str, Any]:
    """The Optuna distribution of each tuned train key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    made: dict[str, Any] = {}
    for key, dimension in tune.space.items():
        bounds = dimension.bounds
        if dimension.kind == "choice":
            made[key] = CategoricalDistribution(bounds)
        elif dimension.kind == "int":
            made[key] = IntDistribution(*bounds)
        else:
            made[key] = FloatDistribution(*bounds, log=dimension.kind == "log_uniform")
    return made


def seeded_params(tune: TuneConfig, number: int) -> dict[str, Any]:
    """Trial `number`'s parameters under the random or grid sampler: a function of the study's seed and the number
    alone, so a resumed study asks them in the same order. Grid: the points of the space in a seeded order, cycled."""
    rng = np.random.default_rng([tune.seed, number])
    if tune.sampler == "grid":
        axes = [dim.bounds if dim.kind == "choice" else list(range(dim.bounds[0], dim.bounds[1] + 1))
                for dim in tune.space.values()]
        points = list(itertools.product(*axes))
        order = np.random.default_rng(tune.seed).permutation(len(points))
        return dict(zip(tune.space, points[order[number % len(points)]], strict=True))
    params: dict[str, Any] = {}
    for key, dimension in tune.space.items():
        low_high = dimension.bounds
        if dimension.kind == "log_uniform":
            params[key] = float(math.exp(rng.uniform(math.log(low_high[0]), math.log(low_high[1]))))
        elif dimension.kind == "uniform":
            params[key] = float(rng.uniform(*low_high))
        elif dimension.kind == "int":
            params[key] = int(rng.integers(low_high[0], low_high[1] + 1))
        else:
            params[key] = low_high[int(rng.integers(len(low_high)))]
    return params


def check_trial_sizes(tune: TuneConfig, cells: list[Cell]) -> None:
    """ConfigError, before any trial runs, when a dataset whose split sizes its options give leaves a trial fewer
    training images (the training split less the tuning holdout) than its largest batch."""
    from segbench.datasets import parse_dataset_params
    from segbench.grid.cells import holdout_size

    for cell in cells:
        sizes = parse_dataset_params(cell.dataset.name, cell.dataset.params).split_sizes()
        if not sizes or "train" not in sizes:
            continue  # known once the dataset's folder is read: such a trial fails with the reason in its record
        batch = cell.train.batch_size
        if "batch_size" in tune.space:
            batch = max(int(value) for value in tune.space["batch_size"].bounds)
        left = sizes["train"] - holdout_size(sizes["train"], tune.holdout)
        if left < batch:
            raise ConfigError(f"tune.holdout {tune.holdout:g} leaves {left} of the {sizes['train']} training images "
                              f"of dataset '{cell.dataset.key}' to train a trial on, fewer than its batch of {batch}; "
                              "lower tune.holdout or the batch size, or use more training images.")


def open_studies(tune: TuneConfig, cells: list[Cell], results: Path) -> list[Study]:
    """One study per configuration of `cells`, created or loaded from the results folder's storage."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("the grid's tune section needs Optuna: pip install 'segbench[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning_dir(results).mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{studies_file(results)}")
    studies: dict[str, Study] = {}
    for cell in cells:
        base = cell.model_copy(update={"seed": tune.seed})
        name = study_name(base, tune)
        if name in studies:
            continue
        sampler = (optuna.samplers.TPESampler(seed=tune.seed) if tune.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=tune.seed))  # random, grid: enqueued (seeded_params)
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    load_if_exists=True)
        study.set_user_attr("sampler", tune.sampler)
        study.set_user_attr("space", tune.space_json())
        studies[name] = Study(name, base, study)
    return list(studies.values())


def trial_record(results: Path, cell: Cell) -> Record | None:
    path = cell_dir(tuning_dir(results), cell.id) / RECORD_FILE
    try:
        record = read_record(path) if path.exists() else None
    except Exception:  # a damaged record: the trial reruns
        return None
    return record if record is not None and record.config_hash == cell.config_hash else None


def tell(study: Study, number: int, record: Record | None) -> bool:
    """Tell the study how trial `number` ended, from its record; False (left RUNNING, to be rerun) when it did not
    finish: no record, interrupted, or a failure a rerun may cure (the runner's rule for cells, is_finished)."""
    from optuna.trial import TrialState

    if record is None or not is_finished(record, record.config_hash, retry_failed=False):
        return False
    score = record.metrics.miou if record.ok and record.metrics is not None else None
    if score is None or not math.isfinite(score):
        study.optuna_study.tell(number, state=TrialState.FAIL)
    else:
        study.optuna_study.tell(number, score)
    return True


def next_tasks(study: Study, tune: TuneConfig, results: Path, task_for: Callable[[Cell], CellTask]) -> list[CellTask]:
    """This round's tasks of a study: its trials left RUNNING by an earlier run that have no finished record (those
    with one are told from it), and one newly asked trial while the budget allows."""
    from optuna.trial import TrialState

    study.tasks = {}
    for trial in study.optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        cell = trial_cell(study.base, tune, study.name, trial.number, trial.params)
        if not tell(study, trial.number, trial_record(results, cell)):
            study.tasks[trial.number] = task_for(cell)
    trials = study.optuna_study.get_trials(deepcopy=False)
    # A trial enqueued by a run killed before it asked for it is WAITING: it is the next one asked, not one more.
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    asked = len(trials) - waiting
    if asked < tune.trials and not study.tasks:
        if tune.sampler in ("random", "grid") and not waiting:
            study.optuna_study.enqueue_trial(seeded_params(tune, asked))
        trial = study.optuna_study.ask(distributions(tune))
        cell = trial_cell(study.base, tune, study.name, trial.number, trial.params)
        study.tasks[trial.number] = task_for(cell)
    return list(study.tasks.values())


def run_studies(tune: TuneConfig, cells: list[Cell], results: Path, task_for: Callable[[Cell], CellTask],
                run_tasks: RunTasks) -> TunedCells | None:
    """Run every configuration's study to its budget, round by round (one trial of each study in flight at once),
    then return the final cells; None when the run was interrupted (the studies resume on the next run)."""
    check_trial_sizes(tune, cells)
    studies = open_studies(tune, cells, results)
    while True:
        tasks = [task for study in studies for task in next_tasks(study, tune, results, task_for)]
        if not tasks:
            break
        interrupted = run_tasks(tasks)
        for study in studies:
            for number, task in study.tasks.items():
                tell(study, number, trial_record(results, task.cell))
        if interrupted:
            return None
    return final_cells(tune, cells, studies)


def final_cells(tune: TuneConfig, cells: list[Cell], studies: list[Study]) -> TunedCells:
    """Every grid cell with its configuration's best parameters (cells of a study with no scored trial keep the
    grid's settings) and the `tuning` part of its record."""
    from optuna.trial import TrialState

    by_key = {configuration_key(study.base): study for study in studies}
    tuned, parts = [], {}
    for cell in cells:
        study = by_key[configuration_key(cell)]
        completed = study.optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = max(completed, key=lambda trial: trial.value, default=None)
        params = dict(best.params) if best is not None else {}
        final = cell.model_copy(update={"train": cell.train.model_copy(update=params)})
        tuned.append(final)
        parts[final.id] = {"study": study.name, "sampler": tune.sampler, "trials": tune.trials,
                           "completed": len(completed), "space": tune.space_json(),
                           "best_params": params or None, "best_value": None if best is None else best.value,
                           "objective": OBJECTIVE, "holdout": tune.holdout, "seed": tune.seed}
    return TunedCells(tuned, parts)


def add_tuning_parts(results: Path, tuned: TunedCells) -> None:
    """Write each final cell's `tuning` part into its record (the runner's write, after the worker's; a record of an
    earlier run that missed it, killed in between, gets it now)."""
    for cell in tuned.cells:
        path = cell_dir(results, cell.id) / RECORD_FILE
        try:
            record = read_record(path) if path.exists() else None
        except Exception:  # a damaged record is the runner's to rerun
            continue
        if record is None or record.config_hash != cell.config_hash or record.tuning is not None:
            continue
        write_record(results, {**record.to_json(), "tuning": tuned.parts[cell.id]})
