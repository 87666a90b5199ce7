"""`segbench profile`: measure a model's cost (params, MACs, latency, memory) without training it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segbench.cli.common import err_console, parse_size, user_errors
from segbench.errors import ConfigError


@user_errors
def profile(
    model: str = typer.Option(..., "--model", "-m", help="Architecture, e.g. unet (`segbench list models`)."),
    encoder: str = typer.Option("resnet34", "--encoder", "-e", help="Encoder, e.g. resnet34 or tu-<timm model>."),
    classes: int = typer.Option(19, "--classes", min=1, help="Output classes."),
    size: str = typer.Option("512x1024", "--size", help="Input HEIGHTxWIDTH (padded to the model's multiple)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Batch size for throughput and memory (latency also at 1)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    budget: float | None = typer.Option(None, "--budget", min=0, help="Seconds for latency timing, both batch sizes "
                                        "together (default: measure.budget_s's); 0 runs exactly --warmup/--iters."),
    warmup: int | None = typer.Option(None, "--warmup", min=1, help="Untimed warm-up iterations, at least "
                                      "(default: measure.warmup's)."),
    iters: int | None = typer.Option(None, "--iters", min=1, help="Timed iterations per batch size, at least "
                                     "(default: measure.iters's)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads while timing (default: torch's)."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on a GPU with bfloat16, else fp32), fp32, "
                                  "bf16 or fp16: the autocast dtype, as train.precision in grids."),
    macs: bool = typer.Option(True, "--macs/--no-macs", help="Count MACs with fvcore."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory of a training step and an "
                                "inference batch (a fresh process on the CPU)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the measurements to this JSON file."),
) -> None:
    """Measure one model at one input size, randomly initialised: nothing is trained or downloaded."""
    import torch

    from segbench.atomic import atomic_write_json
    from segbench.datasets.transforms import padded_size
    from segbench.devices import PRECISIONS, resolve_device, resolve_precision
    from segbench.grid.schema import MeasureConfig
    from segbench.measure import measure_model
    from segbench.models import MODELS, build_model

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'.")
    requested = parse_size(size)
    height, width = padded_size(requested, MODELS.get(model).pad_multiple)
    # Options left out keep MeasureConfig's defaults, the grid's, so profile and a grid cell measure alike.
    counts = {key: value for key, value in {"warmup": warmup, "iters": iters, "budget_s": budget}.items()
              if value is not None}
    if budget == 0:
        counts["budget_s"] = None
    settings = MeasureConfig(batch_size=batch, macs=macs, memory=memory, threads=threads, **counts)
    torch_device = torch.device(resolve_device(device))
    network = build_model(model, encoder=encoder, classes=classes)
    cost = measure_model(network, (3, height, width), torch_device, settings,
                         precision=resolve_precision(precision, torch_device),
                         progress=lambda line: err_console.print(f"[dim]profile:[/] {line}", highlight=False,
                                                                 soft_wrap=True))
    result = {"model": model, "encoder": encoder, "classes": classes, "requested_size": list(requested),
              "device": str(torch_device), "cost": cost}
    print_profile(Console(), result)
    if json_path is not None:
        atomic_write_json(json_path, result)


def print_profile(console: Console, result: dict) -> None:
    cost = result["cost"]
    params, macs = cost["params"], cost.get("macs") or {}
    latency = cost["latency"]
    table = Table(title=f"{result['model']} / {result['encoder']}, {result['classes']} classes, input "
                        f"{'x'.join(map(str, cost['input_shape']))} on {latency['conditions']['device']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("params total / encoder / decoder",
         " / ".join(f"{v / 1e6:.2f} M" if v is not None else "-"
                    for v in (params["total"], params["encoder"], params["decoder"]))),
        ("GMACs (fvcore, batch 1) / GFLOPs", f"{macs['gmacs']:.2f} / {macs['gflops']:.2f}" if "gmacs" in macs
         else macs.get("error", "not counted")),
        ("ops fvcore skipped", ", ".join(f"{k} x{v}" for k, v in (macs.get("unsupported_ops") or {}).items()) or "-"),
    ]
    for key in ("batch_1", "batch_n"):
        stats = latency[key]
        rows.append((f"latency batch {stats['batch_size']}: p50 / p90 / mean +- std "
                     f"(ms, n={stats['n']} after {stats['warmup']} warm-up)",
                     f"{stats['latency_ms_p50']:.2f} / {stats['latency_ms_p90']:.2f} / "
                     f"{stats['latency_ms_mean']:.2f} +- {stats['latency_ms_std']:.2f}"))
        rows.append((f"throughput batch {stats['batch_size']} (images/s)", f"{stats['throughput_images_per_s']:.1f}"))
    rows.append(("reference workload p50 (ms)", f"{latency['reference']['latency_ms_p50']:.2f}"))
    budget = latency["conditions"]["budget_s"]
    rows.append(("latency timing: budget / spent (s)",
                 f"{'none' if budget is None else f'{budget:g}'} / {latency['conditions']['timing_s']:.1f}"))
    stability = latency["stability"]
    rows.append(("latency ratio (model / ResNet-18 reference, median of per-iteration ratios)",
                 f"{latency['latency_ratio']:.3f}"))
    ratios = " / ".join(f"{row['latency_ratio']:.3f}" for row in stability["rounds"])
    rows.append(("timing rounds' ratios (spread: largest / smallest - 1)",
                 f"{ratios} ({stability['spread'] * 100:.1f} %)"))
    conditions = latency["conditions"]
    rows.append(("machine fingerprint (latency is gated only between equal ones)",
                 f"{conditions['machine']['id']}: {conditions['machine']['label']}"))
    rows.append(("conditions", f"{conditions['threads']} threads, precision {conditions['precision']}, "
                               f"cudnn.benchmark {conditions['cudnn_benchmark']}"))
    memory = cost.get("memory") or {}
    for phase in ("train_step", "inference"):
        measured = memory.get(phase) or {}
        if measured:
            value = measured.get("peak_allocated_bytes", measured.get("increase_bytes"))
            shape = "x".join(map(str, measured["input_shape"]))
            text = measured["error"] if "error" in measured else f"{value / 2**20:,.0f} MiB"
            rows.append((f"peak memory {phase.replace('_', ' ')} ({shape})", text))
    if memory.get("estimate"):
        rows.append(("torchinfo forward/backward size (estimate)",
                     f"{memory['estimate']['forward_backward_bytes'] / 2**20:,.0f} MiB"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if memory.get("method"):
        console.print(f"memory: {memory['method']}")
