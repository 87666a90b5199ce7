"""`segbench export mlflow`: a results folder as MLflow runs, one per cell, derived from records alone.

A cell's run holds its resolved configuration as parameters (nested keys joined with dots, `train.lr`,
`dataset.params.height`; strings as they are, other values as JSON), the summary metrics of its record's row
(segbench.records.rows: the catalogue's summary fields, the mIoU interval, robustness, deployed forms, further
evaluation datasets) as metrics, its history as stepped metrics (step = epoch), its identity and status as tags
(`cell_id`, `slug`, `config_hash`, `status`, the axes, `segbench_version`; `error_kind` and `error` when it failed)
and its record.json and examples/ as artifacts. The report folder `segbench report` writes (<results>/report) goes to
one more run, tagged `kind: report`, instead of a copy in every cell's run.

Exporting again updates the runs found by their `cell_id` tag and never duplicates them: metric points already
logged are not logged again, and parameters already held are kept, since MLflow cannot change them (a record whose
training configuration changed has a new cell id; a changed evaluation setting keeps it, and is named in a note and
in the run's `params_changed` tag).

MLflow (the `mlflow` extra: mlflow-skinny, and SQLAlchemy and Alembic for its database stores) is imported inside
functions only, so that segbench works without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError, SegbenchError
from segbench.grid.load import load_yaml
from segbench.metrics.catalogue import SUMMARY_FIELDS
from segbench.records.grids import newest_grid_file
from segbench.records.paths import (
    EXAMPLES_DIR,
    MLFLOW_ARTIFACTS_DIR,
    MLFLOW_DB_FILE,
    RECORD_FILE,
    cell_dir,
    cells_dir,
)
from segbench.records.rows import DOMAIN_METRIC_PREFIX, deployment_values, domain_values, record_row
from segbench.records.schema import Record
from segbench.records.store import STATUS_INTERRUPTED, STATUS_OK, load_records

INSTALL_HINT = "pip install 'segbench[mlflow]'"
MLFLOW_PACKAGES = ("mlflow", "sqlalchemy", "alembic")  # the client, and what its SQLite store runs on
REPORT_DIR = "report"  # where `segbench report RESULTS` writes by default
CELL_KIND, REPORT_KIND = "cell", "report"
# Row fields beside the catalogue's summary fields: the mIoU interval and robustness under eval.corruptions.
ROW_METRICS = (*SUMMARY_FIELDS, "miou_ci_low", "miou_ci_high", "mean_corrupted_miou", "relative_robustness")
# The first call to a store runs with no retries and a short timeout, so an unreachable server fails in seconds.
PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
CUT_MARK = " ...[cut]"
NOT_IN_METRIC_KEYS = re.compile(r"[^\w./ :-]")  # what MLflow refuses in a metric's name
# Tags an earlier export may have set that a newer record no longer warrants (a failed cell that succeeded since).
CONDITIONAL_TAGS = ("error_kind", "error", "params_truncated", "params_changed")


@dataclass(frozen=True)
class MlflowTarget:
    """An opened tracking store and the experiment runs go to."""

    client: Any  # mlflow.MlflowClient
    tracking_uri: str
    experiment: str
    experiment_id: str


@dataclass(frozen=True)
class RunExport:
    cell_id: str
    run_id: str
    status: str  # the MLflow run status: FINISHED, FAILED or KILLED
    created: bool  # False: an earlier export's run, updated
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    target: MlflowTarget
    runs: list[RunExport]
    report_run: str | None  # the run holding <results>/report, when the folder has one
    unreadable: list[str]  # one sentence per record that could not be read (not exported)

    @property
    def notes(self) -> list[str]:
        return [note for run in self.runs for note in run.notes]


def missing_packages() -> list[str]:
    """The packages of the `mlflow` extra that this Python cannot import."""
    return [name for name in MLFLOW_PACKAGES if importlib.util.find_spec(name) is None]


def require_mlflow_extra() -> None:
    missing = missing_packages()
    if missing:
        raise ConfigError(f"segbench export mlflow needs {', '.join(missing)} (the `mlflow` extra); install it with "
                          f"{INSTALL_HINT}.")


def default_tracking_uri(results: Path) -> str:
    """sqlite:///<absolute results folder>/mlflow.db: a local store that needs no server."""
    return f"sqlite:///{(Path(results).resolve() / MLFLOW_DB_FILE).as_posix()}"


