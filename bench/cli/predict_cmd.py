"""`segbench predict CELL_DIR --input PATH --out DIR`: a trained cell on your own images, folders or video."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segbench.cli.common import err_console, user_errors


@user_errors
def predict(
    cell_dir: Path = typer.Argument(..., help="A cell folder of a results folder (<results>/cells/<cell id>)."),
    input_path: Path = typer.Option(..., "--input", "-i", help="An image, a folder of images (recursive) or a video."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: labels/, overlays/, the video, predict.json."),
    label_format: str = typer.Option(
        "trainids", "--format", "-f",
        help="trainids (class indices), labelids (the dataset's label-file values; Cityscapes label ids for "
             "Cityscapes-format cells) or color (RGB in the palette).",
    ),
    overlay: bool = typer.Option(False, "--overlay", help="Also write overlays/<name>.png with a legend."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the class colours in overlays, 0..1."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Frames per forward pass "
                                          "(default: the cell's eval.batch_size)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier prediction in --out."),
    runtime: str = typer.Option("torch", "--runtime", help="torch (the checkpoint, eager) or onnxruntime (the "
                                "cell's ONNX export on ONNX Runtime's CPU provider; needs the deploy extra)."),
    onnx: Path | None = typer.Option(None, "--onnx", help="The ONNX model for --runtime onnxruntime (default: "
                                     "CELL_DIR/model.onnx; `segbench export onnx CELL_DIR --out DIR` writes one)."),
) -> None:
    """Predict every image or video frame with the cell's checkpoint and its evaluation preprocessing.

    Writes a label PNG per image or frame, an overlay video for a video, and the per-frame timing split to
    predict.json. Outputs are written to a temporary folder that replaces --out only when every frame is done.
    """
    from segbench.predict import MANIFEST_FILE
    from segbench.predict import predict as run_predict
    from segbench.predict.timing import split_rows

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} frames"),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("predicting", total=None)
        result = run_predict(cell_dir, input_path, out, label_format, overlay, alpha, batch_size, device, force,
                             lambda done: progress.update(task, completed=done), runtime, onnx)
    manifest = result.manifest
    timing = manifest["timing"]
    console = Console()
    runtime = "" if manifest["runtime"] == "torch" else f" ({manifest['runtime']})"
    table = Table(title=f"{manifest['cell_id']} on {manifest['device']}{runtime}, batch {manifest['batch_size']}: "
                        f"{result.frames} frames")
    for column in ("stage", "ms/frame (mean)", "ms/frame (median)", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in split_rows(timing):
        table.add_row(*row)
    console.print(table)
    console.print(f"end to end {_fps(timing['end_to_end_fps'])} frames/s, model only {_fps(timing['model_fps'])} "
                  "frames/s (model loading and one warm-up batch not counted)")
    written = f"{result.frames} label PNGs ({label_format}) in {result.out / manifest['labels']}"
    if manifest["overlays"]:
        written += f", overlays in {result.out / manifest['overlays']}"
    if result.video is not None:
        written += f", overlay video {result.video}"
    err_console.print(f"{written}; timing in {result.out / MANIFEST_FILE}")


def _fps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
