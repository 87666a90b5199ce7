"""The per-frame timing split of `segbench predict`: where each frame's time goes.

Stages (seconds per frame, measured with `time.perf_counter`):
- decode: reading the file and decoding the image or video frame to RGB;
- preprocess: the cell's evaluation transform (resize, normalise, pad), batching and the copy to the device;
- model: the forward pass, synchronised on CUDA before and after, so it holds the device's work and nothing else;
- postprocess: argmax, the copy to the CPU, cropping the padding, resizing back, the output encoding and overlays;
- write: PNG encoding and file writes, and the overlay video's encoding.

Work done once per batch (the copy to the device, the forward pass, argmax) is shared equally by the batch's frames.
End-to-end frames/s = frames / the sum of all stages; model-only frames/s = frames / the model stage. Loading the
model and one untimed warm-up pass of the first batch (cuDNN autotuning, lazy initialisation) are not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STAGES = ("decode", "preprocess", "model", "postprocess", "write")

FrameTimes = dict[str, float]  # stage -> seconds spent on one frame


class TimingSplit:
    """One FrameTimes row per frame, in input order."""

    def __init__(self) -> None:
        self.rows: list[FrameTimes] = []

    def new_frame(self) -> FrameTimes:
        row = dict.fromkeys(STAGES, 0.0)
        self.rows.append(row)
        return row

    @staticmethod
    def share(rows: list[FrameTimes], stage: str, seconds: float) -> None:
        """One batch's `seconds` of `stage`, split equally over the frames of the batch."""
        for row in rows:
            row[stage] += seconds / len(rows)

    def summary(self) -> dict[str, Any]:
        """Raw numbers: per stage the total (s), mean and median per frame (ms); frames/s end to end and model only."""
        frames = len(self.rows)
        stages = {}
        for stage in STAGES:
            values = np.asarray([row[stage] for row in self.rows], dtype=np.float64)
            stages[stage] = {
                "total_s": float(values.sum()),
                "mean_ms": float(values.mean() * 1e3) if frames else None,
                "p50_ms": float(np.median(values) * 1e3) if frames else None,
            }
        total = sum(stage["total_s"] for stage in stages.values())
        model = stages["model"]["total_s"]
        return {
            "frames": frames,
            "stages": stages,
            "total_s": total,
            "end_to_end_fps": frames / total if total > 0 else None,
            "model_fps": frames / model if model > 0 else None,
        }


def split_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(stage, mean ms/frame, median ms/frame, share of the time) for a terminal table, end to end last."""
    total = summary["total_s"]
    rows = []
    for stage, values in summary["stages"].items():
        share = f"{100 * values['total_s'] / total:.1f}%" if total > 0 else "n/a"
        rows.append((stage, _ms(values["mean_ms"]), _ms(values["p50_ms"]), share))
    mean_total = total / summary["frames"] * 1e3 if summary["frames"] else None
    rows.append(("end to end", _ms(mean_total), "", "100%"))
    return rows


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
