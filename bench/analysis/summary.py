"""A compact summary of a results folder: one flat row of raw numbers per cell slug, for gates and baselines.

Derived from records alone. When one folder holds several records with the same slug (runs under different
settings), the newest is summarised and the others are listed as superseded: they are not comparable with it.

Version 2 rows say where each cell's latency was timed (`machine`, a fingerprint id, detailed once under `machines`),
how far its timing rounds agreed (`latency_spread`) and which cells timed the same inference (`latency_workload`).
Summary files are read and written by segbench.records.summaries (version 1 files are upgraded there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from segbench.errors import ConfigError
from segbench.grid.cells import evaluation_hash, record_evaluation
from segbench.records.paths import cells_dir
from segbench.records.rows import deployment_values, record_row
from segbench.records.schema import (
    SUMMARY_KIND,
    SUMMARY_VERSION,
    LatencyConditions,
    Machine,
    Record,
    Summary,
    SummaryEnvironment,
    SummaryRow,
    SupersededRef,
    as_record,
)
from segbench.records.store import load_records, now_iso
from segbench.records.summaries import ROW_FIELDS, read_summary


@dataclass(frozen=True)
class Selection:
    """The records to report, one per slug (the newest), and the older ones they supersede."""

    records: list[Record]
    superseded: list[Record]


def select_latest(records: Iterable[Record]) -> Selection:
    """Keep the newest record of each slug (by `finished_at`, else `written_at`); older records with another config
    hash are superseded, never averaged or compared with it."""
    by_slug: dict[str, list[Record]] = {}
    for record in map(as_record, records):
        by_slug.setdefault(record.slug, []).append(record)
    chosen: list[Record] = []
    superseded: list[Record] = []
    for slug in sorted(by_slug):
        ordered = sorted(by_slug[slug], key=lambda r: r.finished_at or r.written_at or "", reverse=True)
        chosen.append(ordered[0])
        superseded.extend(ordered[1:])
    return Selection(chosen, superseded)


def summary_row(record: Record) -> SummaryRow:
    """The summary row of one record: identity, the catalogue's summary fields and where its latency was timed
    (None where not measured)."""
    row = record_row(record)
    evaluation = evaluation_hash(record_evaluation(record.config.to_json()))
    return SummaryRow.model_validate({**{key: row.get(key) for key in ROW_FIELDS}, "evaluation": evaluation,
                                      **deployment_values(record)})


def latency_conditions(record: Record) -> LatencyConditions | None:
    """What a record's latency was timed under; None where it was not timed."""
    latency = record.cost.latency if record.cost else None
    return latency.conditions if latency else None


def _environment(records: list[Record]) -> SummaryEnvironment:
    """Where the summarised records were measured, from the first one that says."""
    measured = next((record for record in records if record.environment), None)
    if measured is None:
        return SummaryEnvironment(platform=None, device=None, threads=None, torch=None, git_commit=None)
    environment, conditions = measured.environment, latency_conditions(measured) or LatencyConditions()
    return SummaryEnvironment(
        platform=environment.platform,
        device=conditions.device or (environment.device.name if environment.device else None),
        threads=conditions.threads,
        torch=environment.packages.get("torch"),
        git_commit=environment.git_commit,
    )


def summarize(records: Iterable[Record], source: str = "") -> Summary:
    """The summary of a list of records: `cells` maps each slug to its row."""
    selection = select_latest(records)
    return Summary(
        kind=SUMMARY_KIND,
        version=SUMMARY_VERSION,
        created_at=now_iso(),
        source=source,
        environment=_environment(selection.records),
        machines=machines(selection.records),
        cells={record.slug: summary_row(record) for record in selection.records},
        superseded=[SupersededRef(slug=r.slug, config_hash=r.config_hash, cell_id=r.cell_id)
                    for r in selection.superseded],
    )


def machines(records: Iterable[Record]) -> dict[str, Machine]:
    """The fingerprints the records' latencies were timed on, by id."""
    found: dict[str, Machine] = {}
    for record in records:
        conditions = latency_conditions(record)
        machine = conditions.machine if conditions else None
        if machine is not None and machine.id:
            found.setdefault(machine.id, machine)
    return found


def summarize_folder(results: Path) -> Summary:
    """The summary of every readable record of a results folder."""
    results = Path(results)
    if not cells_dir(results).is_dir():
        raise ConfigError(f"{results} is not a results folder (it has no cells/ folder); pass the --results folder "
                          "of a `segbench run`.")
    return summarize(load_records(results).records, source=str(results))


def load_summary(path: Path) -> Summary:
    """A summary computed from a results folder, or read from a summary file (segbench.records.summaries)."""
    return summarize_folder(path) if Path(path).is_dir() else read_summary(path)
