"""The report's figures, drawn with matplotlib's Agg backend from records (and the example PNGs records point to).

Each function writes one PNG and returns its path. Cells are labelled model/encoder/loss/s<seed>; where many labels
would collide (scatter plots) points carry numbers and a key beside the axes names them.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from segbench.atomic import atomic_write_bytes  # noqa: E402
from segbench.colours import CORRECT_COLOUR, IGNORE_COLOUR, WRONG_COLOUR, colourise, error_map  # noqa: E402
from segbench.records.rows import record_row  # noqa: E402
from segbench.records.schema import DatasetInfo, Example, Record  # noqa: E402

DPI = 110


def _label(record: Record) -> str:
    return record_row(record)["label"]


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def pareto_front(xs: list[float], ys: list[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal x and higher y), sorted by x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front: list[int] = []
    best_y = -math.inf
    for index in order:
        if ys[index] > best_y:
            front.append(index)
            best_y = ys[index]
    return front


def pareto_figure(records: list[Record], path: Path, title: str) -> Path | None:
    """mIoU against latency (batch 1) and against GMACs, with the Pareto front drawn and its cells named."""
    rows = [(row["label"], row) for row in map(record_row, records)]
    axes_spec = [("latency_ms_p50", "latency p50 at batch 1 (ms)"), ("gmacs", "GMACs at batch 1")]
    usable = [(label, row) for label, row in rows if row["miou"] is not None]
    if not usable:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    numbers = {label: number for number, (label, _) in enumerate(usable, 1)}
    for axis, (key, xlabel) in zip(axes, axes_spec, strict=True):
        points = [(label, row[key], row["miou"] * 100) for label, row in usable if row[key] is not None]
        if not points:
            axis.text(0.5, 0.5, f"no {key} measured", ha="center", transform=axis.transAxes)
            continue
        xs, ys = [p[1] for p in points], [p[2] for p in points]
        front = pareto_front(xs, ys)
        axis.scatter(xs, ys, s=36, color="tab:blue", zorder=3)
        axis.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:red", ms=10, mfc="none",
                  drawstyle="steps-post", zorder=2)
        for members in _clusters(xs, ys):
            text = ",".join(str(numbers[points[i][0]]) for i in members)
            weight = "bold" if any(i in front for i in members) else "normal"
            axis.annotate(text, (xs[members[0]], ys[members[0]]), xytext=(6, 5), textcoords="offset points",
                          fontsize=9, fontweight=weight)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
        axis.set_title(f"mIoU vs {xlabel.split(' (')[0]}")
        axis.margins(x=0.12, y=0.12)
    axes[0].set_ylabel("mIoU (%)")
    key = "\n".join(f"{n}  {label}" for label, n in numbers.items())
    figure.text(1.0, 0.5, key, va="center", ha="left", fontsize=8, family="monospace")
    handles = [plt.Line2D([], [], marker="o", ls="", color="tab:blue", label="cell (number: see key)"),
               plt.Line2D([], [], marker="o", color="tab:red", mfc="none", label="Pareto front (bold numbers)")]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, -0.06))
    figure.suptitle(f"{title}: accuracy vs cost; up and to the left is better{machines_note(records)}")
    figure.tight_layout()
    return _save(figure, path)


def machines_note(records: list[Record]) -> str:
    """"" when the records' latencies were timed on one machine fingerprint, else a warning for a figure's title
    (merged results folders mix machines; their latencies do not compare)."""
    machines = {row["machine"] for row in map(record_row, records) if row.get("latency_ratio") is not None}
    if len(machines) <= 1:
        return ""
    return f"\nlatencies from {len(machines)} machines (cost CSV, column machine): compare only within one"


def deployment_figure(records: list[Record], path: Path, title: str) -> Path | None:
    """mIoU against batch-1 latency of every measured deployed form of every cell (eager fp32 included), one marker
    per runtime and precision, with the Pareto front over all of them."""
    points = []
    for record in records:
        forms = record.deployment.forms if record.deployment else []
        timed = [form.latency for form in forms if form.latency]
        for form in forms:
            if form.miou is None or not (form.latency or (form.status == "reference" and timed)):
                continue
            latency = (form.latency["batch_1"]["latency_ms_p50"] if form.latency
                       else timed[0]["batch_1"]["eager_latency_ms_p50"])
            points.append((_label(record), f"{form.runtime} {form.precision}", latency, form.miou * 100))
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(8, 5))
    kinds = list(dict.fromkeys(kind for _, kind, _, _ in points))
    markers = "osD^v<>PX*"
    for index, kind in enumerate(kinds):
        chosen = [p for p in points if p[1] == kind]
        axis.scatter([p[2] for p in chosen], [p[3] for p in chosen], marker=markers[index % len(markers)], s=40,
                     label=kind, zorder=3)
    xs, ys = [p[2] for p in points], [p[3] for p in points]
    front = pareto_front(xs, ys)
    axis.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="tab:red", drawstyle="steps-post", zorder=2,
              label="Pareto front")
    place_labels(figure, axis, [(points[i][0], xs[i], ys[i]) for i in front])
    axis.set(xlabel="latency p50 at batch 1 (ms)", ylabel="mIoU (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.suptitle(f"{title}: accuracy vs deployed latency; up and to the left is better{machines_note(records)}")
    figure.tight_layout()
    return _save(figure, path)


def _clusters(xs: list[float], ys: list[float], radius: float = 0.035) -> list[list[int]]:
    """Groups of points that would overlap on the plot (within `radius` of the axes' ranges), so that they get
    one label "2,3" instead of two labels printed over each other."""
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    groups: list[list[int]] = []
    for index in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        for group in groups:
            anchor = group[0]
            if abs(xs[index] - xs[anchor]) / span_x < radius and abs(ys[index] - ys[anchor]) / span_y < radius:
                group.append(index)
                break
        else:
            groups.append([index])
    return [sorted(group) for group in groups]


def per_class_heatmap(frame, path: Path, title: str) -> Path:
    """Heatmap of per-class IoU: classes (rows) x cells (columns); grey where the class is absent."""
    values = frame.to_numpy(dtype=float) * 100
    height = max(4.0, 0.32 * len(frame.index) + 2)
    width = max(6.0, 0.9 * len(frame.columns) + 3)
    figure, axis = plt.subplots(figsize=(width, height))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#cccccc")
    image = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    axis.set_yticks(range(len(frame.index)), labels=list(frame.index), fontsize=8)
    axis.set_xticks(range(len(frame.columns)), labels=list(frame.columns), fontsize=8, rotation=35, ha="right")
    if len(frame.columns) <= 14:
        for (row, column), value in np.ndenumerate(values):
            if not math.isnan(value):
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value < 60 else "black")
    figure.colorbar(image, ax=axis, label="IoU (%)", fraction=0.04)
    axis.set_title(f"{title}: per-class IoU (grey: class absent from ground truth and prediction)", fontsize=10)
    return _save(figure, path)


def iou_vs_share_figure(records: list[Record], best: Record, classes: list[str], path: Path,
                        title: str) -> Path:
    """IoU of each class against its share of ground-truth pixels (log scale): one point per class of the best
    cell, named; the other cells' points in grey."""
    figure, axis = plt.subplots(figsize=(9, 5.5))
    for record in records:
        if record is best:
            continue
        share, iou = _share_and_iou(record)
        axis.scatter(share, iou, s=12, color="0.75", zorder=1)
    share, iou = _share_and_iou(best)
    axis.scatter(share, iou, s=30, color="tab:blue", zorder=3, label=f"best cell: {_label(best)}")
    axis.set_xscale("log")
    axis.set_ylim(-3, 103)
    named = [(name, x, y) for name, x, y in zip(classes, share, iou, strict=False) if not math.isnan(y)]
    place_labels(figure, axis, sorted(named, key=lambda item: (item[1], item[2])))
    axis.scatter([], [], s=12, color="0.75", label="other cells")
    axis.set_xlabel("share of ground-truth pixels (log scale)")
    axis.set_ylabel("IoU (%)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(f"{title}: IoU vs class pixel share")
    return _save(figure, path)


def place_labels(figure: plt.Figure, axis: plt.Axes, items: list[tuple[str, float, float]], fontsize: int = 7) -> None:
    """Name each point (text, x, y) without two names overlapping: a name that would collide with one already placed
    moves up in steps, tied to its point by a thin leader line. Set the axis scales and limits first."""
    renderer = figure.canvas.get_renderer()
    placed = []
    for text, x, y in items:
        offset = 3
        for _ in range(60):
            label = axis.annotate(text, (x, y), xytext=(4, offset), textcoords="offset points", fontsize=fontsize)
            box = label.get_window_extent(renderer).expanded(1.05, 1.15)
            if not any(box.overlaps(other) for other in placed):
                break
            label.remove()
            offset += 6
        placed.append(box)
        if offset > 3:
            axis.annotate("", (x, y), xytext=(4, offset), textcoords="offset points",
                          arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.55", "shrinkA": 0, "shrinkB": 2})


def _share_and_iou(record: Record) -> tuple[np.ndarray, np.ndarray]:
    per_class = record.metrics.per_class if record.metrics else None
    share = np.array([math.nan if v is None else v for v in (per_class.gt_share if per_class else [])], dtype=float)
    iou = np.array([math.nan if v is None else v * 100 for v in (per_class.iou if per_class else [])], dtype=float)
    keep = share > 0  # classes absent from the ground truth have no place on a log axis
    return share[keep], iou[keep]


def training_curves_figure(records: list[Record], path: Path, title: str) -> Path:
    """Training loss and val mIoU per epoch, one line per cell."""
    figure, (loss_axis, miou_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.get_cmap("tab10" if len(records) <= 10 else "tab20")
    for index, record in enumerate(records):
        history = record.history or []
        colour = colours(index % colours.N)
        epochs = [h.epoch for h in history]
        loss_axis.plot(epochs, [h.train_loss for h in history], "-o", ms=4, color=colour, label=_label(record))
        evaluated = [h for h in history if h.val_miou is not None]
        miou_axis.plot([h.epoch for h in evaluated], [h.val_miou * 100 for h in evaluated], "-o", ms=4,
                       color=colour)
    loss_axis.set(xlabel="epoch", ylabel="training loss (mean over the epoch)", title="training loss")
    miou_axis.set(xlabel="epoch", ylabel="val mIoU (%)", title="val mIoU")
    last_epoch = max((h.epoch for r in records for h in r.history or []), default=1)
    for axis in (loss_axis, miou_axis):
        axis.grid(alpha=0.3)
        axis.set_xlim(0.5, last_epoch + 0.5)
        if last_epoch <= 15:
            axis.set_xticks(range(1, last_epoch + 1))
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, max(1, len(records))), fontsize=8)
    figure.suptitle(f"{title}: training curves")
    figure.tight_layout()
    return _save(figure, path)


def severity_figure(records: list[Record], path: Path, title: str) -> Path | None:
    """mIoU against corruption severity, one panel per corruption, one line per cell (severity 0: clean)."""
    corrupted = [record for record in records if record.corruptions and record.corruptions.results]
    if not corrupted:
        return None
    names = corrupted[0].corruptions.names
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10" if len(corrupted) <= 10 else "tab20")
    for axis, corruption in zip(axes.flat, names, strict=False):
        for index, record in enumerate(corrupted):
            part = record.corruptions
            points = [(0, part.clean_miou)] + [(r.severity, r.miou) for r in part.results if r.name == corruption]
            points = [(x, 100 * y) for x, y in points if y is not None]
            axis.plot(*zip(*points, strict=True), "-o", ms=3, color=colours(index % colours.N),
                      label=_label(record))
        axis.set(title=corruption.replace("_", " "), xlabel="severity (0: clean)")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(names):]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel("mIoU (%)")
    figure.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(4, len(corrupted)), fontsize=8)
    figure.suptitle(f"{title}: robustness to corruptions")
    figure.tight_layout()
    return _save(figure, path)


