"""`segbench merge` (segbench.records.merge): one results folder from several, on records written without training.
An ok record beats a failed one, differing ok records are conflicts (exit 1, nothing written) unless --prefer
decides, files are hard-linked and the inputs never change, bad inputs are one sentence (exit 2, nothing written),
an interrupted merge leaves nothing, and report, summary and compare read the merged folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from segbench.cli import app
from segbench.errors import SegbenchError
from segbench.records import merge
from segbench.records.paths import LOCK_FILE, RECORD_FILE, cell_dir, grids_dir, studies_file, tuning_dir
from segbench.records.store import STATUS_FAILED, STATUS_INTERRUPTED, read_record

from support.records import SLUG, record, write_results

DATA = Path(__file__).resolve().parent / "data"
FPN = "fpn__resnet18__ce__synthetic__s0"
PSP = "pspnet__resnet18__ce__synthetic__s0"
LATER = "2026-02-01T00:00:00+00:00"
GRID = "tiny-0123456789.yaml"


def cell_id(item: dict[str, Any]) -> str:
    return item["cell_id"]


def digests(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders`, by path: what must not change."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


def invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["merge", *map(str, args)])


def leftovers(parent: Path) -> list[str]:
    """Hidden folders a merge left in `parent` (its staging folder)."""
    return sorted(path.name for path in parent.iterdir() if path.name.endswith(".merging"))


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, Any]:
    import torch

    return {"weight": torch.arange(4.0)}


def test_ok_beats_failed_and_every_file_comes_along_hard_linked(tmp_path: Path, checkpoint: dict[str, Any]):
    unet, fpn = record(), record(slug=FPN, miou=0.6)
    psp_failed = record(slug=PSP, status=STATUS_FAILED)
    psp_interrupted = record(slug=PSP, status=STATUS_INTERRUPTED, written_at=LATER)
    trial = record(slug=FPN, config_hash="trial00001", miou=0.4)
    a = write_results(tmp_path / "a", [unet, record(slug=FPN, status=STATUS_FAILED), psp_failed], files=True,
                      checkpoint=checkpoint)
    b = write_results(tmp_path / "b", [record(status=STATUS_FAILED, written_at=LATER), fpn, psp_interrupted],
                      files=True, checkpoint=checkpoint)
    write_results(tuning_dir(a), [trial])
    for results, text in ((a, b"study a"), (b, b"study b")):
        tuning_dir(results).mkdir(exist_ok=True)
        studies_file(results).write_bytes(text)
        (results / LOCK_FILE).write_text("{}")
        grids_dir(results).mkdir()
        (grids_dir(results) / GRID).write_text("name: tiny\n")
        (results / "report").mkdir()
        (results / "report" / "report.md").write_text(f"# {results.name}\n")
    (grids_dir(b) / "other-abcdef0123.yaml").write_text("name: other\n")
    (cell_dir(b, cell_id(fpn)) / "model.onnx").write_bytes(b"onnx")
    before = digests(a, b)

    result = invoke(a, b, "--out", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    merged = tmp_path / "merged"
    kept = {path.name: read_record(path / RECORD_FILE) for path in (merged / "cells").iterdir()}
    assert sorted(kept) == sorted(map(cell_id, (unet, fpn, psp_failed)))
    assert kept[cell_id(unet)].ok and kept[cell_id(fpn)].ok  # from a and from b
    assert kept[cell_id(psp_failed)].status == STATUS_INTERRUPTED  # none ok: the newest attempt
    assert read_record(cell_dir(tuning_dir(merged), cell_id(trial)) / RECORD_FILE).ok
    for source, cell in ((a, unet), (b, fpn), (b, psp_interrupted)):
        files = sorted(path.relative_to(cell_dir(source, cell_id(cell)))
                       for path in cell_dir(source, cell_id(cell)).rglob("*"))
        assert files == sorted(path.relative_to(cell_dir(merged, cell_id(cell)))
                               for path in cell_dir(merged, cell_id(cell)).rglob("*"))
        for name in files:
            if (cell_dir(source, cell_id(cell)) / name).is_file():
                assert ((cell_dir(merged, cell_id(cell)) / name).stat().st_ino
                        == (cell_dir(source, cell_id(cell)) / name).stat().st_ino)
    assert (cell_dir(merged, cell_id(fpn)) / "model.onnx").is_file()
    assert any((cell_dir(merged, cell_id(unet)) / "examples").iterdir())
    assert sorted(path.name for path in grids_dir(merged).iterdir()) == sorted([GRID, "other-abcdef0123.yaml"])
    assert studies_file(merged).read_bytes() == b"study a"
    assert sorted(path.name for path in merged.iterdir()) == ["cells", "grids", "tuning"]  # no lock, no report
    assert digests(a, b) == before
    assert leftovers(tmp_path) == []

    lines = result.stdout.splitlines()
    assert f"{a}: 3 cells, 1 tuning trials" in lines and f"{b}: 3 cells" in lines
    files = len(digests(merged))
    assert f"merged into {merged}: 3 cells, 1 tuning trials ({files} files hard-linked, 0 copied)" in lines
    assert f"  2 {merge.OK_OVER_NOT_OK}" in lines and f"  1 {merge.NEWEST_ATTEMPT}" in lines
    assert f"note: {studies_file(a)} kept" in result.stdout and f"({studies_file(b)})" in result.stdout
    assert "not merged" in result.stdout and str(a / "report") in result.stdout

    from segbench.analysis.report import write_report
    from segbench.analysis.summary import summarize_folder

    summary = summarize_folder(merged)
    assert {slug: row.status for slug, row in summary.cells.items()} == {SLUG: "ok", FPN: "ok", PSP: "interrupted"}
    assert "fpn" in write_report(merged, tmp_path / "report").read_text(encoding="utf-8")
    assert CliRunner().invoke(app, ["compare", str(merged), str(merged)]).exit_code == 0


def test_differing_ok_records_are_conflicts_one_line_per_cell_and_nothing_is_written(tmp_path: Path):
    a = write_results(tmp_path / "a", [record(miou=0.5), record(slug=FPN, miou=0.3), record(slug=PSP)])
    b = write_results(tmp_path / "b", [record(miou=0.7, written_at=LATER), record(slug=FPN, miou=0.35),
                                       record(slug=PSP, written_at=LATER)])  # PSP: same metrics, later: no conflict
    before = digests(a, b)
    result = invoke(a, b, "--out", tmp_path / "merged")
    assert result.exit_code == 1, result.output
    conflicts = [line for line in result.stderr.splitlines() if line.startswith("conflict:")]
    assert len(conflicts) == 2
    unet_id = record()["cell_id"]
    assert (f"conflict: cells/{unet_id}: {a} mIoU 0.5000 (finished 2026-01-01T00:10:00+00:00) vs "
            f"{b} mIoU 0.7000 (finished {LATER})") in conflicts
    assert any(FPN in line and "0.3000" in line and "0.3500" in line for line in conflicts)
    assert result.stderr.splitlines()[-1].startswith("error: 2 cell(s) have ok records with different metrics")
    assert not (tmp_path / "merged").exists() and leftovers(tmp_path) == []
    assert digests(a, b) == before


@pytest.mark.parametrize(("prefer", "kept_miou"), [("newest", 0.7), ("first", 0.5)])
def test_prefer_decides_a_conflict(tmp_path: Path, prefer: str, kept_miou: float):
    a = write_results(tmp_path / "a", [record(miou=0.5)])
    b = write_results(tmp_path / "b", [record(miou=0.7, written_at=LATER)])
    (tmp_path / "merged").mkdir()  # an empty folder may be the output
    result = invoke(a, b, "--out", tmp_path / "merged", "--prefer", prefer)
    assert result.exit_code == 0, result.output
    assert read_record(cell_dir(tmp_path / "merged", record()["cell_id"]) / RECORD_FILE).metrics.miou == kept_miou
    assert f"  1 {merge.SETTLED.format(prefer=prefer)}" in result.stdout.splitlines()
    assert f"mIoU 0.7000 (finished {LATER}): kept {b if prefer == 'newest' else a}" in result.stdout


def test_records_of_other_config_hashes_are_all_kept_and_the_summary_shows_the_newest(tmp_path: Path):
    """The fixture folders written by segbench of benchmark-semantics versions 1 and 2: one slug, two hashes."""
    old, new = DATA / "results-semantics-v1", DATA / "results-current"
    before = digests(old, new)
    result = invoke(old, new, "--out", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    cells = sorted(path.name for path in (tmp_path / "merged" / "cells").iterdir())
    assert cells == sorted(path.name for folder in (old, new) for path in (folder / "cells").iterdir())
    assert len(cells) == 2 and "README.md" in result.stdout  # the fixtures' READMEs are not merged
    from segbench.analysis.summary import summarize_folder

    summary = summarize_folder(tmp_path / "merged")
    newest = read_record(next((new / "cells").iterdir()) / RECORD_FILE)
    assert summary.cells[SLUG].config_hash == newest.config_hash
    assert [ref.cell_id for ref in summary.superseded] == [next((old / "cells").iterdir()).name]
    assert digests(old, new) == before


def test_files_are_copied_where_the_filesystem_cannot_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    a = write_results(tmp_path / "a", [record()], files=True)
    b = write_results(tmp_path / "b", [record(slug=FPN)])

    def no_links(source: Path, target: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(merge.os, "link", no_links)
    result = invoke(a, b, "--out", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    assert f"(0 files hard-linked, {len(digests(tmp_path / 'merged'))} copied)" in result.stdout
    copied = cell_dir(tmp_path / "merged", record()["cell_id"]) / RECORD_FILE
    original = cell_dir(a, record()["cell_id"]) / RECORD_FILE
    assert copied.read_bytes() == original.read_bytes() and copied.stat().st_ino != original.stat().st_ino


def _corrupt(results: Path) -> str:
    path = cell_dir(results, record(slug=FPN)["cell_id"]) / RECORD_FILE
    path.write_text("{not json")
    return str(path)


def _edited_grid(results: Path) -> str:
    (grids_dir(results) / GRID).write_text("name: edited\n")
    return "have the same name but different text"


BAD_INPUTS = {
    "one input": (lambda a, b, out: [a, "--out", out], lambda a, b, out: "two or more results folders, got 1"),
    "not a results folder": (lambda a, b, out: [a, b.parent / "empty", "--out", out],
                             lambda a, b, out: "empty is not a results folder"),
    "a missing input": (lambda a, b, out: [a, b.parent / "nowhere", "--out", out],
                        lambda a, b, out: "nowhere is not a results folder"),
    "out is an input": (lambda a, b, out: [a, b, "--out", b], lambda a, b, out: f"is the input {b} or inside it"),
    "out inside an input": (lambda a, b, out: [a, b, "--out", a / "merged"],
                            lambda a, b, out: f"is the input {a} or inside it"),
    "out not empty": (lambda a, b, out: [a, b, "--out", a.parent / "full"],
                      lambda a, b, out: "already exists and is not an empty folder"),
    "an unreadable record": (lambda a, b, out: [a, b, "--out", out], lambda a, b, out: _corrupt(b)),
    "an edited grid": (lambda a, b, out: [a, b, "--out", out], lambda a, b, out: _edited_grid(b)),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_input_is_one_sentence_exit_2_and_nothing_written(tmp_path: Path, case: str):
    a = write_results(tmp_path / "a", [record()])
    b = write_results(tmp_path / "b", [record(slug=FPN)])
    for results in (a, b):
        grids_dir(results).mkdir()
        (grids_dir(results) / GRID).write_text("name: tiny\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine\n")
    arguments, expected = BAD_INPUTS[case]
    out = tmp_path / "merged"
    message = expected(a, b, out)
    before = digests(tmp_path)
    result = invoke(*arguments(a, b, out))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert not out.exists() and not (a / "merged").exists() and leftovers(tmp_path) == []
    assert digests(tmp_path) == before


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_merge_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            error: BaseException):
    a = write_results(tmp_path / "a", [record(), record(slug=PSP)], files=True)
    b = write_results(tmp_path / "b", [record(slug=FPN)], files=True)
    before = digests(a, b)
    place_file, placed = merge.place_file, []

    def fail_after_five(source: Path, target: Path) -> bool:
        if len(placed) == 5:
            raise error
        placed.append(target)
        return place_file(source, target)

    monkeypatch.setattr(merge, "place_file", fail_after_five)
    plan = merge.plan_merge([a, b], tmp_path / "out" / "merged")
    with pytest.raises(SegbenchError if isinstance(error, OSError) else KeyboardInterrupt) as raised:
        merge.write_merge(plan, tmp_path / "out" / "merged")
    assert len(placed) == 5 and not any(path.exists() for path in placed)
    if isinstance(error, OSError):
        assert "No space left on device" in str(raised.value) and "nothing was written" in str(raised.value)
    assert list((tmp_path / "out").iterdir()) == []  # no merged folder, no staging folder
    assert digests(a, b) == before
