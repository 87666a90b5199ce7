"""Leaderboards from a small set of records: the terminal one (`segbench run`) and the report's table."""

from __future__ import annotations

from rich.console import Console

from segbench.analysis.leaderboard import print_leaderboard
from segbench.analysis.tables import LEADERBOARD, LEADERBOARD_CSV, leaderboard_frame, leaderboard_shown, markdown_table

from support import records


def record(model: str, miou: float | None, seed: int = 0, dataset: str = "synthetic", params: int = 2_000_000,
           status: str = "ok", intervals: bool = False) -> dict:
    """A record of `model` (ResNet-18, cross-entropy) trained for 12.34 s; without the mIoU interval unless asked
    (records from before intervals); a failed one ran out of memory."""
    return records.record(f"{model}__resnet18__ce__{dataset}__s{seed}", miou=miou, params=params, status=status,
                          error_kind="oom", error_message="CUDA out of memory", train_time_s=12.34,
                          intervals=intervals)


RECORDS = [record("unet", 0.41), record("fpn", 0.52, params=1_000_000), record("pspnet", None, status="failed"),
           record("linknet", 0.47)]


def printed(records: list[dict], width: int = 80) -> list[str]:
    console = Console(width=width, record=True)
    print_leaderboard(console, records, title="tiny")
    return [line.rstrip() for line in console.export_text().splitlines() if line.strip()]


def test_terminal_leaderboard_columns_order_and_failures():
    lines = printed(RECORDS)
    assert all(len(line) <= 80 for line in lines)
    header = lines[1].split()
    assert header == ["model", "encoder", "loss", "status", "mIoU", "pix.acc", "microIoU", "Mparams", "train", "s"]
    body = [line.split() for line in lines[3:7]]
    assert [row[0] for row in body] == ["fpn", "linknet", "unet", "pspnet"]  # best mIoU first, failed last
    fpn = RECORDS[1]["metrics"]
    assert body[0] == ["fpn", "resnet18", "ce", "ok", "52.00", f"{100 * fpn['pixel_accuracy']:.2f}",
                       f"{100 * fpn['micro_iou']:.2f}", "1.00", "12.3"]
    assert body[3][3:] == ["failed", "-", "-", "-", "-", "-"]  # a failed cell has no metrics, cost or timing
    assert "mIoU, pix.acc, microIoU in %" in [line.strip() for line in lines]
    assert lines[-1] == "pspnet__resnet18__ce__synthetic__s0: failed (oom): CUDA out of memory"


def test_dataset_and_seed_are_shown_only_when_they_vary():
    varying = [record("unet", 0.4, seed=0), record("unet", 0.5, seed=1, dataset="camvid")]
    header = printed(varying, width=120)[1].split()
    assert header[:6] == ["model", "encoder", "loss", "data", "seed", "status"]


def test_report_leaderboard_is_ranked_with_raw_numbers_and_marks_the_best():
    frame = leaderboard_frame(RECORDS)
    assert list(frame.columns) == list(LEADERBOARD_CSV)
    assert list(frame["cell"]) == ["fpn/resnet18/ce/s0", "linknet/resnet18/ce/s0", "unet/resnet18/ce/s0",
                                   "pspnet/resnet18/ce/s0"]
    assert frame["miou"].iloc[0] == 0.52 and frame["params"].iloc[0] == 1_000_000  # raw units
    assert frame["miou_ci_low"].isna().all()  # these records predate intervals
    table = markdown_table(leaderboard_shown(frame), LEADERBOARD).splitlines()
    assert table[0].startswith("| cell | mIoU % | mIoU 95 % CI (val images) | pixel acc % |")
    fpn = table[2].split(" | ")
    assert fpn[1] == "**52.00**" and fpn[2] == "-" and fpn[8] == "**1.00**"  # highest mIoU, fewest parameters
    assert fpn[6] == fpn[7] == "-"  # these records predate boundary IoU and ECE


def test_the_markdown_leaderboard_joins_the_miou_interval():
    with_interval = record("fpn", 0.52, intervals=True)
    interval = with_interval["intervals"]["miou"]
    assert interval["low"] < interval["high"]  # per-image counts that differ: an interval of some width
    frame = leaderboard_frame([with_interval])
    assert (frame["miou_ci_low"].iloc[0], frame["miou_ci_high"].iloc[0]) == (interval["low"], interval["high"])
    assert leaderboard_shown(frame)["miou_ci"].iloc[0] == f"[{100 * interval['low']:.2f}, {100 * interval['high']:.2f}]"
