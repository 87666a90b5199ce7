"""The fresh process of a CPU memory measurement: `python -m segbench.measure.probe TASK_JSON`.

Started by segbench.measure.memory.cpu_peak_memory with a task {model: path of a pickled model, phases: {name:
input shape [B, C, H, W]}, optimizer, threads}; prints one JSON line {phase: resident-set peak and baseline}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from segbench.measure.memory import inference_phase, rss_peak_of, train_step_phase


def probe_memory(task: dict[str, Any]) -> dict[str, Any]:
    """Run each phase of `task` in this process, one after the other, and return its resident-set peak."""
    torch.set_num_threads(int(task["threads"]))
    model = torch.load(task["model"], weights_only=False)  # written a moment ago by cpu_peak_memory
    device = torch.device("cpu")
    measured = {}
    for name, shape in task["phases"].items():
        if name == "inference":
            run = inference_phase(model, tuple(shape), device, None)
        else:
            run = train_step_phase(model, tuple(shape), device, None, task["optimizer"])
        measured[name] = rss_peak_of(run)
        del run
    return measured


if __name__ == "__main__":
    sys.stdout.write(json.dumps(probe_memory(json.loads(sys.argv[1]))) + "\n")