def reliability_figure(records: list[Record], path: Path, title: str) -> Path | None:
    """Reliability diagram: per confidence bin, pixel accuracy against mean confidence, one line per cell with a
    calibration part (None when no cell has one); the diagonal is perfect calibration."""
    calibrated = [record for record in records if record.calibration and record.calibration.bins]
    if not calibrated:
        return None
    figure, axis = plt.subplots(figsize=(6, 5.5))
    colours = plt.get_cmap("tab10" if len(calibrated) <= 10 else "tab20")
    axis.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    for index, record in enumerate(calibrated):
        filled = [b for b in record.calibration.bins if b.pixels and b.accuracy is not None]
        ece = record.calibration.ece
        axis.plot([b.confidence for b in filled], [b.accuracy for b in filled], "-o", ms=3,
                  color=colours(index % colours.N),
                  label=f"{_label(record)} (ECE {100 * ece:.1f} %)" if ece is not None else _label(record))
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean top-class confidence in the bin",
             ylabel="pixel accuracy in the bin", title=f"{title}: reliability (15 bins, val pixels)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def confusion_figure(record: Record, classes: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: ground truth) of one cell, with class names."""
    matrix = np.asarray(record.confusion_matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.full_like(matrix, np.nan), where=totals > 0)
    size = max(6.0, 0.42 * len(classes) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    cmap = plt.get_cmap("Blues").with_extremes(bad="#eeeeee")
    image = axis.imshow(np.ma.masked_invalid(normalised), cmap=cmap, vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), labels=classes, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(classes)), labels=classes, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("ground-truth class")
    if len(classes) <= 25:
        for (row, column), value in np.ndenumerate(normalised):
            if not math.isnan(value) and value >= 0.01:
                axis.text(column, row, f"{value:.2f}".lstrip("0"), ha="center", va="center", fontsize=6,
                          color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.04, label="share of the ground-truth row")
    axis.set_title(f"{title}: confusion matrix of {_label(record)}\n(row-normalised; grey rows: class absent "
                   "from the ground truth)", fontsize=10)
    return _save(figure, path)


