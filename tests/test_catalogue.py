"""The metric catalogue: complete (every computed metric is declared), consistent with rows, summaries and gates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segbench.analysis.gate import SHOWN_FIELDS, parse_check
from segbench.analysis.summary import summarize
from segbench.errors import ConfigError
from segbench.metrics.catalogue import CATALOGUE, MATRIX_METRICS, METRICS, SUMMARY_FIELDS
from segbench.metrics.compute import compute_metrics
from segbench.records.rows import ROW_COLUMNS
from segbench.records.schema import SUMMARY_VERSION, SummaryRow

from support.records import SLUG, record

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline" / "summary.json"


def test_every_scalar_of_compute_metrics_is_declared_once():
    computed = compute_metrics(np.array([[5, 1], [2, 4]]))
    scalars = {key for key, value in computed.items() if isinstance(value, float)}
    assert scalars == set(MATRIX_METRICS)
    keys = [metric.key for metric in CATALOGUE]
    assert len(keys) == len(set(keys)) == len(METRICS)


def test_every_catalogue_key_is_a_column_of_a_row():
    assert set(METRICS) <= set(ROW_COLUMNS)


def test_summary_rows_keep_the_committed_baselines_fields_in_order():
    """`make summary` compares a fresh summary with the committed one: its rows must not change shape."""
    baseline = json.loads(BASELINE.read_text())
    assert baseline["version"] == SUMMARY_VERSION
    identity = ["cell_id", "config_hash", "status", "error", "dataset", "model", "encoder", "loss", "seed"]
    fields = [*identity, *SUMMARY_FIELDS, "machine", "latency_spread", "latency_workload", "evaluation"]
    assert list(SummaryRow.model_fields) == fields
    for row in baseline["cells"].values():
        assert list(row) == fields
        assert row["machine"] in baseline["machines"]  # every baseline latency says where it was timed
    written = summarize([record()]).to_json()["cells"][SLUG]
    assert list(written) == fields and isinstance(written["params"], int)  # counts stay integers


@pytest.mark.parametrize("metric", CATALOGUE, ids=lambda metric: metric.key)
def test_directions(metric):
    error = metric.key == "ece"  # a fraction where lower is better: the calibration error
    higher_is_better = (metric.unit == "fraction" and not error) or metric.key == "throughput_images_per_s"
    assert metric.better == (+1 if higher_is_better else -1)
    assert metric.is_quality == (metric.unit == "fraction")
    assert metric.from_matrix == (metric.is_quality and metric.key not in ("ece", "boundary_miou"))
    assert metric.label and metric.short and metric.fmt(1) != ""


def test_gates_accept_exactly_the_summary_fields():
    for key, better in SUMMARY_FIELDS.items():
        assert parse_check(f"{key}:+1%").field == key
        assert METRICS[key].better == better
    assert set(SHOWN_FIELDS) <= set(SUMMARY_FIELDS)
    with pytest.raises(ConfigError, match="unknown field 'micro_dice'"):
        parse_check("micro_dice:-0.01")  # recorded, but it restates pixel accuracy: not gated


def test_formats_show_the_unit_of_the_label():
    assert METRICS["miou"].label == "mIoU %" and METRICS["miou"].fmt(0.51234) == "51.23"
    assert METRICS["params"].label == "params (M)" and METRICS["params"].fmt(13_049_555) == "13.05"
    assert METRICS["train_memory_bytes"].fmt(3 * 2**20) == "3"
    assert METRICS["latency_ratio"].fmt(1.23456) == "1.235"
