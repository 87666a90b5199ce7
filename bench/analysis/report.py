"""`segbench report`: a self-contained Markdown report (report.md, figures/, CSV tables) regenerated from records.

Nothing is trained or measured here: every number comes from the records under RESULTS/cells, every picture from
them and from the example PNGs the records point to. Per dataset: leaderboard (mIoU with its bootstrap interval over
val images), accuracy-cost Pareto plots, micro vs macro scores, per-class IoU, the best cell's confusion matrix and
example predictions, training curves and cost (with time to accuracy). Then seed statistics with their figure, and
comparisons with verdicts (main effects of each axis over seeds, the same effects within each combination of the other
axes, pairs of the top configurations; comparisons.csv).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

import segbench
from segbench.analysis import figures, tables
from segbench.analysis.effects_section import ComparisonOptions, compute_comparisons, write_comparison_section
from segbench.analysis.seeds import seed_statistics_frame, write_seed_section
from segbench.analysis.summary import Selection, latency_conditions, select_latest
from segbench.analysis.writer import CellDetails, Curve, ExampleImages, ReportWriter
from segbench.errors import ConfigError
from segbench.metrics.catalogue import fixed
from segbench.records.paths import cell_dir, cells_dir, tensorboard_run, tuning_dir
from segbench.records.rows import record_row, selection_text
from segbench.records.schema import Record
from segbench.records.store import load_records, now_iso

MICRO_NOTE = (
    "Micro scores pool every pixel over classes, so for single-label predictions micro sensitivity = micro Dice = "
    "micro accuracy = pixel accuracy and micro specificity = 1 - E/((C-1)N) approaches 1 as the number of classes C "
    "grows; macro scores average per class, so a rare class weighs as much as road, which is why they are lower."
)
METRIC_NOTE = (
    "All metrics derive from one int64 confusion matrix per evaluation, accumulated over the whole val split with "
    "ignore pixels dropped. IoU = TP/(TP+FP+FN), Dice = 2TP/(2TP+FP+FN); macro means (mIoU, mDice) run over the "
    "classes present in the ground truth or the prediction; pixel accuracy = trace/N; micro IoU = (N-E)/(N+E). "
    "GMACs are fvcore's count at batch 1 (one fused multiply-add = one MAC; GFLOPs = 2 x GMACs). Latency: eval mode, "
    "`torch.inference_mode()`, warm-up then timed iterations, median (p50) at batch 1; throughput at the "
    "measurement batch size. The latency ratio is the median over batch-1 iterations of the model's time over a "
    "reference workload's (ResNet-18 features at the same input) timed back to back in the same process, in two "
    "rounds whose agreement is recorded; it is compared only between cells timed on machines with the same "
    "fingerprint. "
    "Peak memory: CUDA allocator peak per phase, or on the CPU the resident-set increase of a fresh process."
)

INTERVAL_NOTE = (
    "mIoU 95 % CI: evaluation noise of one trained model, a percentile bootstrap over val images (images resampled "
    "with replacement, mIoU recomputed from their pooled per-class counts, 1000 seeded resamples); it says nothing "
    "about seed-to-seed variation (see Seeds). `-`: the record predates intervals."
)


def write_report(results: Path, out: Path | None = None, options: ComparisonOptions | None = None,
                 html: bool = False) -> Path:
    """Write `report.md`, `figures/` and CSV tables for a results folder; returns the path of report.md.

    `html`: also write `report.html` beside it, the same sections as one self-contained page (analysis.html_report).

    `options`: baselines, margin, alpha and number of top configurations of the comparisons (defaults otherwise).
    A bad option raises ConfigError before anything is written.
    """
    results, options = Path(results), options or ComparisonOptions()
    if not cells_dir(results).is_dir():
        raise ConfigError(f"{results} is not a results folder (no cells/ inside); pass the --results folder of a run.")
    loaded = load_records(results)
    if not loaded.records:
        raise ConfigError(f"{results} holds no readable record; run a grid into it first.")
    selection = select_latest(loaded.records)
    ok = [r for r in selection.records if r.ok]
    failed = [r for r in selection.records if not r.ok]
    seeds = seed_statistics_frame(ok)
    comparisons = compute_comparisons(results, ok, seeds, options)
    out = Path(out) if out else results / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "figures").glob("*.png"):  # figures of an earlier report that this one may not redraw
        stale.unlink()
    writer = ReportWriter(results, out)
    writer.add(f"# segbench report: {results.name}", "",
               f"Generated {now_iso()} from the records in `{results}` alone: {len(selection.records)} cells "
               f"({len(ok)} ok, {len(failed)} not ok), {len(selection.superseded)} superseded records, "
               f"{len(loaded.unreadable)} unreadable. Regenerate with `segbench report {results}`.")
    for note in loaded.notes:  # records from a newer segbench: what this version does not show
        writer.add("", f"> {note}")
    datasets: dict[str, list[Record]] = {}
    for record in ok:
        datasets.setdefault(record_row(record)["dataset"] or "unknown", []).append(record)
    writer.add("## Contents", *[f"- [{name}](#dataset-{tables.file_slug(name).lower()})" for name in datasets],
               *(["- [Tuning](#tuning)"] if any(r.tuning for r in ok) else []),
               "- [Seeds](#seeds)", "- [Comparisons](#comparisons)", "- [Failed cells](#failed-cells)",
               "- [Not comparable](#not-comparable)", "- [Environment](#environment)",
               "- [Metric definitions](#metric-definitions)")
    for name, records in datasets.items():
        _dataset_sections(writer, name, records)
    _tuning_section(writer, ok)
    write_seed_section(writer, seeds)
    write_comparison_section(writer, comparisons, options)
    _failed_section(writer, failed, loaded.unreadable)
    _superseded_section(writer, selection)
    writer.add("## Environment")
    writer.table(tables.environment_frame(selection.records), None, "environment.csv")
    _definitions_section(writer)
    best_first = sorted(selection.records, key=lambda r: -(r.metrics.miou or 0) if r.metrics else 1)
    writer.details([cell_details(record, cell_dir(results, record.cell_id)) for record in best_first])
    report = out / "report.md"
    report.write_text(writer.markdown(), encoding="utf-8")
    page = out / "report.html"
    if html:
        from segbench.analysis.html_report import render_html

        page.write_text(render_html(writer, f"segbench report: {results.name}"), encoding="utf-8")
    else:  # a page of an earlier report would contradict this one
        page.unlink(missing_ok=True)
    return report


def _dataset_sections(writer: ReportWriter, name: str, records: list[Record]) -> None:
    slug = tables.file_slug(name)
    rows = [record_row(record) for record in records]
    best_index = max(range(len(records)), key=lambda i: rows[i]["miou"] if rows[i]["miou"] is not None else -1)
    best, best_row = records[best_index], rows[best_index]
    classes = (best.dataset.classes if best.dataset else None) or [str(i) for i in range(len(best.confusion_matrix))]
    conditions = latency_conditions(best)
    writer.add(f"## Dataset: {name}", f"{len(records)} cells; best by val mIoU: `{best.slug}`.")
    timing = ("Latency: median at batch 1; throughput at batch "
              f"{best_row['batch_n']}; measured on {_or_unknown(conditions.device)} "
              f"({_or_unknown(conditions.device_type)}, threads: {_or_unknown(conditions.threads)}, autocast: "
              f"{conditions.autocast or 'off'}); absolute times on a shared machine swing with its load, the "
              "latency ratio in the cost table below much less. "
              f"{latency_worth(rows)} Peak memory: one training step / one inference batch "
              "(CPU: resident-set increase of a fresh process; CUDA: peak allocated)." if conditions else
              "Latency, throughput and memory were not measured (`measure.enabled: false`); parameters are counted.")
    writer.add("### Leaderboard", f"Best value of each column in bold. {timing} Time to 90%: training time until val "
               "mIoU first reached 90 % of its final value.", INTERVAL_NOTE, protocol_text(records))
    leaderboard = tables.leaderboard_frame(records)
    writer.table(leaderboard, tables.LEADERBOARD, f"leaderboard-{slug}.csv", tables.leaderboard_shown(leaderboard))
    writer.add("### Accuracy vs cost")
    writer.figure(figures.pareto_figure(records, writer.figures_dir / f"{slug}-pareto.png", name),
                  "mIoU vs latency and vs GMACs with the Pareto front")
    _cost_chart(writer, records, leaderboard)
    writer.add("### Micro vs macro scores", MICRO_NOTE)
    writer.table(tables.seed_style_frame(records), tables.SEED_STYLE, f"micro-macro-{slug}.csv")
    writer.add("### Per-class IoU", "IoU (%) per class and cell; `-`: class absent from ground truth and prediction.")
    per_class = tables.per_class_iou_frame(records, classes)
    percent_columns = {name: tables.Column(name, fixed(1, 0.01)) for name in per_class.columns}
    writer.table(per_class, {"class": tables.Column("class", str), **percent_columns}, f"per-class-iou-{slug}.csv",
                 per_class.reset_index(), csv_label="CSV", heatmap=True)
    writer.figure(figures.per_class_heatmap(per_class, writer.figures_dir / f"{slug}-per-class-iou.png", name),
                  "per-class IoU heatmap")
    writer.figure(figures.iou_vs_share_figure(records, best, classes, writer.figures_dir / f"{slug}-iou-vs-share.png",
                                              name), "IoU vs class pixel share")
    writer.add(f"### Best cell: {best.slug}", f"Reported weights: {selection_text(best)}.")
    writer.figure(figures.confusion_figure(best, classes, writer.figures_dir / f"{slug}-confusion.png", name),
                  "row-normalised confusion matrix")
    examples = figures.examples_figure(best, cell_dir(writer.results, best.cell_id),
                                       writer.figures_dir / f"{slug}-examples.png", name)
    writer.figure(examples, "best and worst val images")
    _calibration_section(writer, slug, name, records)
    _domains_section(writer, slug, records)
    _robustness_section(writer, slug, name, records)
    _deployment_section(writer, slug, name, records)
    writer.add("### Training curves")
    writer.figure(figures.training_curves_figure(records, writer.figures_dir / f"{slug}-training.png", name),
                  "training loss and val mIoU per epoch")
    logged = [run for r in records if (run := tensorboard_run(cell_dir(writer.results, r.cell_id)))]
    if logged:
        log_dirs = sorted({run["log_dir"] for run in logged})
        writer.add(f"TensorBoard logs (per step) of {len(logged)} of these {len(records)} cells, one run per cell "
                   f"id: {', '.join(f'`{d}`' for d in log_dirs)}; view with "
                   f"{', '.join(f'`tensorboard --logdir {d}`' for d in log_dirs)}.")
    writer.add("### Cost in detail",
               "Parameters are unique tensors (encoder / decoder split); GFLOPs = 2 x fvcore GMACs at batch 1 "
               f"(input {best_row['macs_input_shape']}). The latency ratio (model time / reference time, paired by "
               "iteration, same process) is what regression gates compare, between cells timed on one machine "
               "fingerprint; round spread: how far its two timing rounds agreed. "
               "torchinfo's forward/backward size is an estimate (it ignores parameter-free layers).")
    cost = tables.cost_frame(records)
    timed_protocol = cost["protocol_latency_ms_p50"].notna().any()  # a column only where a cell slid or used TTA
    writer.table(cost, tables.COST, f"cost-{slug}.csv",
                 None if timed_protocol else cost.drop(columns="protocol_latency_ms_p50"))
    started = sorted({weights_text(r) for r in records if r.weights})
    if started:
        writer.add(f"Pretrained encoder weights (the other cells start from random weights): {'; '.join(started)}.")
    skipped = sorted({op for r in records if r.cost and r.cost.macs for op in r.cost.macs.unsupported_ops})
    if skipped:
        writer.add("Operators fvcore skipped (not in the MAC counts; calls per cell in the CSV): "
                   f"{', '.join(f'`{op}`' for op in skipped)}.")


# The x axes of the HTML report's accuracy-vs-cost chart, in raw units; the deployed latency is each cell's fastest
# measured deployed form (measure.runtimes x precisions).
COST_AXES = {"latency_ms_p50": "latency p50, batch 1 (ms)", "gmacs": "GMACs at batch 1", "params": "parameters",
             "train_time_s": "training time (s)", "deployed_latency_ms_p50": "fastest deployed form, p50 b1 (ms)"}


def _cost_chart(writer: ReportWriter, records: list[Record], leaderboard: pd.DataFrame) -> None:
    """mIoU against each cost the cells have, one x axis at a time (drawn in the HTML report)."""
    frame = leaderboard[["cell", "miou", *list(COST_AXES)[:-1]]].copy()
    deployed = tables.deployment_frame([r for r in records if r.deployment and r.deployment.forms])
    measured = deployed[deployed["status"].eq("ok") & deployed["latency_ms_p50"].notna()]
    frame["deployed_latency_ms_p50"] = frame["cell"].map(measured.groupby("cell")["latency_ms_p50"].min())
    axes = {key: label for key, label in COST_AXES.items() if pd.to_numeric(frame[key], errors="coerce").notna().any()}
    if note := figures.machines_note(records).strip():  # a merged folder: say so on every latency axis
        axes = {key: f"{label}; {note}" if "latency" in key else label for key, label in axes.items()}
    if axes and frame["miou"].notna().any():
        writer.chart(frame, "miou", "val mIoU", axes)


RESIZE_NOTE = ("With eval.size the labels are resized (nearest neighbour) with the image, so these scores are not "
               "the full-resolution scores published numbers report (eval.mode: whole or slide).")


def protocol_text(records: list[Record]) -> str:
    """How the cells computed their predictions (segbench.cell.inference), one sentence per protocol among them."""
    from segbench.cell.inference import Protocol
    from segbench.grid.schema import EvalConfig

    protocols: dict[str, str] = {}
    for record in records:
        try:
            protocol = Protocol.of(EvalConfig.model_validate(record.config.eval.to_json()), 1)
        except ValueError:  # settings of a newer segbench
            protocols.setdefault("not known to this segbench version", "")
            continue
        protocols.setdefault(protocol.describe(), protocol.mode)
    text = "; ".join(protocols)
    note = f" {RESIZE_NOTE}" if "resize" in protocols.values() else ""
    again = [record for record in records if record.reevaluations]
    if again:  # evaluation settings changed after training (segbench.cell.attached)
        latest = max((entry for record in again for entry in record.reevaluations), key=lambda e: e.at or "")
        note += (f" {len(again)} of these {len(records)} cells were evaluated again from their saved weights with the "
                 f"settings shown here, nothing retrained (latest {latest.at}: {'; '.join(latest.evaluated)}; each "
                 "record's `reevaluations` says when, where and what).")
    return f"Evaluation protocol: {text}.{note}"


def _robustness_section(writer: ReportWriter, slug: str, name: str, records: list[Record]) -> None:
    """The cells under weather and sensor corruptions (eval.corruptions)."""
    corrupted = [record for record in records if record.corruptions]
    if not corrupted:
        return
    part = corrupted[0].corruptions
    writer.add("### Robustness",
               f"The selected weights on the first {part.images} images of the reported split, each corrupted at "
               f"severities {', '.join(map(str, part.severities))} (Hendrycks & Dietterich 2019 definitions, "
               "docs/metrics.md), under the cell's protocol. Mean corrupted mIoU: over severities, then "
               "corruptions; relative robustness: that over the clean mIoU of the same images.")
    writer.table(tables.robustness_frame(corrupted), tables.ROBUSTNESS, f"robustness-{slug}.csv")
    per_corruption = tables.corruption_frame(corrupted)
    percent = {column: tables.Column(column, fixed(1, 0.01)) for column in per_corruption.columns}
    writer.add("mIoU (%) per corruption, mean over severities:")
    writer.table(per_corruption, {"cell": tables.Column("cell", str), **percent}, f"corruptions-{slug}.csv",
                 per_corruption.reset_index(), csv_label="CSV")
    writer.figure(figures.severity_figure(corrupted, writer.figures_dir / f"{slug}-corruptions.png", name),
                  "mIoU against severity per corruption")


def _domains_section(writer: ReportWriter, slug: str, records: list[Record]) -> None:
    """The cells on their further evaluation datasets (eval.datasets), against their own split."""
    evaluated = [record for record in records if record.domains]
    if not evaluated:
        return
    writer.add("### Other domains",
               "The selected weights on the grid's further evaluation datasets (`eval.datasets`), under the same "
               "protocol, their labels mapped onto the training classes by class name (CamVid's through their "
               "Cityscapes counterparts; classes without a counterpart ignored). Gap: mIoU there minus mIoU on the "
               "cell's own split, in points.")
    writer.table(tables.domains_frame(evaluated), tables.DOMAINS, f"domains-{slug}.csv")


def _deployment_section(writer: ReportWriter, slug: str, name: str, records: list[Record]) -> None:
    """The cells in each deployed form of measure.runtimes x measure.precisions (segbench.cell.deployment)."""
    deployed = [record for record in records if record.deployment and record.deployment.forms]
    if not deployed:
        return
    first = deployed[0].deployment
    export = first.onnx or {}
    writer.add("### Deployment",
               "Each trained cell exported and run as it would ship. Latency: batch 1 (p50) and batch N (throughput), "
               "each form timed alternately with eager PyTorch fp32 in the same process, with the measurement's "
               f"warm-up and budget ({first.threads} thread(s) on the CPU); the ratio to eager moves between CPUs, so "
               "compare it on one machine. Accuracy: each form evaluated on the reported split under the cell's "
               "protocol, its own mIoU, its change from eager fp32 and the share of pixels it predicts as eager "
               "fp32 does."
               + (f" ONNX: {export.get('exporter')}, opset {export.get('opset')}." if export else "")
               + (f" INT8: ONNX Runtime static quantization ({first.int8.get('format')}, "
                  f"{first.int8.get('activations')} activations, {first.int8.get('weights')} weights, "
                  f"{first.int8.get('calibration')} calibration on {first.int8.get('images')} training images "
                  "chosen by the seed)." if first.int8 else ""))
    writer.table(tables.deployment_frame(deployed), tables.DEPLOYMENT, f"deployment-{slug}.csv")
    skipped = {f"{form.runtime} {form.precision}": form.reason for record in deployed
               for form in record.deployment.forms if form.status == "skipped"}
    if skipped:
        writer.add("Not measured: " + "; ".join(f"{form} ({reason})" for form, reason in skipped.items()) + ".")
    writer.figure(figures.deployment_figure(deployed, writer.figures_dir / f"{slug}-deployment.png", name),
                  "mIoU vs deployed latency (batch 1) with the Pareto front")


def _calibration_section(writer: ReportWriter, slug: str, name: str, records: list[Record]) -> None:
    """ECE and boundary mIoU of the reported evaluation, and the reliability diagram (cells from issue 22 on)."""
    measured = [record for record in records if record.calibration or record.boundary]
    if not measured:
        return
    writer.add("### Calibration and boundaries",
               "Of the reported weights on the reported split, every pixel counted (docs/metrics.md). ECE: expected "
               "calibration error of the top-class softmax confidence, 15 equal-width bins (Guo et al. 2017), lower "
               "is better. Boundary mIoU: IoU of the pixels within d of each class's contour in ground truth and "
               "prediction, d = 2 % of the image diagonal (Cheng et al. 2021), next to mIoU, which counts the "
               "interiors.")
    writer.table(tables.calibration_frame(measured), tables.CALIBRATION, f"calibration-{slug}.csv")
    writer.figure(figures.reliability_figure(measured, writer.figures_dir / f"{slug}-reliability.png", name),
                  "reliability diagram")


def _tuning_section(writer: ReportWriter, ok: list[Record]) -> None:
    """Per configuration tuned by the grid's `tune:` section: its best parameters, their holdout mIoU and the
    budget; the trials (records under tuning/cells) in a figure against each tuned parameter."""
    studies = {r.tuning.study: r for r in ok if r.tuning is not None}
    if not studies:
        return
    rows, trials = [], {}
    trial_records = load_records(tuning_dir(writer.results)).records
    for name, record in studies.items():
        tuning, label = record.tuning, record_row(record)["label"].rsplit("/s", 1)[0]
        rows.append({"configuration": label, "study": name, "sampler": tuning.sampler, "trials": tuning.trials,
                     "completed": tuning.completed,
                     **{f"best {key}": value for key, value in (tuning.best_params or {}).items()},
                     "best holdout mIoU (%)": None if tuning.best_value is None else tuning.best_value * 100})
        trials[label] = [(dict(t.config.train.to_json()), t.metrics.miou) for t in trial_records
                         if t.ok and t.metrics and t.metrics.miou is not None
                         and (t.config.to_json().get("trial") or {}).get("study") == name]
    first = next(iter(studies.values())).tuning
    space = ", ".join(space_text(key, spec) for key, spec in (first.space or {}).items())
    writer.add("## Tuning",
               f"Every configuration was given the same budget: {first.trials} trials ({first.sampler} sampler) over "
               f"{space}, each scored by its mIoU "
               f"on a {first.holdout:g} holdout of the training split (seed {first.seed}); val was never read while "
               "tuning. The cells above trained with each configuration's best parameters on the whole training "
               "split and report on val.")
    writer.table(pd.DataFrame(rows), None, "tuning.csv")
    writer.figure(figures.tuning_figure(trials, first.space or {}, writer.figures_dir / "tuning.png"),
                  "holdout mIoU of every trial against each tuned parameter")


def space_text(key: str, spec: dict[str, Any]) -> str:
    """"`lr` log-uniform in [0.0001, 0.01]", "`weight_decay` one of 0, 0.0001"."""
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return f"`{key}` one of {', '.join(f'{value:g}' for value in values)}"
    name = {"log_uniform": "log-uniform", "uniform": "uniform", "int": "an integer"}.get(kind, kind)
    return f"`{key}` {name} in [{values[0]:g}, {values[1]:g}]"


def weights_text(record: Record) -> str:
    """"resnet18 from `imagenet` (smp: smp-hub/resnet18.imagenet @ 3f2325f, sha256 0123456789ab)"."""
    weights = record.weights
    revision = f" @ {weights.revision[:7]}" if weights.revision else ""
    return (f"{record.config.encoder} from `{weights.name}` ({weights.library}: {weights.repo_id or weights.file}"
            f"{revision}, sha256 {(weights.sha256 or '?')[:12]})")


def _or_unknown(value: Any) -> Any:
    return "?" if value is None else value


def latency_worth(rows: list[dict[str, Any]]) -> str:
    """What comparing these cells' latencies is worth: on how many machines they were timed, and how far their
    timing rounds agreed."""
    timed = [row for row in rows if row.get("latency_ratio") is not None]
    machines = {row["machine"]: row.get("machine_label") for row in timed if row.get("machine")}
    spreads = [row["latency_spread"] for row in timed if row.get("latency_spread") is not None]
    unknown = sum(not row.get("machine") for row in timed)
    if not timed:
        return ""
    if len(machines) == 1 and not unknown:
        (machine_id, label), = machines.items()
        where = f"All {len(timed)} latencies were timed on one machine, {label} [{machine_id}]"
    else:
        where = (f"These latencies were timed on {len(machines)} machine fingerprints"
                 f"{f' and {unknown} unknown machines' if unknown else ''} (cost CSV, column `machine`): compare "
                 "latency only between cells of one machine")
    spread = (f"; their timing rounds agreed within {max(spreads) * 100:.1f} %, so latency-ratio differences "
              "smaller than that are noise." if spreads else "; they were timed in one round, so their noise is "
              "unknown.")
    return where + spread


def _failed_section(writer: ReportWriter, failed: list[Record], unreadable: list[str]) -> None:
    writer.add("## Failed cells")
    if not failed and not unreadable:
        writer.add("None: every cell finished.")
        return
    writer.table(tables.failed_frame(failed), None, "failed.csv" if failed else None)
    for message in unreadable:
        writer.add(f"- unreadable record: {message}")


def _superseded_section(writer: ReportWriter, selection: Selection) -> None:
    writer.add("## Not comparable")
    if not selection.superseded:
        writer.add("Every slug has one record.")
        return
    writer.add("These older records share a slug with a newer one but were produced under a different configuration "
               "(different config hash); they are not comparable with it and are left out of every table above.")
    newest = {r.slug: r for r in selection.records}
    rows = [{"cell": r.slug, "old hash": r.config_hash, "shown hash": newest[r.slug].config_hash,
             "old record written": r.written_at} for r in selection.superseded]
    writer.table(pd.DataFrame(rows), None, None)


DETAILED_COST = ("params", "gmacs", "latency_ms_p50", "latency_ratio", "train_time_s", "train_memory_bytes")


# What a table's rows can be filtered by in the HTML report, besides their shown columns.
FACETS = ("dataset", "model", "encoder", "loss", "weights", "status", "machine")


def cell_details(record: Record, folder: Path) -> CellDetails:
    """What the HTML report shows of one cell behind its rows: identity, selection, cost (raw units), the error of
    a cell that did not finish, its resolved configuration, training curves and the val examples saved in `folder`
    (the cell's folder)."""
    row = record_row(record)
    items = [("cell", record.slug), ("config hash", record.config_hash), ("status", record.status)]
    if record.ok:
        items.append(("reported weights", selection_text(record)))
        items.append(("cost (raw units)", "; ".join(f"{key} {row[key]:g}" for key in DETAILED_COST
                                                    if isinstance(row.get(key), (int, float)))))
    if record.error:
        items.append(("error", f"{record.error.kind}: {record.error.message}"))
        trace = record.error.traceback or record.error.log_tail
        if trace:
            items.append(("traceback", trace))
    items.append(("configuration", json.dumps(record.config.to_json(), indent=2, sort_keys=True, default=str)))
    history = record.history or []
    curves = (Curve("training loss", "epoch", "mean loss over the epoch",
                    tuple((h.epoch, h.train_loss) for h in history if _finite(h.train_loss))),
              Curve("val mIoU", "epoch", "val mIoU", tuple((h.epoch, h.val_miou) for h in history
                                                           if _finite(h.val_miou))))
    examples = tuple(ExampleImages(f"{e.rank}: {e.sample_id}, pixel accuracy {e.pixel_accuracy * 100:.1f} %"
                                   if e.pixel_accuracy is not None else f"{e.rank}: {e.sample_id}", record, folder, e)
                     for e in figures.saved_examples(record, folder))
    facets = tuple((key, str(row[key])) for key in FACETS if row.get(key) is not None)
    return CellDetails((row["label"], record.slug), record.slug, tuple(items), facets,
                       tuple(curve for curve in curves if curve.points), examples)


def _finite(value: float | None) -> bool:
    """A number a curve can draw (a diverged epoch's loss is NaN or infinite: left out)."""
    return value is not None and math.isfinite(value)


def _definitions_section(writer: ReportWriter) -> None:
    docs = Path(segbench.__file__).resolve().parents[1] / "docs" / "metrics.md"
    link = os.path.relpath(docs, writer.out.resolve()) if docs.is_file() else "docs/metrics.md"
    writer.add("## Metric definitions", METRIC_NOTE,
               f"Full definitions and how other libraries differ: [docs/metrics.md]({Path(link).as_posix()}) in the "
               "segbench repository.")
