"""The typed record: older results folders read through the one migrating reader, newer ones read with a note, the
file keeps its shape, `segbench schema` describes it, and no module outside records/ reads record or summary files."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segbench.analysis.report import write_report
from segbench.cli import app
from segbench.records.paths import RECORD_FILE, cells_dir
from segbench.records.schema import RECORD_SCHEMA_VERSION, Record, json_schema, unknown_fields
from segbench.records.store import load_records, read_record, write_record

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def only_record(results: Path) -> Path:
    (path,) = cells_dir(results).glob(f"*/{RECORD_FILE}")
    return path


def test_a_record_of_benchmark_semantics_1_is_migrated_on_reading():
    path = only_record(DATA / "results-semantics-v1")
    stored = json.loads(path.read_text())
    record = read_record(path)
    assert isinstance(record, Record) and record.semantics_version == 1 and record.ok
    # its weights are the best val checkpoint, in best.pt, and the sentence and best_epoch became the selection
    assert record.checkpoint == "best.pt"
    assert record.selection.rule == "best" and record.selection.split == "val"
    assert record.selection.epoch == stored["best_epoch"] and record.selection.description == stored["selection"]
    assert record.metrics.miou == stored["metrics"]["miou"] and record.cost.params.total > 0
    assert record.intervals is None and record.per_image_counts is None  # not measured by that version


def test_a_record_of_this_version_has_every_field_described_and_keeps_its_shape(tmp_path: Path):
    path = only_record(DATA / "results-current")
    stored = json.loads(path.read_text())
    record = read_record(path)
    assert unknown_fields(record) == []
    assert record.to_json() == stored  # nothing added, nothing lost
    copy = tmp_path / "results"
    write_record(copy, record)
    assert json.loads(only_record(copy).read_text()) == stored


def test_a_record_from_a_newer_segbench_reads_keeps_what_it_does_not_know_and_says_so(tmp_path: Path):
    stored = json.loads(only_record(DATA / "results-current").read_text())
    newer = {**stored, "schema_version": RECORD_SCHEMA_VERSION + 1, "robustness": {"fog": 0.3},
             "metrics": {**stored["metrics"], "boundary_iou": 0.4}}
    folder = cells_dir(tmp_path) / stored["cell_id"]
    folder.mkdir(parents=True)
    (folder / RECORD_FILE).write_text(json.dumps(newer))
    loaded = load_records(tmp_path)
    (record,) = loaded.records
    assert record.metrics.miou == stored["metrics"]["miou"] and loaded.unreadable == []
    assert unknown_fields(record) == ["metrics.boundary_iou", "robustness"]
    (note,) = loaded.notes
    assert "written by a newer segbench" in note and "metrics.boundary_iou, robustness" in note
    assert record.to_json() == newer
    report = write_report(tmp_path, tmp_path / "report")
    assert note in report.read_text()  # the report says it too
    # a folder of this version's records has no note
    assert load_records(DATA / "results-current").notes == []


def test_the_json_schema_accepts_records_of_this_format_and_migrated_older_ones():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema("record")
    jsonschema.validate(json.loads(only_record(DATA / "results-current").read_text()), schema)
    jsonschema.validate(read_record(only_record(DATA / "results-semantics-v1")).to_json(), schema)
    with pytest.raises(jsonschema.ValidationError):  # the older format itself is not this one
        jsonschema.validate(json.loads(only_record(DATA / "results-semantics-v1").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1, "cell_id": "x"}, schema)
    jsonschema.validate(json.loads((DATA / "summary-v1.json").read_text()), json_schema("summary"))


def test_segbench_schema_prints_or_writes_the_schema_and_refuses_other_names(tmp_path: Path):
    runner = CliRunner()
    printed = runner.invoke(app, ["schema", "record"])
    assert printed.exit_code == 0 and json.loads(printed.output)["title"] == "Record"
    out = tmp_path / "summary.schema.json"
    written = runner.invoke(app, ["schema", "summary", "--out", str(out)])
    assert written.exit_code == 0 and json.loads(out.read_text())["title"] == "Summary"
    bad = runner.invoke(app, ["schema", "cells", "--out", str(tmp_path / "nothing.json")])
    assert bad.exit_code == 2 and "takes record or summary, not 'cells'" in bad.output
    assert not (tmp_path / "nothing.json").exists()


def test_the_readers_return_typed_models(tmp_path: Path):
    from segbench.analysis.summary import summarize_folder
    from segbench.records.schema import Summary

    results = tmp_path / "results"
    shutil.copytree(DATA / "results-current", results)
    assert all(isinstance(record, Record) for record in load_records(results).records)
    assert isinstance(summarize_folder(results), Summary)


def _reads_files(path: Path) -> list[str]:
    """Where a module names a record or summary file and also reads JSON: each such call, as "file:line"."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names_a_file = any(
        (isinstance(node, ast.Name) and node.id in ("RECORD_FILE", "SUMMARY_KIND"))
        or (isinstance(node, ast.Constant) and node.value in ("record.json", "summary.json"))
        for node in ast.walk(tree))
    if not names_a_file:
        return []
    return [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("load", "loads") and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "json"]


def test_no_module_outside_records_reads_a_record_or_summary_file():
    offenders = [hit for path in sorted((ROOT / "bench").rglob("*.py"))
                 if "records" not in path.relative_to(ROOT / "bench").parts for hit in _reads_files(path)]
    assert offenders == [], "read records and summaries through segbench.records, not json: " + ", ".join(offenders)


def test_values_keep_their_json_types_through_the_model(tmp_path: Path):
    """Validation must not coerce what a writer stored: Ray names GPUs as strings, the local executor as integers."""
    stored = json.loads(only_record(DATA / "results-current").read_text())
    for gpu_ids in (["0", "1"], [0, 1]):
        data = {**stored, "execution": {**stored["execution"], "executor": "ray", "gpu_ids": gpu_ids}}
        assert Record.model_validate(data).to_json()["execution"]["gpu_ids"] == gpu_ids
