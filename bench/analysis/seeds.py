"""Seed statistics: per configuration (cells that differ only by seed), n, mean, sample sd, the t interval of the
mean and the per-seed values of the headline metrics, as a frame (written as CSV) and as a figure.

Configurations are the rows' seed `group` (segbench.records.rows.group_key): the same slug without `__s<seed>` and
the same configuration apart from the seed. Values are fractions, as in records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from segbench.analysis import tables  # noqa: E402
from segbench.analysis.statistics import seed_summary  # noqa: E402
from segbench.metrics.catalogue import METRICS  # noqa: E402
from segbench.records.rows import rows_frame  # noqa: E402
from segbench.records.schema import Record  # noqa: E402

if TYPE_CHECKING:
    from segbench.analysis.writer import ReportWriter

SEED_METRICS = ("miou", "pixel_accuracy", "mdice")
IDENTITY = ("dataset", "model", "encoder", "loss", "configuration", "group", "n", "seeds")
DPI = 110


def seed_statistics_frame(records: list[Record], metrics: tuple[str, ...] = SEED_METRICS) -> pd.DataFrame:
    """One row per configuration: `IDENTITY` columns (configuration = "model/encoder/loss", seeds = "0,1,2" in seed
    order), then per metric `<m>_mean`, `<m>_sd` (ddof 1), `<m>_ci_low`, `<m>_ci_high` (95 % t interval of the mean
    over seeds; NaN with one seed) and `<m>_values` (per-seed values in seed order, ";"-separated, raw fractions).
    Sorted by dataset, then mean mIoU, best first."""
    columns = [*IDENTITY, *(f"{m}_{part}" for m in metrics for part in ("mean", "sd", "ci_low", "ci_high", "values"))]
    cells = rows_frame(records)
    rows = []
    for group, members in cells.groupby("group", sort=False):
        members = members.sort_values("seed", kind="stable")
        first = members.iloc[0]
        row: dict[str, Any] = {
            "dataset": first["dataset"], "model": first["model"], "encoder": first["encoder"], "loss": first["loss"],
            "configuration": f"{first['model']}/{first['encoder']}/{first['loss']}", "group": group,
            "n": len(members), "seeds": ",".join(str(seed) for seed in members["seed"]),
        }
        for metric in metrics:
            values = pd.to_numeric(members[metric], errors="coerce").to_numpy(dtype=np.float64)
            summary = seed_summary(values)
            row.update({f"{metric}_{key}": summary[key] for key in ("mean", "sd", "ci_low", "ci_high")})
            row[f"{metric}_values"] = ";".join(f"{value:.6g}" for value in summary["values"])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    return frame.sort_values(["dataset", "miou_mean"], ascending=[True, False], kind="stable",
                             na_position="last").reset_index(drop=True)


def mean_text(row: pd.Series, metric: str) -> str:
    """"52.10 +- 0.90 [49.86, 54.34]" in percent: mean +- sd [95 % t interval]; the mean alone for one seed."""
    mean, sd = row[f"{metric}_mean"], row[f"{metric}_sd"]
    if pd.isna(mean):
        return "-"
    if pd.isna(sd):
        return f"{mean * 100:.2f}"
    low, high = row[f"{metric}_ci_low"] * 100, row[f"{metric}_ci_high"] * 100
    return f"{mean * 100:.2f} +- {sd * 100:.2f} [{low:.2f}, {high:.2f}]"


def values_text(row: pd.Series, metric: str) -> str:
    """Per-seed values in percent, in seed order: "51.20 / 53.00 / 52.10"."""
    text = row[f"{metric}_values"]
    if not isinstance(text, str) or not text:
        return "-"
    return " / ".join(f"{float(value) * 100:.2f}" for value in text.split(";"))


def seed_figure(frame: pd.DataFrame, path: Path, title: str, metrics: tuple[str, ...] = SEED_METRICS) -> Path | None:
    """One panel per metric, one line per configuration (best mean mIoU on top): each seed a dot, the mean a black
    diamond and its 95 % t interval over seeds a bar (none with one seed). None when `frame` is empty."""
    if frame.empty:
        return None
    shown = frame.iloc[::-1].reset_index(drop=True)  # matplotlib draws the first row at the bottom
    labels = [f"{row.configuration} (n={row.n})" for row in shown.itertuples()]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 1.5, 0.45 * len(shown) + 1.8),
                                sharey=True, squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for y, row in shown.iterrows():
            values = [float(v) * 100 for v in str(row[f"{metric}_values"]).split(";") if v not in ("", "nan")]
            offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
            axis.scatter(values, y + offsets, s=22, color="tab:blue", alpha=0.75, zorder=3,
                         label="one seed" if y == 0 else None)
            mean = row[f"{metric}_mean"]
            if pd.isna(mean):
                continue
            low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
            if not (pd.isna(low) or pd.isna(high)):
                axis.errorbar(mean * 100, y, xerr=[[(mean - low) * 100], [(high - mean) * 100]], fmt="none",
                              ecolor="black", capsize=4, lw=1.2, zorder=2,
                              label="95 % t interval of the mean" if y == 0 else None)
            axis.scatter([mean * 100], [y], marker="D", s=40, color="black", zorder=4,
                         label="mean over seeds" if y == 0 else None)
        axis.set_xlabel(METRICS[metric].label)
        axis.grid(alpha=0.3)
        axis.margins(x=0.1)
    axes[0][0].set_yticks(range(len(shown)), labels=labels, fontsize=8)
    axes[0][0].set_ylim(-0.6, len(shown) - 0.4)
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    figure.suptitle(f"{title}: seeds per configuration (dots), their mean and its 95 % interval")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def top_configurations(frame: pd.DataFrame, dataset: str, top: int) -> list[tuple[str, str, str, str]]:
    """The `top` configurations of one dataset by mean mIoU over seeds, as (dataset, model, encoder, loss)."""
    chosen = frame[(frame["dataset"] == dataset) & frame["miou_mean"].notna()].head(top)
    return [(dataset, row.model, row.encoder, row.loss) for row in chosen.itertuples()]



def write_seed_section(writer: ReportWriter, frame: pd.DataFrame) -> None:
    """`## Seeds`: the statistics table (all datasets), seed-statistics.csv and one seed figure per dataset."""
    writer.add("## Seeds",
               "Cells that differ only by seed, grouped per configuration: mean +- sample sd over the n seeds and, "
               "in brackets, the 95 % t interval of the mean (mean +- t(0.975, n-1) x sd / sqrt(n)); then the "
               "per-seed values in seed order. All in %. With one seed there is no spread to show.")
    if frame.empty:
        writer.add("_(no successful cells)_")
        return
    shown = pd.DataFrame({"dataset": frame["dataset"], "configuration": frame["configuration"],
                          "n": frame["n"].astype(str), "seeds": frame["seeds"]})
    columns = {name: tables.Column(name if name != "n" else "n seeds", str) for name in shown.columns}
    for metric in SEED_METRICS:
        label = METRICS[metric].label
        shown[metric] = [mean_text(row, metric) for _, row in frame.iterrows()]
        shown[f"{metric}_values"] = [values_text(row, metric) for _, row in frame.iterrows()]
        columns[metric] = tables.Column(f"{label} mean +- sd [95 % CI]", str)
        columns[f"{metric}_values"] = tables.Column(f"{label} per seed", str)
    writer.table(frame, columns, "seed-statistics.csv", shown, csv_label="CSV (raw fractions)")
    for dataset in frame["dataset"].astype(str).unique():
        writer.figure(seed_figure(frame[frame["dataset"] == dataset],
                                  writer.figures_dir / f"{tables.file_slug(dataset)}-seeds.png",
                                  dataset), f"{dataset}: each seed as a dot, the mean and its 95 % interval")
