"""`make gpu-check`: train grids/gpu-check.yaml on a CUDA GPU and check what the records say (never part of make test).

Runs the grid (UNet-ResNet34 and FPN-ResNeXt50 at 512x1024 crops, bf16 + channels_last), then the same grid for one
fp16 and one fp32 UNet-ResNet34 cell, then measures the bf16 UNet cell's deployment cost (DEPLOY: torch.compile and
ONNX Runtime, nothing retrained; each form ok or skipped with its reason, fp32/bf16 forms agreeing with eager fp32 on
at least MIN_AGREEMENT of the pixels); checks that every record is ok, that each recorded batch-1 and batch-N latency
is within 5% of CUDA-event timing of the same trained model under the same conditions, and that peak memory is
non-zero; prints step time, images/s, achieved TFLOP/s and MFU per cell. Exit 0 when every check passes, 1 when one
fails, 2 when there is no CUDA GPU or no segbench to run.

On a machine without package registries (the lent GPU machine), `--wheels DIR` first installs the wheels that
`make gpu-wheels` gathered into `--site DIR` (pip --target, put on PYTHONPATH for this process and the workers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "grids" / "gpu-check.yaml"
UNET_ONLY = ["models=[unet]", "encoders=[resnet34]"]
RUNS: dict[str, list[str]] = {
    "bf16": [],
    "fp16": ["train.precision=fp16", *UNET_ONLY],
    "fp32": ["train.precision=fp32", "train.channels_last=false", *UNET_ONLY],
}
# Deployment cost (issue 23), measured on the bf16 run's trained UNet cell without training it again: eager autocast,
# torch.compile (CUDA graphs) in fp32, bf16 and fp16, and ONNX Runtime (its CUDA provider where onnxruntime-gpu is
# installed; else the record says it fell back to the host CPU, and fp16 is skipped with the reason).
DEPLOY = [*UNET_ONLY, "measure.runtimes=[torch,torch-compile,onnxruntime]", "measure.precisions=[fp32,bf16,fp16]"]
LATENCY_TOLERANCE = 0.05
MIN_AGREEMENT = 0.99  # share of pixels a deployed fp32 or bf16 form predicts as eager fp32 does, at least
TIME_LIMIT_S = 10 * 60


def fail(message: str) -> NoReturn:
    print(f"gpu-check: {message}", file=sys.stderr)
    sys.exit(2)


def install_wheels(wheels: Path, site: Path) -> None:
    """pip install --no-index --no-deps every wheel of `wheels` into `site`, and put `site` first on the path."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        fail(f"{wheels} holds no wheels; run `make gpu-wheels` where PyPI is reachable and bring the folder along.")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)], check=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def run_grid(label: str, overrides: list[str], results: Path, force: bool = True) -> None:
    """force: train afresh (a check); without, finished cells are evaluated again with new settings only."""
    command = [sys.executable, "-m", "segbench", "run", str(GRID), "--results", str(results / label),
               "--device", "cuda", "--cache-dir", str(results / "data"), *(["--force"] if force else [])]
    for override in overrides:
        command += ["-o", override]
    print(f"\n== {label}: segbench run {GRID.name} {' '.join(overrides)}", flush=True)
    subprocess.run(command, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def event_latency_s(model, example, autocast_dtype: str | None, warmup: int, iters: int) -> list[float]:
    """Per-iteration forward times (s) from CUDA events, one iteration at a time as segbench times them."""
    import torch

    from segbench.devices import autocast_context

    device = example.device
    times = []
    with torch.inference_mode(), autocast_context(device, autocast_dtype):
        for _ in range(warmup):
            model(example)
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(example)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    return times


def compare_latency(record: dict[str, Any], cell_dir: Path) -> tuple[dict[str, float], list[str]]:
    """Event-timed p50 (ms) of the cell's trained model at batch 1 and N, and the problems found against the record."""
    import torch

    from segbench.measure.latency import model_memory_format
    from segbench.models import build_model
    from segbench.records.cells import checkpoint_path

    latency = record["cost"]["latency"]
    conditions = latency["conditions"]
    model = build_model(record["config"]["model"], encoder=record["config"]["encoder"],
                        classes=len(record["dataset"]["classes"]))
    model.load_state_dict(torch.load(checkpoint_path(cell_dir), map_location="cpu", weights_only=True))
    memory_format = torch.channels_last if conditions["memory_format"] == "channels_last" else torch.contiguous_format
    model = model.cuda().to(memory_format=memory_format).eval()
    torch.set_num_threads(conditions["threads"])
    torch.backends.cudnn.benchmark = conditions["cudnn_benchmark"]
    assert model_memory_format(model) == memory_format
    measured, problems = {}, []
    for key in ("batch_1", "batch_n"):
        stats = latency[key]
        example = torch.randn(stats["input_shape"], device="cuda").contiguous(memory_format=memory_format)
        warmup = stats.get("warmup", conditions.get("warmup", 10))  # per phase since the time budget, else shared
        times = event_latency_s(model, example, conditions["autocast"], warmup, stats["n"])
        events_ms = statistics.median(times) * 1e3
        measured[key] = events_ms
        difference = abs(stats["latency_ms_p50"] - events_ms) / events_ms
        if difference > LATENCY_TOLERANCE:
            problems.append(f"{key} latency p50 {stats['latency_ms_p50']:.3f} ms recorded vs {events_ms:.3f} ms from "
                            f"CUDA events: {difference:.1%} apart, more than {LATENCY_TOLERANCE:.0%}")
    return measured, problems


def check_memory(record: dict[str, Any]) -> list[str]:
    memory = record["cost"].get("memory") or {}
    problems = []
    for phase in ("train_step", "inference"):
        peak = (memory.get(phase) or {}).get("peak_allocated_bytes") or 0
        if peak <= 0:
            problems.append(f"peak memory of {phase} is {peak} bytes ({(memory.get(phase) or {}).get('error', '')})")
    return problems


def check_results(results: Path) -> tuple[list[list[str]], list[str]]:
    """One table row per cell of every run, and every problem found (cell id first)."""
    from segbench.records.paths import cell_dir
    from segbench.records.store import load_records

    rows, problems = [], []
    for label in RUNS:
        loaded = load_records(results / label)
        problems += [f"{label}: {message}" for message in loaded.unreadable]
        if not loaded.records:
            problems.append(f"{label}: no record was written")
        for record in (typed.to_json() for typed in loaded.records):
            name = f"{label}/{record['cell_id']}"
            if record["status"] != "ok":
                problems.append(f"{name}: status {record['status']}: {(record.get('error') or {}).get('message')}")
                continue
            measured, found = compare_latency(record, cell_dir(results / label, record["cell_id"]))
            problems += [f"{name}: {problem}" for problem in found + check_memory(record)]
            rows.append(table_row(record, measured))
    return rows, problems


def table_row(record: dict[str, Any], measured: dict[str, float]) -> list[str]:
    timing, throughput, precision = record["timing"], record["throughput"], record["precision"]
    latency = record["cost"]["latency"]
    scaler = precision.get("grad_scaler") or {}
    memory = (record["cost"].get("memory") or {}).get("train_step") or {}
    return [
        record["slug"],
        f"{precision['used']}{' +cl' if precision['channels_last'] else ''}",
        f"{timing['train_step_s_median'] * 1e3:.1f}",
        f"{timing['train_images_per_s']:.1f}",
        f"{(throughput['train_flops_per_s'] or 0) / 1e12:.1f}",
        f"{throughput['mfu']:.1%}" if throughput["mfu"] is not None else "-",
        f"{timing['first_steps_s']:.2f}" if timing.get("first_steps_s") is not None else "-",
        f"{latency['batch_1']['latency_ms_p50']:.2f}/{measured['batch_1']:.2f}",
        f"{latency['batch_n']['latency_ms_p50']:.1f}/{measured['batch_n']:.1f}",
        f"{memory.get('peak_allocated_bytes', 0) / 2**30:.1f}",
        str(scaler.get("skipped_steps", "-")),
    ]


def check_deployment(results: Path) -> tuple[list[list[str]], list[str]]:
    """One row per deployed form of the bf16 run's records, and the problems: a form that failed, a record without
    deployment, an fp32 or bf16 form predicting fewer than MIN_AGREEMENT of the pixels as eager fp32 does."""
    from segbench.records.store import load_records

    rows, problems = [], []
    for record in (typed.to_json() for typed in load_records(results / "bf16").records):
        deployment = record.get("deployment")
        if record["config"]["model"] != "unet":
            continue
        if not deployment:
            problems.append(f"deploy/{record['cell_id']}: no deployment part in the record")
            continue
        for form in deployment["forms"]:
            name, latency = f"{form['runtime']} {form['precision']}", (form.get("latency") or {}).get("batch_1", {})
            rows.append([record["slug"], name, form["status"], f"{latency.get('latency_ms_p50', 0):.2f}",
                         f"{latency.get('ratio_to_eager', 0):.2f}", f"{(form.get('agreement') or 0):.4f}",
                         ",".join(form.get("providers") or []) or "-", form.get("reason") or ""])
            if form["status"] == "failed":
                problems.append(f"deploy/{record['cell_id']}: {name} failed: {form.get('reason')}")
            elif (form["status"] == "ok" and form["precision"] in ("fp32", "bf16")
                  and (form.get("agreement") or 0) < MIN_AGREEMENT):
                problems.append(f"deploy/{record['cell_id']}: {name} predicts {form.get('agreement'):.4f} of the "
                                f"pixels as eager fp32, fewer than {MIN_AGREEMENT}")
    return rows, problems


DEPLOY_HEADER = ["cell", "form", "status", "lat b1 ms", "/ eager", "agreement", "providers", "reason"]


HEADER = ["cell", "precision", "step ms", "img/s", "TFLOP/s", "MFU", "first steps s", "lat b1 ms rec/ev",
          "lat bN ms rec/ev", "train GiB", "skipped"]


def print_table(rows: list[list[str]], header: list[str] = HEADER) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)))


