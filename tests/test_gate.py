"""Regression gates: check parsing, detection with messages that name the cell, field, values and threshold,
"not comparable" cells, missing cells, and the exit codes of `segbench compare` and `segbench summary`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from scipy import stats
from typer.testing import CliRunner

from segbench.analysis.gate import Check, compare_summaries, parse_check
from segbench.analysis.summary import load_summary, summarize
from segbench.cli import app
from segbench.errors import ConfigError
from segbench.measure import count_macs, count_params
from segbench.records.store import write_record

from support.records import SLUG, record


@pytest.fixture(scope="module")
def widths() -> tuple[dict, dict]:
    """Real params and MACs of a U-Net and of the same U-Net with a wider decoder (a deliberate change)."""
    import segmentation_models_pytorch as smp

    costs = []
    for channels in ((64, 32, 16, 8, 4), (96, 48, 24, 12, 6)):
        model = smp.Unet("resnet18", encoder_weights=None, classes=19, decoder_channels=channels)
        costs.append({"params": count_params(model), "macs": count_macs(model.eval(), (1, 3, 64, 128))})
    return costs[0], costs[1]


@pytest.mark.parametrize(("spec", "expected"), [
    ("miou:-0.02", Check("miou", -1, 0.02, False)),
    ("gmacs:+0%", Check("gmacs", +1, 0.0, True)),
    ("latency_ratio:+25%", Check("latency_ratio", +1, 25.0, True)),
    (" params:+.5% ", Check("params", +1, 0.5, True)),
])
def test_checks_parse(spec: str, expected: Check):
    assert parse_check(spec) == expected
    assert parse_check(expected.spec) == expected


@pytest.mark.parametrize("spec", ["miou", "miou:0.02", "miou:-x", "miou:-0.02%%", "mIoU:-0.02", "accuracy:-1%",
                                  "miou=-0.02", ""])
def test_bad_checks_are_config_errors(spec: str):
    with pytest.raises(ConfigError, match="--fail-on"):
        parse_check(spec)


def test_check_directions_and_thresholds():
    drop = parse_check("miou:-0.02")
    assert drop.regressed(0.50, 0.47) and not drop.regressed(0.50, 0.49) and not drop.regressed(0.5, 0.9)
    rise = parse_check("gmacs:+0%")
    assert rise.regressed(1.0, 1.0001) and not rise.regressed(1.0, 1.0) and not rise.regressed(1.0, 0.5)
    ratio = parse_check("latency_ratio:+25%")
    assert ratio.regressed(1.0, 1.3) and not ratio.regressed(1.0, 1.2)
    assert parse_check("params:+0%").regressed(0, 5)  # any rise from zero is infinitely many percent


def test_a_wider_model_and_a_worse_metric_fail_the_gate_with_messages(widths):
    narrow, wide = widths
    assert wide["params"]["total"] > narrow["params"]["total"] and wide["macs"]["macs"] > narrow["macs"]["macs"]
    base = summarize([record(cost_parts=narrow, miou=0.50)])
    current = summarize([record(cost_parts=wide, miou=0.45)])
    checks = [parse_check(s) for s in ("miou:-0.02", "params:+0%", "gmacs:+0%", "latency_ratio:+50%")]
    outcome = compare_summaries(base, current, checks)
    assert outcome.exit_code == 1 and outcome.compared == 1
    failed = {failure.field: failure.message for failure in outcome.failures}
    assert set(failed) == {"miou", "params", "gmacs"}
    assert failed["miou"].startswith(SLUG) and "0.5000 to 0.4500" in failed["miou"] and "miou:-0.02" in failed["miou"]
    assert f"{narrow['params']['total']:,} to {wide['params']['total']:,}" in failed["params"]
    assert "params:+0%" in failed["params"] and "gmacs:+0%" in failed["gmacs"]
    assert compare_summaries(base, copy.deepcopy(base), checks).exit_code == 0


def test_latency_is_gated_through_the_ratio():
    base = summarize([record(latency_ratio=1.0)])
    slower = summarize([record(latency_ratio=1.6)])
    noisy = summarize([record(latency_ratio=1.2)])
    gate = [parse_check("latency_ratio:+50%")]
    assert [f.field for f in compare_summaries(base, slower, gate).failures] == ["latency_ratio"]
    assert compare_summaries(base, noisy, gate).exit_code == 0


def test_different_config_hashes_are_not_comparable_and_never_regressions():
    base = summarize([record(config_hash="aaaa", miou=0.9)])
    current = summarize([record(config_hash="bbbb", miou=0.1)])
    allowed = compare_summaries(base, current, [parse_check("miou:-0.01")], allow_not_comparable=True)
    assert allowed.exit_code == 0 and allowed.compared == 0 and not allowed.failures
    assert allowed.not_comparable == [{"cell": SLUG, "base_hash": "aaaa", "current_hash": "bbbb",
                                       "base_evaluation": None, "current_evaluation": None}]


def test_cells_evaluated_with_other_settings_are_not_comparable():
    """The evaluation settings (eval.mode, tta, datasets, corruptions) enter no config hash (a finished cell is
    evaluated again, not retrained), so the gate compares them itself: a cell scored another way is no regression."""
    evaluated = record(miou=0.1)
    evaluated["config"]["eval"]["corruptions"] = {"names": ["fog"], "severities": [1], "max_images": None}
    base, current = summarize([record(miou=0.9)]), summarize([evaluated])
    assert current.cells[SLUG].config_hash == base.cells[SLUG].config_hash
    assert base.cells[SLUG].evaluation is None and current.cells[SLUG].evaluation is not None
    outcome = compare_summaries(base, current, [parse_check("miou:-0.01")])
    assert outcome.exit_code == 1 and outcome.compared == 0 and not outcome.failures
    assert outcome.not_comparable == [{"cell": SLUG, "base_hash": base.cells[SLUG].config_hash,
                                       "current_hash": current.cells[SLUG].config_hash, "base_evaluation": None,
                                       "current_evaluation": current.cells[SLUG].evaluation}]
    assert compare_summaries(current, copy.deepcopy(current), []).exit_code == 0


def test_a_gate_that_compares_nothing_fails():
    """A baseline whose cells all have other config hashes checks nothing: that fails unless allowed."""
    other = "fpn__resnet18__ce__synthetic__s0"
    base = summarize([record(config_hash="aaaa"), record(slug=other, config_hash="cccc")])
    current = summarize([record(config_hash="bbbb"), record(slug=other, config_hash="dddd")])
    outcome = compare_summaries(base, current, [parse_check("miou:-0.01")])
    assert outcome.exit_code == 1 and outcome.compared == 0 and not outcome.failures  # no regression is claimed
    assert outcome.not_comparable_failure.startswith("2 baseline cells have no comparable counterpart")
    assert "--allow-not-comparable" in outcome.not_comparable_failure
    one = compare_summaries(summarize([record(config_hash="aaaa")]), current, [])
    assert one.exit_code == 1 and one.not_comparable_failure.startswith("1 baseline cell has no comparable")
    assert compare_summaries(base, current, [], allow_not_comparable=True).exit_code == 0
    assert compare_summaries(base, copy.deepcopy(base), []).not_comparable_failure is None


def test_missing_cells_are_listed_and_a_failed_cell_fails():
    other = "fpn__resnet18__ce__synthetic__s0"
    third = "fpn__resnet18__focal__synthetic__s0"
    base = summarize([record(), record(slug=other)])
    current = summarize([record(status="failed"), record(slug=third)])
    outcome = compare_summaries(base, current, [])
    assert outcome.missing_in_current == [other] and outcome.missing_in_base == [third]
    assert [f.message for f in outcome.failures] == [f"{SLUG}: status went from ok to failed (error: exception)"]
    strict = compare_summaries(base, current, [], fail_on_missing=True)
    assert any(f.cell == other and f.current == "missing" for f in strict.failures)


def test_summary_keeps_the_newest_record_of_a_slug():
    old = record(config_hash="old111", miou=0.3, written_at="2026-01-01T00:00:00+00:00")
    new = record(config_hash="new222", miou=0.4, written_at="2026-02-01T00:00:00+00:00")
    summary = summarize([new, old])
    assert summary.cells[SLUG].config_hash == "new222"
    assert [ref.to_json() for ref in summary.superseded] == [
        {"slug": SLUG, "config_hash": "old111", "cell_id": f"{SLUG}-old111"}]


def _results(folder: Path, records: list[dict[str, Any]]) -> Path:
    for item in records:
        write_record(folder, item)
    return folder


def test_cli_summary_and_compare_exit_codes(tmp_path: Path, widths):
    narrow, wide = widths
    base_dir = _results(tmp_path / "base", [record(cost_parts=narrow)])
    current_dir = _results(tmp_path / "current", [record(cost_parts=wide, miou=0.40)])
    runner = CliRunner()
    summary = tmp_path / "base.json"
    result = runner.invoke(app, ["summary", str(base_dir), "--out", str(summary)])
    assert result.exit_code == 0, result.output
    document = json.loads(summary.read_text())
    assert document["cells"][SLUG]["params"] == narrow["params"]["total"]
    assert document["cells"][SLUG]["gmacs"] == pytest.approx(narrow["macs"]["gmacs"])
    assert load_summary(summary).cells == load_summary(base_dir).cells

    gate = ["--fail-on", "miou:-0.02", "--fail-on", "gmacs:+0%", "--fail-on", "latency_ratio:+25%"]
    result = runner.invoke(app, ["compare", str(summary), str(current_dir), *gate])
    assert result.exit_code == 1
    assert f"REGRESSION {SLUG}: gmacs went from" in result.output and "beyond the threshold gmacs:+0%" in result.output
    assert f"REGRESSION {SLUG}: miou went from 0.5000 to 0.4000" in result.output
    assert runner.invoke(app, ["compare", str(summary), str(base_dir), *gate]).exit_code == 0

    bad = runner.invoke(app, ["compare", str(summary), str(current_dir), "--fail-on", "miou:0.02"])
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("error: --fail-on 'miou:0.02'") and len(bad.output.strip().splitlines()) == 1
    missing = runner.invoke(app, ["compare", str(tmp_path / "nowhere.json"), str(current_dir)])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "other.json").write_text('{"cells": {}}')
    assert runner.invoke(app, ["compare", str(tmp_path / "other.json"), str(current_dir)]).exit_code == 2


def test_cli_compare_shows_not_comparable_and_missing(tmp_path: Path):
    base_dir = _results(tmp_path / "base", [record(config_hash="aaaa"), record(slug="fpn__r__ce__d__s0")])
    current_dir = _results(tmp_path / "current", [record(config_hash="bbbb", miou=0.0)])
    command = ["compare", str(base_dir), str(current_dir), "--fail-on", "miou:-0.01"]
    result = CliRunner().invoke(app, [*command, "--allow-not-comparable"])
    assert result.exit_code == 0, result.output
    assert f"not comparable: {SLUG}" in result.output and "missing in current: fpn__r__ce__d__s0" in result.output
    gate = CliRunner().invoke(app, command)
    assert gate.exit_code == 1, gate.output
    assert ("NOT COMPARABLE 1 baseline cell has no comparable counterpart (other config hashes or evaluation "
            "settings)") in gate.output
    assert "REGRESSION" not in gate.output
    evaluated = record(config_hash="aaaa", miou=0.0)
    evaluated["config"]["eval"]["mode"] = "whole"
    evaluated_dir = _results(tmp_path / "evaluated", [evaluated])
    other = CliRunner().invoke(app, ["compare", str(base_dir), str(evaluated_dir), "--fail-on", "miou:-0.01"])
    assert other.exit_code == 1 and "REGRESSION" not in other.output
    assert f"not comparable: {SLUG} (evaluation settings default -> " in " ".join(other.output.split())


def seeds(mious: list[float], config: str = "unet__resnet18__ce__synthetic") -> list[dict]:
    """One record per seed of one configuration, seed i with mIoU mious[i]."""
    return [record(slug=f"{config}__s{seed}", miou=miou) for seed, miou in enumerate(mious)]


def test_a_drop_beyond_the_threshold_that_noise_explains_passes():
    base = summarize(seeds([0.50, 0.56, 0.44]))
    current = summarize(seeds([0.53, 0.47, 0.41]))  # mean -0.03, beyond miou:-0.02, but the seeds disagree
    outcome = compare_summaries(base, current, [parse_check("miou:-0.02")])
    assert outcome.exit_code == 0 and not outcome.failures
    assert outcome.seed_gated == ["unet__resnet18__ce__synthetic"]
    mean_row = next(row for row in outcome.rows if row["cell"] == "unet__resnet18__ce__synthetic (mean of 3 seeds)")
    assert mean_row["verdict"] == "noise" and mean_row["base"] == pytest.approx(0.50)
    assert mean_row["current"] == pytest.approx(0.47)
    differences = [0.03, -0.09, -0.03]
    p = stats.ttest_1samp(differences, 0.0, alternative="less").pvalue  # a drop is the regression for mIoU
    assert f"one-sided paired t-test over 3 seeds: p = {p:.4f} >= 0.05" in mean_row["check"]
    assert {row["verdict"] for row in outcome.rows if row["cell"].endswith("__s0") and row["field"] == "miou"} == {
        "seeds"}  # each seed alone would have been gated on its own


def test_a_clear_drop_of_every_seed_fails_naming_the_configuration():
    """The case the prediction-interval gate let pass: every seed 3 points below the baseline's worst."""
    base = summarize(seeds([0.50, 0.52, 0.51]))
    current = summarize(seeds([0.47, 0.47, 0.47]))
    outcome = compare_summaries(base, current, [parse_check("miou:-0.01")])
    assert outcome.exit_code == 1 and len(outcome.failures) == 1
    p = stats.ttest_rel([0.47, 0.47, 0.47], [0.50, 0.52, 0.51], alternative="less").pvalue
    assert p < 0.05
    assert outcome.failures[0].message == (
        "unet__resnet18__ce__synthetic (mean of 3 seeds): miou went from 0.5100 to 0.4700 (-0.04, -7.8%), beyond the "
        f"threshold miou:-0.01; seeds s0, s1, s2; one-sided paired t-test over 3 seeds: p = {p:.4f} < 0.05")
    # an unchanged rerun passes (no spread in the differences, no change), and so does a shift inside the threshold
    assert compare_summaries(base, summarize(seeds([0.50, 0.52, 0.51])), [parse_check("miou:-0.01")]).exit_code == 0
    inside = compare_summaries(base, summarize(seeds([0.495, 0.515, 0.505])), [parse_check("miou:-0.01")])
    assert inside.exit_code == 0 and inside.rows[-1]["verdict"] == "ok"