def examples_figure(record: Record, cell_dir: Path, path: Path, title: str) -> Path | None:
    """image | ground truth | prediction | error map for the best and worst val images saved with the cell."""
    from PIL import Image

    examples = saved_examples(record, cell_dir)
    if not examples:
        return None
    first = np.asarray(Image.open(cell_dir / examples[0].image))
    aspect = first.shape[1] / first.shape[0]
    figure, axes = plt.subplots(len(examples), 4, figsize=(4 * 2.4 * min(aspect, 2.5), 2.5 * len(examples) + 0.8),
                                squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        for axis, panel in zip(row, example_panels(record, cell_dir, example), strict=True):
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        row[0].set_ylabel(f"{example.rank}\n{example.sample_id}\nacc {example.pixel_accuracy * 100:.1f}%", fontsize=8)
    for axis, name in zip(axes[0], EXAMPLE_PANELS, strict=True):
        axis.set_title(name, fontsize=10)
    legend = [Patch(color=np.array(CORRECT_COLOUR) / 255, label="correct"),
              Patch(color=np.array(WRONG_COLOUR) / 255, label="wrong"),
              Patch(color=np.array(IGNORE_COLOUR) / 255, label="ignored (void)")]
    figure.legend(handles=legend, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    figure.suptitle(f"{title}: {_label(record)}, best and worst val images by pixel accuracy", fontsize=10)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(figure, path)


EXAMPLE_PANELS = ("image", "ground truth", "prediction", "error map")


def saved_examples(record: Record, cell_dir: Path) -> list[Example]:
    """The record's example images whose three files are all in the cell's folder."""
    return [e for e in record.examples or [] if all((cell_dir / name).is_file() for name in (e.image, e.label, e.pred))]


def example_panels(record: Record, cell_dir: Path, example: Example) -> list[np.ndarray]:
    """One saved example as RGB panels (EXAMPLE_PANELS): the image, ground truth and prediction in the dataset's
    palette, and the error map."""
    from PIL import Image

    dataset = record.dataset or DatasetInfo(name="", classes=[])
    palette = dataset.palette or []
    ignore = 255 if dataset.ignore_index is None else dataset.ignore_index
    image = np.asarray(Image.open(cell_dir / example.image).convert("RGB"))
    label = np.asarray(Image.open(cell_dir / example.label))
    pred = np.asarray(Image.open(cell_dir / example.pred))
    return [image, colourise(label, palette, ignore), colourise(pred, palette, ignore), error_map(label, pred, ignore)]


def class_share_figure(path: Path, dataset: str, classes: tuple[str, ...], shares: dict[str, np.ndarray]) -> Path:
    """`segbench data stats --plot`: a horizontal bar chart of each class's share of the labelled pixels (%) per
    split (`shares`: split -> fractions [C]), written atomically as PNG."""
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.3 * len(classes)))
    height = 0.8 / max(len(shares), 1)
    positions = np.arange(len(classes))
    for offset, (split, values) in enumerate(shares.items()):
        axis.barh(positions + offset * height, np.asarray(values) * 100, height=height, label=split)
    axis.set_yticks(positions + height * (len(shares) - 1) / 2, classes)
    axis.invert_yaxis()
    axis.set_xlabel("share of labelled pixels (%)")
    axis.set_title(f"{dataset}: class pixel shares")
    axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def tuning_figure(trials: dict[str, list[tuple[dict[str, float], float]]], space: dict[str, dict[str, Any]],
                  path: Path) -> Path | None:
    """Holdout mIoU of every tuning trial against each tuned train key, one point cloud per configuration (its best
    trial circled); a log axis for a `log_uniform` key. trials: configuration label -> [(parameters, holdout mIoU)];
    space: train key -> its distribution ({log_uniform: [lo, hi]}, ...)."""
    keys = list(space)
    if not keys or not any(trials.values()):
        return None
    figure, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.5), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10" if len(trials) <= 10 else "tab20")
    for axis, key in zip(axes[0], keys, strict=True):
        for index, (label, points) in enumerate(trials.items()):
            shown = [(params[key], miou * 100) for params, miou in points if key in params]
            if not shown:
                continue
            colour = colours(index % colours.N)
            axis.scatter([x for x, _ in shown], [y for _, y in shown], s=30, color=colour, alpha=0.8,
                         label=label if key == keys[0] else None)
            best = max(shown, key=lambda point: point[1])
            axis.scatter([best[0]], [best[1]], s=140, facecolors="none", edgecolors=colour, linewidths=1.5)
        if "log_uniform" in space[key]:
            axis.set_xscale("log")
        axis.set(xlabel=key, title=f"holdout mIoU vs {key}")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("holdout mIoU (%)")
    figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, max(1, len(trials))), fontsize=8)
    figure.suptitle("Tuning trials (the best of each configuration circled)")
    figure.tight_layout()
    return _save(figure, path)
