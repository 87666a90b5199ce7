"""Summary files (segbench.records.summaries): a version 1 summary reads upgraded, a written summary reads back equal
and in the shape of the committed baseline, and a file that is no readable summary is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segbench.analysis.summary import summarize
from segbench.errors import ConfigError
from segbench.records.schema import PROVENANCE_FIELDS, SUMMARY_KIND, SUMMARY_VERSION, Summary
from segbench.records.summaries import ROW_FIELDS, read_summary, write_summary

from support.records import SLUG, record

DATA = Path(__file__).resolve().parent / "data"
FPN = "fpn__resnet18__ce__synthetic__s0"


def test_a_version_1_summary_reads_upgraded_without_fingerprints():
    path = DATA / "summary-v1.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    summary = read_summary(path)
    assert isinstance(summary, Summary)
    assert summary.upgraded_from == 1 and summary.version == 1 and summary.machines == {}
    assert summary.environment.device == document["environment"]["device"]
    assert set(summary.cells) == set(document["cells"]) and summary.cells
    for slug, row in summary.cells.items():
        assert row.machine is None and row.latency_spread is None and row.latency_workload is None
        assert row.config_hash == document["cells"][slug]["config_hash"]
        assert row.miou == document["cells"][slug]["miou"] and row.value("params") == document["cells"][slug]["params"]


def test_a_written_summary_reads_back_equal_in_the_files_shape(tmp_path: Path):
    old = record(config_hash="old111", written_at="2000-01-01T00:00:00+00:00")
    summary = summarize([record(), old, record(slug=FPN, machine="machine-b", spread=None)], source="results")
    path = write_summary(summary, tmp_path / "summary.json")
    assert read_summary(path) == summary
    document = json.loads(path.read_text(encoding="utf-8"))
    assert list(document) == ["kind", "version", "created_at", "source", "environment", "machines", "cells",
                              "superseded"]
    assert (document["kind"], document["version"]) == (SUMMARY_KIND, SUMMARY_VERSION)
    assert sorted(document["machines"]) == ["machine-a", "machine-b"]
    assert document["superseded"] == [{"slug": SLUG, "config_hash": "old111", "cell_id": f"{SLUG}-old111"}]
    for row in document["cells"].values():
        assert list(row) == list(ROW_FIELDS)
    assert isinstance(document["cells"][SLUG]["params"], int)  # counts stay integers
    assert document["cells"][FPN]["latency_spread"] is None and document["cells"][FPN]["machine"] == "machine-b"


def test_an_upgraded_summary_is_written_in_the_current_row_shape(tmp_path: Path):
    upgraded = read_summary(DATA / "summary-v1.json")
    again = read_summary(write_summary(upgraded, tmp_path / "again.json"))
    assert again == upgraded
    row = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))["cells"][SLUG]
    assert list(row) == list(ROW_FIELDS) and all(row[key] is None for key in PROVENANCE_FIELDS)


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist; pass a results folder or a summary file"),
    ("{not json", "is not a JSON summary"),
    ('{"cells": {}}', 'is not a segbench summary (no "kind": "segbench-summary")'),
    ('[1, 2]', "is not a segbench summary"),
    (json.dumps({"kind": SUMMARY_KIND, "version": 9, "cells": {}}), "has summary version 9, this segbench reads "
                                                                      "versions 1, 2; regenerate it"),
    (json.dumps({"kind": SUMMARY_KIND, "version": 2, "cells": {SLUG: {"cell_id": 3}}}),
     f"cells.{SLUG}.cell_id = 3 is invalid: Input should be a valid string; regenerate it"),
])
def test_a_bad_summary_file_is_one_sentence(tmp_path: Path, content: str | None, message: str):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        read_summary(path)
    text = str(raised.value)
    assert message in text and text.startswith(str(path)) and "\n" not in text