def test_a_uniform_drop_has_no_spread_and_the_threshold_decides():
    base = summarize(seeds([0.50, 0.56, 0.44]))
    outcome = compare_summaries(base, summarize(seeds([0.47, 0.53, 0.41])), [parse_check("miou:-0.02")])
    assert outcome.exit_code == 1
    assert "no spread in the per-seed differences over 3 seeds, so the threshold alone decides" in (
        outcome.failures[0].message)


def test_other_seeds_on_each_side_are_tested_unpaired_with_welch():
    base = summarize(seeds([0.50, 0.52, 0.51]))
    current = summarize([*seeds([0.47, 0.46]), record(slug="unet__resnet18__ce__synthetic__s3", miou=0.45)])
    outcome = compare_summaries(base, current, [parse_check("miou:-0.01")])
    p = stats.ttest_ind([0.47, 0.46, 0.45], [0.50, 0.52, 0.51], equal_var=False, alternative="less").pvalue
    assert outcome.exit_code == 1 and p < 0.05
    message = outcome.failures[0].message
    assert message.startswith("unet__resnet18__ce__synthetic (means of 3 baseline and 3 current seeds): miou went from")
    assert f"seeds s0, s1, s2 (baseline) and s0, s1, s3 (current); one-sided Welch t-test over 3 baseline and 3 " \
           f"current seeds: p = {p:.4f} < 0.05" in message


