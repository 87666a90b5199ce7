"""`segbench data check|stats|synth`: check a dataset folder, count its classes, write the built-in scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from segbench.cli.common import err_console, parse_size, user_errors

app = typer.Typer(
    help="Check a dataset folder, count its classes, or write the synthetic scenes.", no_args_is_help=True
)
console = Console()
SHOWN_PER_KIND = 20

DATASET_OPTION = typer.Option(..., "--dataset", "-d", help="Registered dataset name (`segbench list datasets`).")
ROOT_OPTION = typer.Option(None, "--root", help="The dataset folder (the `root` option).")
PARAM_OPTION = typer.Option(
    [],
    "--param",
    "-p",
    help="Another dataset option, key=value (YAML value), e.g. -p classes=categories -p unknown_as_class=true.",
)
SPLIT_OPTION = typer.Option([], "--split", "-s", help="A split to read (repeatable); default the dataset's splits.")
CACHE_OPTION = typer.Option(None, "--cache-dir", help="Dataset cache (default: $SEGBENCH_CACHE or ~/.cache/segbench).")


def dataset_params(dataset: str, root: Path | None, params: list[str]) -> Any:
    """The dataset's typed options from --root and --param key=value (values parsed as YAML)."""
    from segbench.datasets import parse_dataset_params
    from segbench.grid.load import parse_assignment

    values = dict(parse_assignment(item, "--param", "key=value, e.g. --param classes=categories") for item in params)
    if root is not None:
        values["root"] = str(root)
    return parse_dataset_params(dataset, values)


