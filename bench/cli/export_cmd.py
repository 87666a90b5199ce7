"""`segbench export onnx CELL_DIR --out DIR`: a trained cell as a deployable model file, with its parity figures.
`segbench export mlflow RESULTS`: a results folder's records as MLflow runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segbench.cli.common import err_console, user_errors
from segbench.cli.data_cmd import CACHE_OPTION

app = typer.Typer(help="Export a trained cell for deployment, or a results folder to MLflow.", no_args_is_help=True)


@app.command("onnx")
@user_errors
def onnx(
    cell_dir: Path = typer.Argument(..., help="A cell folder of a results folder (<results>/cells/<cell id>)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: model.onnx, model.int8.onnx, export.json."),
    int8: bool = typer.Option(False, "--int8", help="Also quantize to INT8 (static, QDQ): model.int8.onnx."),
    calibration_images: int | None = typer.Option(
        None, "--calibration-images", help="Training images calibrating INT8, chosen by the cell's seed "
                                           "(default: the cell's measure.int8_calibration_images)."),
    device: str = typer.Option("cpu", "--device", help="Where the eager model runs for the export and the parity "
                                                       "check: cpu, cuda or auto."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in --out."),
    cache_dir: Path | None = CACHE_OPTION,
) -> None:
    """Export the cell's selected weights to ONNX as the benchmark measures them, and check them on its split.

    Each exported model runs through ONNX Runtime on the cell's evaluated split under its inference protocol, beside
    the eager model; export.json holds the model's input, the preprocessing, the classes and palette and, per model,
    its mIoU, pixel accuracy and agreement with eager fp32.
    """
    from segbench.predict import EXPORT_FILE, export_cell

    with err_console.status("exporting and checking parity", spinner="dots"):
        result = export_cell(cell_dir, out, int8, calibration_images, device, force, cache_dir)
    manifest = result.manifest
    table = Table(title=f"{manifest['cell_id']}: {manifest['evaluated_on']['split']} split, "
                        f"{manifest['evaluated_on']['images']} images, {manifest['protocol']}")
    for column in ("model", "mIoU", "pixel accuracy", "agreement with eager", "max |diff|"):
        table.add_column(column, justify="left" if column == "model" else "right")
    eager = manifest["eager"]
    table.add_row("eager PyTorch fp32", f"{eager['miou']:.4f}", f"{eager['pixel_accuracy']:.4f}", "", "")
    for model in manifest["models"]:
        table.add_row(model["file"], f"{model['miou']:.4f}", f"{model['pixel_accuracy']:.4f}",
                      f"{model['agreement']:.4%}" if model["agreement"] is not None else "n/a",
                      f"{model['max_abs_diff']:.2e}")
    Console().print(table)
    written = ", ".join(str(result.out / model["file"]) for model in manifest["models"])
    err_console.print(f"{written} (opset {manifest['opset']}, input {manifest['input']['shape']}); "
                      f"preprocessing and figures in {result.out / EXPORT_FILE}")


@app.command("mlflow")
@user_errors
def mlflow(
    results: Path = typer.Argument(..., help="Results folder of a `segbench run` (holds cells/)."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking store: sqlite:///PATH, http(s)://SERVER (default: "
                                     "sqlite:///RESULTS/mlflow.db, absolute, with artifacts in RESULTS/mlartifacts)."),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment (default: the grid's name in RESULTS/grids/, else the "
                                   "folder's name); created when missing."),
) -> None:
    """Log every cell of RESULTS as one MLflow run: configuration as parameters, summary metrics, the per-epoch
    history as stepped metrics, identity and status as tags, record.json and examples/ as artifacts (the report
    folder, when RESULTS has one, as one more run). Exporting again updates the same runs, found by their cell_id
    tag; nothing is trained or measured."""
    from segbench.analysis.mlflow_export import export_results

    with err_console.status("exporting to MLflow", spinner="dots"):
        result = export_results(results, tracking_uri, experiment)
    for message in [*result.unreadable, *result.notes]:
        err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    created = sum(run.created for run in result.runs)
    failed = sum(run.status != "FINISHED" for run in result.runs)
    target = result.target
    err_console.print(f"{len(result.runs)} cells exported to MLflow experiment '{target.experiment}' "
                      f"(id {target.experiment_id}) in {target.tracking_uri}: {created} runs created, "
                      f"{len(result.runs) - created} updated, {failed} not finished"
                      f"{', report in run ' + result.report_run if result.report_run else ''}.",
                      markup=False, highlight=False, soft_wrap=True)
    if not target.tracking_uri.startswith(("http://", "https://")):
        err_console.print(f"Open it with `mlflow ui --backend-store-uri {target.tracking_uri}` (needs the full "
                          "mlflow package, not mlflow-skinny).", markup=False, highlight=False, soft_wrap=True)
