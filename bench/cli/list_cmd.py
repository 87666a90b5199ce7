"""`segbench list models|encoders|losses|datasets`; `--filter PATTERN` searches every accepted model or encoder name."""

from __future__ import annotations

import fnmatch

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List the registered models, encoders, losses or datasets.", no_args_is_help=True)
console = Console()
FILTER_OPTION = typer.Option(
    None, "--filter", "-f",
    help="Shell-style wildcards, e.g. '*resnet*' or 'tu-convnext_*' (case-insensitive); a pattern without "
         "wildcards matches names containing it.",
)


def matching(names: list[str], pattern: str) -> list[str]:
    """The names `pattern` matches (fnmatch, case-insensitive); a pattern without * ? [ matches as a substring."""
    pattern = pattern.lower()
    if not any(char in pattern for char in "*?["):
        pattern = f"*{pattern}*"
    return [name for name in names if fnmatch.fnmatchcase(name.lower(), pattern)]


def accepted_encoders() -> dict[str, str]:
    """Every encoder name `validate_encoder` accepts, with where it comes from: smp encoders, then timm models."""
    import timm

    from segbench.models.encoders import smp_encoder_names

    names = {"native": "from scratch (the study networks)"}
    names |= dict.fromkeys(smp_encoder_names(), "segmentation-models-pytorch")
    names |= {f"tu-{name}": "timm" for name in timm.list_models()}  # the local model table: offline
    return names


def _print_matches(kind: str, pattern: str, rows: list[tuple[str, str]]) -> None:
    if not rows:
        console.print(f"no {kind} matches '{pattern}'")
        return
    table = Table(kind, "what", title=f"{len(rows)} {kind}s matching '{pattern}'")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command("models")
def models(pattern: str | None = FILTER_OPTION) -> None:
    """Architectures and what each one is."""
    from segbench.models import MODELS

    if pattern is not None:
        entries = dict(MODELS.items())
        _print_matches("model", pattern, [(name, entries[name].description) for name in matching(list(entries),
                                                                                                   pattern)])
        return
    table = Table("model", "input multiple", "description")
    for name, entry in MODELS.items():
        table.add_row(name, str(entry.pad_multiple), entry.description)
    console.print(table)


@app.command("encoders")
def encoders(pattern: str | None = FILTER_OPTION) -> None:
    """Curated encoders; any segmentation-models-pytorch encoder or `tu-<timm model>` works too."""
    from segbench.models import CURATED_ENCODERS

    if pattern is not None:
        names = accepted_encoders()
        _print_matches("encoder", pattern, [(name, names[name]) for name in matching(list(names), pattern)])
        return
    table = Table("encoder", "family")
    for name, family in CURATED_ENCODERS.items():
        table.add_row(name, family)
    console.print(table)
    console.print("Also: any segmentation-models-pytorch encoder name, any timm model as 'tu-<name>', "
                  "and 'native' for the from-scratch study networks.")


@app.command("losses")
def losses() -> None:
    """Loss functions (each accepts class_weights: inverse_freq | median_freq)."""
    from segbench.losses import LOSSES

    for name in LOSSES.names():
        console.print(name)


@app.command("datasets")
def datasets() -> None:
    """Dataset formats segbench reads."""
    from segbench.datasets import DATASETS

    table = Table("dataset", "options")
    for name, entry in DATASETS.items():
        table.add_row(name, ", ".join(entry.Params.model_fields))
    console.print(table)