def describe_gpu(results: Path) -> str:
    records = sorted((results / "bf16" / "cells").glob("*/record.json"))
    if not records:
        return "no record to read the environment from"
    env = json.loads(records[0].read_text())["environment"]
    device = env["device"]
    return (f"{device.get('name')}, torch {env['packages'].get('torch')}, CUDA {device.get('cuda')}, cuDNN "
            f"{device.get('cudnn')}, TF32 {device.get('tf32')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "runs" / "gpu-check")
    parser.add_argument("--wheels", type=Path, help="install these wheels first (see make gpu-wheels)")
    parser.add_argument("--site", type=Path, default=ROOT / ".gpu-site", help="where --wheels are installed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed for this Python; run make gpu-check with the Python that has PyTorch.")
    if not torch.cuda.is_available():
        fail("PyTorch sees no CUDA GPU here; make gpu-check runs only on a machine with an NVIDIA GPU.")
    if args.wheels is not None:
        if not args.wheels.is_dir():
            fail(f"{args.wheels} does not exist; run `make gpu-wheels` where PyPI is reachable and bring it along.")
        install_wheels(args.wheels, args.site.resolve())
    try:
        import segbench  # noqa: F401
    except ImportError as exc:
        fail(f"segbench cannot be imported ({exc}); pass --wheels .gpu-wheels or install segbench first.")
    for label, overrides in RUNS.items():
        run_grid(label, overrides, args.results)
    rows, problems = check_results(args.results)
    run_grid("bf16", DEPLOY, args.results, force=False)  # the trained UNet cell measured deployed, not retrained
    deploy_rows, deploy_problems = check_deployment(args.results)
    problems += deploy_problems
    elapsed = time.perf_counter() - started
    print(f"\n== gpu-check on {describe_gpu(args.results)}")
    print_table(rows)
    print("\ndeployment (measure.runtimes x measure.precisions) of the bf16 run's UNet cell, nothing retrained:")
    print_table(deploy_rows, DEPLOY_HEADER)
    print(f"latency: recorded p50 vs CUDA-event p50 of the same trained model (tolerance {LATENCY_TOLERANCE:.0%}); "
          f"MFU against the dense peak of segbench.measure.throughput; {elapsed:.0f} s in all "
          f"(limit {TIME_LIMIT_S} s)")
    if elapsed > TIME_LIMIT_S:
        problems.append(f"the check took {elapsed:.0f} s, more than {TIME_LIMIT_S} s")
    for problem in problems:
        print(f"FAILED {problem}")
    print("gpu-check passed" if not problems else f"gpu-check failed: {len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
