"""Latency in the gate: gated only between equal machine fingerprints, reported once, version-1 summaries as "other
machine", and baselines refused when their latency is unsteady (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segbench.analysis.gate import compare_summaries, parse_check
from segbench.analysis.latency_gate import UnstableLatencyError, check_stable, stability_problems
from segbench.analysis.summary import load_summary, summarize
from segbench.cli import app
from segbench.measure.machine import cpu_description, fingerprint
from segbench.records.store import write_record
from segbench.records.summaries import write_summary

from support.records import SLUG, record

GATE = [parse_check(spec) for spec in ("miou:-0.01", "params:+0%", "gmacs:+0%", "latency_ratio:+50%")]
FPN = "fpn__resnet18__ce__synthetic__s0"
FPN_FOCAL = "fpn__resnet18__focal__synthetic__s0"

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz
stepping\t: 6
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni

processor\t: 1
vendor_id\t: GenuineIntel
"""
AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
stepping\t: 0
flags\t\t: fpu sse sse2 avx avx2 fma
"""


def test_fingerprints_tell_cpus_threads_and_methods_apart(tmp_path: Path):
    cpu = torch.device("cpu")
    intel, amd = (cpu_description(text, cache_dir=tmp_path) for text in (INTEL, AMD))
    assert intel["vendor"] == "GenuineIntel" and (intel["family"], intel["model"], intel["stepping"]) == ("6", "106",
                                                                                                          "6")
    assert intel["vector_flags"] == ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]
    assert amd["vector_flags"] == ["avx", "avx2", "fma"]
    same = fingerprint(cpu, 1, "m", intel)
    assert fingerprint(cpu, 1, "m", cpu_description(INTEL, cache_dir=tmp_path))["id"] == same["id"]
    others = [fingerprint(cpu, 1, "m", amd), fingerprint(cpu, 2, "m", intel), fingerprint(cpu, 1, "other", intel)]
    assert len({same["id"], *(other["id"] for other in others)}) == 4
    assert same["label"].startswith("Intel(R) Xeon(R) Processor @ 2.80GHz (6/106/6, avx512")
    # the same model name with another stepping or cache is another machine
    stepping = fingerprint(cpu, 1, "m", {**intel, "stepping": "7"})
    cache = fingerprint(cpu, 1, "m", {**intel, "caches": {"L3": "32768K"}})
    assert same["id"] not in (stepping["id"], cache["id"])


def test_this_machine_has_a_fingerprint():
    description = cpu_description()
    assert description["logical_cores"] >= 1
    assert fingerprint(torch.device("cpu"), 1, "m")["id"] == fingerprint(torch.device("cpu"), 1, "m")["id"]


def test_latency_from_another_machine_is_not_gated_but_the_rest_is():
    base = summarize([record(latency_ratio=1.0, machine="intel")])
    twice_as_slow = summarize([record(latency_ratio=2.0, machine="amd")])
    outcome = compare_summaries(base, twice_as_slow, GATE)
    assert outcome.exit_code == 0 and not outcome.failures
    row = next(row for row in outcome.rows if row["field"] == "latency_ratio")
    assert row["verdict"] == "not gated: other machine"
    sentence = outcome.latency.sentence()
    assert sentence.startswith("latency: not gated for 1 cell: the baseline was timed on another machine, CPU intel")
    assert "than this run, CPU amd [amd]. " in sentence and "MACs and metrics were gated" in sentence
    # parameters, MACs and metrics are still gated across machines
    worse = summarize([record(latency_ratio=2.0, machine="amd", miou=0.4, params=1001)])
    failed = compare_summaries(base, worse, GATE).failures
    assert sorted(failure.field for failure in failed) == ["miou", "params"]


def test_a_doubled_latency_on_the_same_machine_fails():
    base = summarize([record(latency_ratio=1.0, spread=0.02)])
    outcome = compare_summaries(base, summarize([record(latency_ratio=2.0, spread=0.03)]), GATE)
    assert [failure.field for failure in outcome.failures] == ["latency_ratio"]
    assert outcome.failures[0].message.startswith(f"{SLUG}: latency_ratio went from 1.0000 to 2.0000 (+1, +100.0%)")
    sentence = outcome.latency.sentence()
    assert sentence.startswith("latency: gated for 1 cell, timed on the same machine on both sides (CPU machine-a")
    assert "tolerance latency_ratio:+50%" in sentence and "2.0 % in the baseline and 3.0 % now" in sentence
    assert compare_summaries(base, summarize([record(latency_ratio=1.3)]), GATE).exit_code == 0


def test_a_version_1_summary_loads_and_its_latency_counts_as_unknown_machine(tmp_path: Path):
    document = summarize([record(latency_ratio=1.0)]).to_json()
    old = {**document, "version": 1, "cells": {slug: {key: value for key, value in row.items()
                                                      if key not in ("machine", "latency_spread", "latency_workload")}
                                               for slug, row in document["cells"].items()}}
    old.pop("machines")
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    base = load_summary(path)
    assert base.cells[SLUG].machine is None
    outcome = compare_summaries(base, summarize([record(latency_ratio=3.0)]), GATE)
    assert outcome.exit_code == 0 and outcome.latency.not_gated == {SLUG: "baseline without a machine fingerprint"}
    assert "the baseline has no machine fingerprint" in outcome.latency.sentence()
    assert compare_summaries(base, summarize([record(miou=0.3)]), GATE).exit_code == 1  # metrics still gated


def test_seed_means_gate_latency_only_on_one_machine():
    def seeds(machine: str, ratio: float) -> list[dict]:
        return [record(slug=f"unet__resnet18__ce__synthetic__s{seed}", machine=machine,
                       latency_ratio=ratio + seed / 100) for seed in range(3)]

    base = summarize(seeds("intel", 1.0))
    assert compare_summaries(base, summarize(seeds("amd", 3.0)), GATE).exit_code == 0
    same = compare_summaries(base, summarize(seeds("intel", 3.0)), GATE)
    assert [failure.field for failure in same.failures] == ["latency_ratio"]
    assert "mean of 3 seeds" in same.failures[0].cell


def test_the_gate_says_when_no_check_is_timed():
    base = summarize([record()])
    assert compare_summaries(base, base, [parse_check("miou:-0.01")]).latency.sentence().startswith(
        "latency: not gated (no --fail-on names a timed field")


def test_unsteady_latency_is_refused_as_a_baseline():
    steady = summarize([record(spread=0.03), record(slug=FPN, spread=0.05, latency_ratio=1.0),
                        record(slug=FPN_FOCAL, spread=0.0, latency_ratio=1.08)])
    check_stable(steady, 10)  # same inference (FPN, ce and focal) within 8 %
    unsteady_rounds = summarize([record(spread=0.2)])
    assert stability_problems(unsteady_rounds, 10) == [f"{SLUG}'s two timing rounds disagree by 20.0 %"]
    pair = summarize([record(slug=FPN, latency_ratio=0.7160), record(slug=FPN_FOCAL, latency_ratio=0.9505)])
    problems = stability_problems(pair, 10)
    assert problems == [f"{FPN} and {FPN_FOCAL} time the same inference but their latency ratios disagree by 32.8 % "
                        "(0.716 vs 0.951)"]
    assert stability_problems(pair, 40) == []
    other_size = summarize([record(slug=FPN, latency_ratio=0.7), record(slug=FPN_FOCAL, latency_ratio=0.95,
                                                                        params=2000)])
    assert stability_problems(other_size, 10) == []  # another parameter count is another inference
    one_round = summarize([record(spread=None)])
    assert "timed in one round" in stability_problems(one_round, 10)[0]
    with pytest.raises(UnstableLatencyError, match="rerun on a quiet machine"):
        check_stable(pair, 10)


def _results(folder: Path, records: list[dict]) -> Path:
    for item in records:
        write_record(folder, item)
    return folder


def test_cli_baseline_refusal_writes_nothing_and_compare_says_once(tmp_path: Path):
    runner = CliRunner()
    unsteady = _results(tmp_path / "unsteady", [record(slug=FPN, latency_ratio=0.72),
                                                record(slug=FPN_FOCAL, latency_ratio=0.95)])
    out = tmp_path / "baseline.json"
    refused = runner.invoke(app, ["summary", str(unsteady), "--out", str(out), "--stable-latency", "10"])
    assert refused.exit_code == 2 and not out.exists()
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: latency too unsteady for a baseline (tolerance 10 %)")
    assert FPN in lines[0] and "busy" in lines[0]

    base = _results(tmp_path / "base", [record(latency_ratio=1.0)])
    assert runner.invoke(app, ["summary", str(base), "--out", str(out), "--stable-latency", "10"]).exit_code == 0
    halved = load_summary(out)
    halved.cells[SLUG].latency_ratio /= 2  # the current model now looks twice as slow
    write_summary(halved, tmp_path / "halved.json")
    gate = ["--fail-on", "miou:-0.01", "--fail-on", "latency_ratio:+50%"]
    failed = runner.invoke(app, ["compare", str(tmp_path / "halved.json"), str(base), *gate])
    assert failed.exit_code == 1 and f"REGRESSION {SLUG}: latency_ratio went from 0.5000 to 1.0000" in failed.output
    assert failed.output.count("latency: gated for 1 cell") == 1
    elsewhere = _results(tmp_path / "elsewhere", [record(latency_ratio=2.0, machine="machine-b")])
    passed = runner.invoke(app, ["compare", str(out), str(elsewhere), *gate])
    assert passed.exit_code == 0, passed.output
    assert passed.output.count("latency: not gated for 1 cell: the baseline was timed on another machine") == 1