def default_experiment(results: Path) -> str:
    """The grid's name in the newest resolved grid of <results>/grids/, else the results folder's name."""
    path = newest_grid_file(results)
    with contextlib.suppress(OSError, SegbenchError):
        name = load_yaml(path).get("name") if path else None
        if isinstance(name, str) and name.strip():
            return name.strip()
    return Path(results).resolve().name


def config_params(record: Record) -> dict[str, str]:
    """The resolved configuration as stored, flattened: {"train.lr": "0.001", "eval.split": "val", ...}."""
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in _flatten(record.config.to_json()).items()}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def headline_metrics(record: Record) -> dict[str, float]:
    """The record's numbers as MLflow metrics: its row's ROW_METRICS, the deployed forms' fields and mIoU per further
    evaluation dataset ("miou@fog/val" as "miou/fog/val": MLflow keys cannot hold "@"); undefined values left out."""
    row = record_row(record)
    values: dict[str, Any] = {key: row[key] for key in ROW_METRICS}
    values.update(deployment_values(record))
    values.update({"miou/" + NOT_IN_METRIC_KEYS.sub("_", key.removeprefix(DOMAIN_METRIC_PREFIX)): value
                   for key, value in domain_values(record).items()})
    return {key: float(value) for key, value in values.items() if _is_number(value)}


