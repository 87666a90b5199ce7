"""A compact summary of a results folder: one flat row of raw numbers per cell slug, for gates and baselines.

Derived from records alone. When one folder holds several records with the same slug (runs under different
settings), the newest is summarised and the others are listed as superseded: they are not comparable with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError
from segbench.records.store import STATUS_OK, load_records, now_iso
from segbench.storage import atomic_write_json

SUMMARY_KIND = "segbench-summary"
SUMMARY_VERSION = 1
SEED_SUFFIX = re.compile(r"__s-?\d+$")

# Numeric fields of a summary row, with the direction in which a change is an improvement (+1 higher is better,
# -1 lower is better). `compare` accepts checks on exactly these.
NUMERIC_FIELDS: dict[str, int] = {
    "miou": +1,
    "pixel_accuracy": +1,
    "mdice": +1,
    "micro_iou": +1,
    "fwiou": +1,
    "params": -1,
    "macs": -1,
    "gmacs": -1,
    "latency_ratio": -1,
    "latency_ms_p50": -1,
    "throughput_images_per_s": +1,
    "train_time_s": -1,
    "train_step_s_median": -1,
    "train_memory_bytes": -1,
    "inference_memory_bytes": -1,
}


@dataclass(frozen=True)
class Selection:
    """The records to report, one per slug (the newest), and the older ones they supersede."""

    records: list[dict[str, Any]]
    superseded: list[dict[str, Any]]


def select_latest(records: Iterable[dict[str, Any]]) -> Selection:
    """Keep the newest record of each slug (by `written_at`); older records with another config hash are
    superseded, never averaged or compared with it."""
    by_slug: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_slug.setdefault(record["slug"], []).append(record)
    chosen: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    for slug in sorted(by_slug):
        ordered = sorted(by_slug[slug], key=lambda r: r.get("finished_at") or r.get("written_at") or "", reverse=True)
        chosen.append(ordered[0])
        superseded.extend(ordered[1:])
    return Selection(chosen, superseded)


def group_key(record: dict[str, Any]) -> str:
    """Cells that differ only by seed share this key: the slug without `__s<seed>` plus a digest of the config
    without the seed."""
    import hashlib

    config = {key: value for key, value in (record.get("config") or {}).items() if key != "seed"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{SEED_SUFFIX.sub('', record['slug'])}#{digest}"


def _number(value: Any) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _memory_bytes(phase: dict[str, Any] | None) -> int | None:
    """Peak memory of one measured phase: CUDA peak allocated, or the CPU resident-set increase."""
    if not phase:
        return None
    return phase.get("peak_allocated_bytes", phase.get("increase_bytes"))


def cell_row(record: dict[str, Any]) -> dict[str, Any]:
    """The flat summary row of one record (None where a value was not measured)."""
    config = record.get("config") or {}
    metrics = record.get("metrics") or {}
    cost = record.get("cost") or {}
    macs = cost.get("macs") or {}
    latency = cost.get("latency") or {}
    memory = cost.get("memory") or {}
    timing = record.get("timing") or {}
    dataset = config.get("dataset") or {}
    loss = config.get("loss") or {}
    row = {
        "cell_id": record["cell_id"],
        "config_hash": record["config_hash"],
        "status": record["status"],
        "error": (record.get("error") or {}).get("kind"),
        "dataset": dataset.get("id") or dataset.get("name"),
        "model": config.get("model"),
        "encoder": config.get("encoder"),
        "loss": loss.get("id") or loss.get("name"),
        "seed": config.get("seed"),
        "miou": metrics.get("miou"),
        "pixel_accuracy": metrics.get("pixel_accuracy"),
        "mdice": metrics.get("mdice"),
        "micro_iou": metrics.get("micro_iou"),
        "fwiou": metrics.get("fwiou"),
        "params": (cost.get("params") or {}).get("total"),
        "macs": macs.get("macs"),
        "gmacs": macs.get("gmacs"),
        "latency_ratio": latency.get("latency_ratio"),
        "latency_ms_p50": (latency.get("batch_1") or {}).get("latency_ms_p50"),
        "throughput_images_per_s": (latency.get("batch_n") or {}).get("throughput_images_per_s"),
        "train_time_s": timing.get("train_time_s"),
        "train_step_s_median": timing.get("train_step_s_median"),
        "train_memory_bytes": _memory_bytes(memory.get("train_step")),
        "inference_memory_bytes": _memory_bytes(memory.get("inference")),
    }
    return {key: _number(value) for key, value in row.items()}


def summarize(records: list[dict[str, Any]], source: str = "") -> dict[str, Any]:
    """The summary document of a list of records: `cells` maps each slug to its row."""
    selection = select_latest(records)
    measured = next((r for r in selection.records if r.get("environment")), None) or {}
    environment = measured.get("environment") or {}
    conditions = ((measured.get("cost") or {}).get("latency") or {}).get("conditions") or {}
    return {
        "kind": SUMMARY_KIND,
        "version": SUMMARY_VERSION,
        "created_at": now_iso(),
        "source": source,
        "environment": {
            "platform": environment.get("platform"),
            "device": conditions.get("device") or (environment.get("device") or {}).get("name"),
            "threads": conditions.get("threads"),
            "torch": (environment.get("packages") or {}).get("torch"),
            "git_commit": environment.get("git_commit"),
        },
        "cells": {record["slug"]: cell_row(record) for record in selection.records},
        "superseded": [{"slug": r["slug"], "config_hash": r["config_hash"], "cell_id": r["cell_id"]}
                       for r in selection.superseded],
    }


def summarize_folder(results: Path) -> dict[str, Any]:
    results = Path(results)
    if not (results / "cells").is_dir():
        raise ConfigError(f"{results} is not a results folder (it has no cells/ folder); pass the --results folder "
                          "of a `segbench run`.")
    loaded = load_records(results)
    return summarize(loaded.records, source=str(results))


def load_summary(path: Path) -> dict[str, Any]:
    """A summary from a summary JSON file, or computed from a results folder."""
    path = Path(path)
    if path.is_dir():
        return summarize_folder(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; pass a results folder or a summary file from `segbench summary`.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON summary ({exc}); write one with `segbench summary`.") from None
    if not isinstance(document, dict) or document.get("kind") != SUMMARY_KIND:
        raise ConfigError(f"{path} is not a segbench summary (no \"kind\": \"{SUMMARY_KIND}\"); write one with "
                          "`segbench summary RESULTS_DIR --out FILE`.")
    if document.get("version") != SUMMARY_VERSION:
        raise ConfigError(f"{path} has summary version {document.get('version')}, this segbench reads version "
                          f"{SUMMARY_VERSION}; regenerate it with `segbench summary` (or `make baseline`).")
    return document


def write_summary(summary: dict[str, Any], out: Path) -> Path:
    atomic_write_json(Path(out), summary)
    return Path(out)


def ok_count(summary: dict[str, Any]) -> int:
    return sum(row["status"] == STATUS_OK for row in summary["cells"].values())