def file_progress() -> Progress:
    """A transient progress bar on stderr; silent when stderr is not a terminal (logs, CI), so errors stay one line."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


class SplitProgress:
    """A rich progress bar per split, fed by the `(split, done, total)` callbacks of segbench.datasets.check."""

    def __init__(self, progress: Progress, what: str) -> None:
        self.progress, self.what, self.tasks = progress, what, {}

    def __call__(self, split: str, done: int, total: int) -> None:
        if split not in self.tasks:
            self.tasks[split] = self.progress.add_task(f"{split}: {self.what}", total=total)
        self.progress.update(self.tasks[split], completed=done)


def read_splits(read: Callable[..., Any], what: str, dataset: str, root: Path | None, params: list[str],
                splits: list[str], cache_dir: Path | None) -> Any:
    """`read` (check_dataset or class_statistics of segbench.datasets.check) over the dataset's splits (all when
    `splits` is empty), with a progress bar per split that says `what` it reads."""
    with file_progress() as progress:
        return read(dataset, dataset_params(dataset, root, params), splits or None, cache_dir,
                    SplitProgress(progress, what))


@app.command("check")
@user_errors
def check(
    dataset: str = DATASET_OPTION,
    root: Path | None = ROOT_OPTION,
    param: list[str] = PARAM_OPTION,
    split: list[str] = SPLIT_OPTION,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON."),
    cache_dir: Path | None = CACHE_OPTION,
) -> None:
    """Read every file once and list each problem with its file; exit 1 when there is any, 2 for unusable input."""
    from segbench.atomic import atomic_write_json
    from segbench.datasets.check import PROBLEM_KINDS, check_dataset

    report = read_splits(check_dataset, "reading files", dataset, root, param, split, cache_dir)
    table = Table(title=f"{dataset} at {report.root}")
    for column in ("split", "images", "labels", "pairs", "problems"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for item in report.splits:
        table.add_row(item.split, str(item.images), str(item.labels), str(item.pairs), str(len(item.problems)))
    console.print(table)
    problems = report.problems
    if problems:
        listing = Table("problem", "file", "detail", title=f"{len(problems)} problem(s)", show_lines=False)
        for kind in PROBLEM_KINDS:
            of_kind = [problem for problem in problems if problem.kind == kind]
            for problem in of_kind[:SHOWN_PER_KIND]:
                listing.add_row(kind, str(problem.path), problem.detail)
            if len(of_kind) > SHOWN_PER_KIND:
                listing.add_row(kind, f"... {len(of_kind) - SHOWN_PER_KIND} more", "see --json for all")
        console.print(listing)
    if json_out is not None:
        atomic_write_json(json_out, report.as_dict())
    if problems:
        err_console.print(f"[red]{len(problems)} problem(s)[/] in {dataset} at {report.root}")
        raise typer.Exit(1)
    err_console.print(f"[green]ok[/]: {sum(item.pairs for item in report.splits)} image/label pairs, no problem")


@app.command("stats")
@user_errors
def stats(
    dataset: str = DATASET_OPTION,
    root: Path | None = ROOT_OPTION,
    param: list[str] = PARAM_OPTION,
    split: list[str] = SPLIT_OPTION,
    plot: Path | None = typer.Option(None, "--plot", help="Write a bar chart of the class pixel shares (PNG)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the counts and weights as JSON."),
    cache_dir: Path | None = CACHE_OPTION,
) -> None:
    """Class pixel shares per split and the class weights training would use (from the train split)."""
    from segbench.atomic import atomic_write_json
    from segbench.datasets.check import class_statistics

    result = read_splits(class_statistics, "labels", dataset, root, param, split, cache_dir)
    table = Table(title=f"{dataset}: class pixel shares (ignore excluded)")
    table.add_column("class")
    for name in result.counts:
        table.add_column(f"{name} share", justify="right")
    for method in result.weights:
        table.add_column(f"{method} weight", justify="right")
    shares = {name: counts / max(int(counts.sum()), 1) for name, counts in result.counts.items()}
    for index, class_name in enumerate(result.classes):
        row = [class_name] + [f"{shares[name][index]:.2%}" for name in result.counts]
        row += [f"{weights[index]:.3f}" for weights in result.weights.values()]
        table.add_row(*row)
    table.add_row("[dim]pixels[/]", *[f"{int(counts.sum()):,}" for counts in result.counts.values()])
    console.print(table)
    if result.weights:
        console.print(
            f"Weights: segbench.losses.class_weights_from_counts on the {result.weights_split} split's class "
            "pixel counts (mean 1 over the classes present), as `class_weights:` in a grid uses them."
        )
    if json_out is not None:
        atomic_write_json(
            json_out,
            {
                "dataset": dataset,
                "classes": list(result.classes),
                "counts": {name: counts.tolist() for name, counts in result.counts.items()},
                "weights": {name: w.tolist() for name, w in result.weights.items()},
                "weights_split": result.weights_split,
            },
        )
    if plot is not None:
        from segbench.analysis.figures import class_share_figure

        class_share_figure(plot, dataset, result.classes, shares)
        err_console.print(f"plot written to {plot}")


@app.command("synth")
@user_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (must not exist or be empty)."),
    n: int = typer.Option(..., "--n", help="Number of training images."),
    n_val: int | None = typer.Option(None, "--n-val", help="Number of validation images (default: n / 4, >= 1)."),
    size: str = typer.Option("128x256", "--size", help="Image size HxW, e.g. 128x256."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed and size give byte-identical files."),
) -> None:
    """Write the built-in synthetic street scenes to OUT in the Cityscapes layout (label ids)."""
    from segbench.datasets import parse_dataset_params, prepare_dataset

    height, width = parse_size(size, example="128x256")
    values = {
        "root": str(out),
        "n_train": n,
        "n_val": n_val if n_val is not None else max(1, n // 4),
        "height": height,
        "width": width,
        "seed": seed,
    }
    params = parse_dataset_params("synthetic", values)
    prepare_dataset("synthetic", params)  # renders into a temporary sibling of OUT, renamed into place
    err_console.print(
        f"wrote {params.n_train} train + {params.n_val} val scenes of {height}x{width} to {out} (Cityscapes layout); "
        f"read them with {{name: cityscapes, params: {{root: {out}}}}}"
    )