def history_metrics(record: Record) -> list[tuple[str, float, int]]:
    """(key, value, epoch) for every number of every history row (val_miou, train_loss, lr, epoch_time_s, ...)."""
    return [(key, float(value), row.epoch) for row in record.history or []
            for key, value in row.to_json().items() if key != "epoch" and _is_number(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - len(CUT_MARK)] + CUT_MARK


def _millis(iso: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


@contextlib.contextmanager
def _quiet_and_bounded(env: dict[str, str]) -> Iterator[None]:
    """MLflow's and Alembic's INFO lines (creating the database tables) kept off the terminal, and `env` set where
    the user did not set it, for the duration."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    added = {key: value for key, value in env.items() if key not in os.environ}
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    os.environ.update(added)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        for key in added:
            os.environ.pop(key, None)


def _artifact_location(tracking_uri: str) -> str | None:
    """<folder of the database>/mlartifacts for a SQLite store (MLflow's default, ./mlruns, depends on the working
    directory); None (the store decides) otherwise."""
    path = tracking_uri.removeprefix("sqlite:///").split("?")[0] if tracking_uri.startswith("sqlite:///") else ""
    return (Path(path).resolve().parent / MLFLOW_ARTIFACTS_DIR).as_uri() if path and path != ":memory:" else None


def open_target(tracking_uri: str, experiment: str) -> MlflowTarget:
    """Connect to the store and find or create the experiment; ConfigError (one sentence) when the store cannot be
    reached or opened, or the experiment was deleted there."""
    from mlflow.tracking import MlflowClient

    try:
        with _quiet_and_bounded(PROBE_ENV):
            client = MlflowClient(tracking_uri=tracking_uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(
                experiment, artifact_location=_artifact_location(tracking_uri))
    # Each store raises its own driver's errors (requests, SQLAlchemy, OSError), not always as MlflowException.
    except Exception as exc:
        reason = _cut(" ".join(str(exc).split()), 300)
        raise ConfigError(f"the MLflow tracking store {tracking_uri} cannot be opened ({reason}); pass a reachable "
                          "--tracking-uri, e.g. sqlite:///PATH/mlflow.db.") from exc
    if found is not None and found.lifecycle_stage != "active":
        raise ConfigError(f"MLflow experiment '{experiment}' was deleted in {tracking_uri}; restore it (mlflow "
                          "experiments restore) or pass another --experiment.")
    return MlflowTarget(client, tracking_uri, experiment, experiment_id)


def search_runs(target: MlflowTarget, filter_string: str = "") -> list[Any]:
    """The experiment's active runs matching `filter_string`, every page."""
    runs: list[Any] = []
    token = None
    while True:
        page = target.client.search_runs([target.experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def export_record(target: MlflowTarget, record: Record, cell_folder: Path) -> RunExport:
    """Create or update the run of one record, found by its cell id: what a runner logging cells as they finish
    would call per finished record."""
    found = search_runs(target, f"tags.cell_id = '{record.cell_id}'")
    return _export_record(target, record, Path(cell_folder), found[0] if found else None)


def _run_tags(record: Record) -> dict[str, str]:
    """Identity, status and, for a cell that did not finish, its error; values cut to MLflow's limit."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    row = record_row(record)
    tags = {"kind": CELL_KIND, **{key: str(row[key]) for key in ("cell_id", "slug", "config_hash", "status",
                                                                     "dataset", "model", "encoder", "loss", "seed")},
            "segbench_version": record.segbench_version or "unknown",
            "semantics_version": str(record.semantics_version)}
    if row["machine"]:
        tags["machine"] = row["machine"]  # the latency fingerprint: timings compare only on one machine
    if record.error is not None:
        tags.update(error_kind=record.error.kind, error=record.error.message)
    return {key: _cut(value, MAX_TAG_VAL_LENGTH) for key, value in tags.items()}


def _params_and_tags(record: Record, held: dict[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The parameters a run holding `held` lacks, its tags, and a note when it holds a parameter with another value
    (MLflow cannot change it)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params = config_params(record)
    long = sorted(key for key, value in params.items() if len(value) > MAX_PARAM_VAL_LENGTH)
    params = {key: _cut(value, MAX_PARAM_VAL_LENGTH) for key, value in params.items()}
    changed = sorted(key for key, value in params.items() if key in held and held[key] != value)
    tags = _run_tags(record)
    if long:
        tags["params_truncated"] = (f"{', '.join(long)}: cut to MLflow's {MAX_PARAM_VAL_LENGTH} characters; "
                                    f"the artifact {RECORD_FILE} holds them whole")
    notes = []
    if changed:
        tags["params_changed"] = ", ".join(changed)
        differences = "; ".join(f"{key} = {_cut(held[key], 60)} (the record now says {_cut(params[key], 60)})"
                                for key in changed)
        notes.append(f"{record.cell_id}: its MLflow run keeps the parameters of an earlier export, which MLflow "
                     f"cannot change: {differences}; delete the run and export again to replace them.")
    return {key: value for key, value in params.items() if key not in held}, tags, notes


def _export_record(target: MlflowTarget, record: Record, folder: Path, run: Any | None) -> RunExport:
    from mlflow.entities import Metric, Param, RunTag

    client = target.client
    created = run is None
    if created:
        run = client.create_run(target.experiment_id, start_time=_millis(record.started_at),
                                tags={"cell_id": record.cell_id}, run_name=record.slug)
    run_id = run.info.run_id
    params, tags, notes = _params_and_tags(record, run.data.params)
    finished_at = _millis(record.finished_at or record.written_at)
    timestamp = finished_at or int(time.time() * 1000)
    metrics = [Metric(key, value, timestamp, step) for key, value, step in _unlogged(client, run, record)]
    _log_batches(client, run_id, metrics, [Param(key, value) for key, value in params.items()],
                 [RunTag(key, value) for key, value in tags.items()])
    for key in CONDITIONAL_TAGS:
        if key in run.data.tags and key not in tags:
            client.delete_tag(run_id, key)
    if (folder / RECORD_FILE).is_file():
        client.log_artifact(run_id, str(folder / RECORD_FILE))
    if (folder / EXAMPLES_DIR).is_dir() and any((folder / EXAMPLES_DIR).iterdir()):
        client.log_artifacts(run_id, str(folder / EXAMPLES_DIR), EXAMPLES_DIR)
    status = {STATUS_OK: "FINISHED", STATUS_INTERRUPTED: "KILLED"}.get(record.status, "FAILED")
    client.set_terminated(run_id, status, end_time=finished_at)
    return RunExport(record.cell_id, run_id, status, created, notes)


def _unlogged(client: Any, run: Any, record: Record) -> list[tuple[str, float, int]]:
    """The record's metric points (key, value, step) that the run does not hold yet: a headline metric whose latest
    value differs, a history point whose epoch and value are not in the key's history."""
    latest = run.data.metrics
    points = [(key, value, 0) for key, value in headline_metrics(record).items() if latest.get(key) != value]
    history = history_metrics(record)
    logged = {key: {(metric.step, metric.value) for metric in client.get_metric_history(run.info.run_id, key)}
              for key in {key for key, _, _ in history} if key in latest}
    return points + [(key, value, step) for key, value, step in history if (step, value) not in logged.get(key, ())]


def _log_batches(client: Any, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """log_batch within MLflow's limits per request (metrics, and parameters and tags, counted apart)."""
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
    for entries, keyword in ((params, "params"), (tags, "tags")):
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, **{keyword: entries[start:start + MAX_PARAMS_TAGS_PER_BATCH]})


def _export_report(target: MlflowTarget, results: Path, runs: list[Any]) -> str | None:
    """The report folder as the artifacts of one run per results folder (tags kind: report, results: its path)."""
    report = results / REPORT_DIR
    if not (report / "report.md").is_file():
        return None
    folder = str(results.resolve())
    run = next((run for run in runs if run.data.tags.get("kind") == REPORT_KIND
                and run.data.tags.get("results") == folder), None)
    if run is None:
        run = target.client.create_run(target.experiment_id, run_name=f"report {results.resolve().name}",
                                       tags={"kind": REPORT_KIND, "results": folder})
    target.client.log_artifacts(run.info.run_id, str(report), REPORT_DIR)
    target.client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def export_results(results: Path, tracking_uri: str | None = None, experiment: str | None = None) -> ExportResult:
    """Export every readable record of `results` (and its report) to MLflow; see the module docstring.

    Defaults: the store `default_tracking_uri(results)`, the experiment `default_experiment(results)`. Nothing is
    written when the extra is missing, `results` is not a results folder or holds no readable record (ConfigError).
    """
    results = Path(results)
    require_mlflow_extra()
    if not cells_dir(results).is_dir():
        raise ConfigError(f"{results} is not a results folder (no cells/ inside); pass the --results folder of a run.")
    loaded = load_records(results)
    if not loaded.records:
        raise ConfigError(f"{results} holds no readable record; run a grid into it first.")
    from mlflow.exceptions import MlflowException

    target = open_target(tracking_uri or default_tracking_uri(results), experiment or default_experiment(results))
    with _quiet_and_bounded({}):
        runs = search_runs(target)
        by_cell: dict[str, Any] = {}
        for run in runs:  # newest first: an earlier duplicate (made by hand) is left alone
            by_cell.setdefault(run.data.tags.get("cell_id", ""), run)
        exported = []
        for record in loaded.records:
            try:
                exported.append(_export_record(target, record, cell_dir(results, record.cell_id),
                                               by_cell.get(record.cell_id)))
            except MlflowException as exc:
                raise SegbenchError(f"exporting {record.cell_id} to {target.tracking_uri} failed "
                                    f"({_cut(' '.join(str(exc).split()), 300)}).") from exc
        report_run = _export_report(target, results, runs)
    return ExportResult(target, exported, report_run, loaded.unreadable)


class MlflowView:
    """A progress view that also logs each finished cell to MLflow as it finishes (`segbench run --mlflow URI`): it
    forwards everything to the view it wraps and hands each finished record to export_record. A failed export is
    one warning line; the record is safe on disk and `segbench export mlflow` exports it later."""

    def __init__(self, inner: Any, target: MlflowTarget, results: Path, warn: Any) -> None:
        self.inner, self.target, self.results, self.warn = inner, target, Path(results), warn

    def __getattr__(self, name: str) -> Any:  # begin, started, event, tick, note, end
        return getattr(self.inner, name)

    def finished(self, cell: Any, record: Record) -> None:
        self.inner.finished(cell, record)
        try:
            with _quiet_and_bounded({}):
                export_record(self.target, record, cell_dir(self.results, record.cell_id))
        except Exception as exc:  # a store gone away mid-run must not stop the sweep
            self.warn(f"{record.cell_id} was not logged to MLflow ({_cut(' '.join(str(exc).split()), 200)}); "
                      f"segbench export mlflow {self.results} --tracking-uri {self.target.tracking_uri} logs it later")


def run_target(results: Path, tracking_uri: str, experiment: str | None) -> MlflowTarget:
    """The store `segbench run --mlflow URI` logs into, opened before anything runs (`default` is
    default_tracking_uri(results)); ConfigError (one sentence) when the extra is missing or the store unreachable."""
    require_mlflow_extra()
    uri = tracking_uri
    if tracking_uri == "default":
        Path(results).mkdir(parents=True, exist_ok=True)  # the store's file lives in the results folder
        uri = default_tracking_uri(results)
    return open_target(uri, experiment or default_experiment(results))
