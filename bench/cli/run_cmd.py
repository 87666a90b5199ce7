"""`segbench run GRID`: train and evaluate every cell of a grid."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segbench.cli.common import err_console, user_errors


@user_errors
def run(
    grid_file: Path = typer.Argument(..., help="Grid YAML file, e.g. grids/quickstart.yaml."),
    results: Path = typer.Option(Path("runs/results"), "--results", "-r", help="Results folder (created if missing)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    parallel: int | None = typer.Option(
        None, "--parallel", "-j", help="Cells in flight at once: one GPU each on CUDA (default: every visible GPU); "
        "on the CPU the cores are split between them (default: 1). On a Ray cluster: at most this many (default: "
        "as many as the cluster holds)."),
    force: bool = typer.Option(False, "--force", help="Rerun cells that already have a finished record."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun cells that failed before."),
    oom_retry: bool = typer.Option(False, "--oom-retry", help="After out-of-memory, retry at half the batch size."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells (and the skipped ones) without training."),
    override: list[str] = typer.Option([], "--override", "-o", help="key.path=value, e.g. -o train.epochs=1."),
    cache_dir: Path | None = typer.Option(None, help="Dataset cache (default: $SEGBENCH_CACHE or ~/.cache/segbench)."),
    executor: str = typer.Option("local", "--executor", help="local: worker processes on this host; ray: Ray tasks "
                                 "on a cluster (pip install 'segbench\\[ray]')."),
    address: str | None = typer.Option(
        None, "--address", help="With --executor ray: the cluster to join, HOST:PORT or auto (the cluster this host "
        "belongs to); default: $RAY_ADDRESS if set, else start a local Ray instance."),
    cpus_per_cell: int | None = typer.Option(
        None, "--cpus-per-cell", help="With --executor ray: CPUs (torch threads) per cell; default: as the local "
        "executor on a local instance; on a cluster, a GPU's share of a node on CUDA, the smallest node on the CPU."),
    tensorboard: Path | None = typer.Option(
        None, "--tensorboard", help="Write TensorBoard logs here (one run per cell: loss, lr, val mIoU, per-class IoU, "
        "example predictions); needs pip install 'segbench\\[tensorboard]'. Not part of any cell's hash."),
    mlflow: str | None = typer.Option(
        None, "--mlflow", help="Log each cell to this MLflow tracking URI as it finishes (as segbench export mlflow "
        "does; `default`: sqlite:///RESULTS/mlflow.db); needs pip install 'segbench\\[mlflow]'."),
    experiment: str | None = typer.Option(None, "--experiment", help="With --mlflow: the MLflow experiment "
                                          "(default: the grid's name)."),
) -> None:
    """Train and evaluate every cell of GRID_FILE; finished cells are skipped, so an interrupted run resumes."""
    if experiment is not None and mlflow is None:
        from segbench.errors import ConfigError

        raise ConfigError("--experiment names the MLflow experiment of --mlflow; add --mlflow URI (or --mlflow "
                          "default) or leave --experiment out.")
    if executor == "local" and not dry_run:
        from segbench.execution.local import prestart_worker_server

        prestart_worker_server(device)  # first: its imports overlap with ours
    from segbench.analysis.leaderboard import print_leaderboard
    from segbench.execution.choose import ExecutorChoice
    from segbench.execution.runner import run_grid
    from segbench.grid.cells import expand
    from segbench.grid.load import load_grid

    choice = ExecutorChoice(executor, parallel=parallel, address=address, cpus_per_cell=cpus_per_cell)
    grid = load_grid(grid_file, override)
    expansion = expand(grid)  # refuses cells that cannot run before a cluster, a log or a results folder is made
    if dry_run:
        from segbench.devices import resolve_device
        from segbench.execution.estimate import print_expected_time

        print_cells(Console(), grid, expansion)
        print_expected_time(Console(), expansion.cells, resolve_device(device), cache_dir)  # as a run would
        if grid.tune is not None:
            Console().print(f"tune: first {grid.tune.trials} trials ({grid.tune.sampler}) per configuration into "
                            f"{results / 'tuning'}; the cells above then train with their configuration's best "
                            "parameters, which give them other ids than these.")
        return
    options = dict(force=force, retry_failed=retry_failed, oom_retry=oom_retry, cache_dir=cache_dir)
    if tensorboard is not None or mlflow is not None:
        from segbench.execution.progress import make_view

        options["view"], options["console"] = make_view(err_console), err_console
    if tensorboard is not None:
        from segbench.execution.tensorboard import TensorBoardLog, TensorBoardView

        options["view"] = TensorBoardView(options["view"], TensorBoardLog(tensorboard), results)
    if mlflow is not None:  # the store is opened first: unreachable, nothing is written
        from segbench.analysis.mlflow_export import MlflowView, run_target

        target = run_target(results, mlflow, experiment or grid.name)
        options["view"] = MlflowView(options["view"], target, results,
                                     lambda line: err_console.print(f"[yellow]warning[/]: {line}", markup=True,
                                                                    highlight=False))
    with choice.open(results, device, world_size=grid.train.world_size) as (chosen, placed_on):
        summary = run_grid(grid, results, device=placed_on, executor=chosen, **options)
    print_leaderboard(Console(), list(summary.records.values()), title=f"{grid.name}: leaderboard (val split)")
    err_console.print(
        f"{summary.count('ok')} ok, {summary.count('failed')} failed, {summary.reused} reused from earlier runs; "
        f"records in {results / 'cells'}"
    )
    if tensorboard is not None:
        err_console.print(f"TensorBoard logs in {tensorboard}: tensorboard --logdir {tensorboard}")
    if mlflow is not None:
        err_console.print(f"MLflow runs in {target.tracking_uri}, experiment {target.experiment}", markup=False,
                          highlight=False, soft_wrap=True)
    if summary.interrupted:
        err_console.print("[yellow]interrupted[/]: run the same command again to resume.")
    raise typer.Exit(summary.exit_code)


def print_cells(console: Console, grid, expansion) -> None:
    table = Table(title=f"{grid.name}: {len(expansion.cells)} cells")
    for column in ("#", "cell id", "dataset", "model", "encoder", "loss", "seed"):
        table.add_column(column)
    for number, cell in enumerate(expansion.cells, 1):
        table.add_row(str(number), cell.id, cell.dataset.key, cell.model, cell.encoder, cell.loss.key, str(cell.seed))
    console.print(table)
    if expansion.skipped:
        skipped = Table(title=f"{len(expansion.skipped)} combinations skipped")
        skipped.add_column("cell")
        skipped.add_column("reason")
        for item in expansion.skipped:
            skipped.add_row(item.slug, item.reason)
        console.print(skipped)