def test_single_seed_configurations_are_gated_cell_by_cell_as_before():
    other = "fpn__resnet18__ce__synthetic"
    base = summarize([*seeds([0.50, 0.56, 0.44]), record(slug=f"{other}__s0", miou=0.50)])
    current = summarize([*seeds([0.53, 0.47, 0.41]), record(slug=f"{other}__s0", miou=0.47)])
    outcome = compare_summaries(base, current, [parse_check("miou:-0.02")])
    assert [failure.cell for failure in outcome.failures] == [f"{other}__s0"]
    assert outcome.failures[0].message == (f"{other}__s0: miou went from 0.5000 to 0.4700 (-0.03, -6.0%), beyond the "
                                           "threshold miou:-0.02")
    assert outcome.seed_gated == ["unet__resnet18__ce__synthetic"]


def test_cli_compare_names_the_seed_test(tmp_path: Path):
    base_dir = _results(tmp_path / "base", seeds([0.50, 0.505, 0.495]))
    current_dir = _results(tmp_path / "current", seeds([0.45, 0.46, 0.445]))
    result = CliRunner().invoke(app, ["compare", str(base_dir), str(current_dir), "--fail-on", "miou:-0.02"])
    assert result.exit_code == 1
    assert "REGRESSION unet__resnet18__ce__synthetic (mean of 3 seeds): miou went from" in result.output
    assert "gated on their seed means" in result.output
