"""`segbench weights fetch GRID_OR_ENCODER...` and `segbench weights list`: pretrained encoder weights in the local
Hugging Face cache (HF_HOME / HF_HUB_CACHE), fetched ahead of time on a machine with internet
(segbench.models.pretrained)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segbench.cli.common import user_errors
from segbench.errors import ConfigError

app = typer.Typer(help="Pretrained encoder weights: fetch them ahead of time, list what is cached.",
                  no_args_is_help=True)
console = Console()


def weights_wanted(targets: list[str]) -> list[tuple[str, str]]:
    """(encoder, weights) pairs from grid files (every cell's pretrained weights) and `encoder[:weights]` names
    (weights imagenet when not given); ConfigError naming a target that is neither."""
    from segbench.grid.cells import expand
    from segbench.grid.load import load_grid
    from segbench.models import validate_encoder
    from segbench.models.pretrained import NO_WEIGHTS, TIMM_WEIGHTS, weights_problem

    pairs: list[tuple[str, str]] = []
    for target in targets:
        if target.endswith((".yaml", ".yml")) or Path(target).is_file():
            cells = expand(load_grid(Path(target))).cells
            pairs += [(cell.encoder, cell.weights) for cell in cells if cell.weights != NO_WEIGHTS]
            continue
        encoder, _, name = target.partition(":")
        name = name or TIMM_WEIGHTS
        validate_encoder(encoder)
        problem = weights_problem(encoder, name) if name != NO_WEIGHTS else "there is nothing to fetch for none"
        if problem is not None:
            raise ConfigError(f"cannot fetch '{target}': {problem}.")
        pairs.append((encoder, name))
    return list(dict.fromkeys(pairs))


@app.command("fetch")
@user_errors
def fetch(targets: list[str] = typer.Argument(
    ..., help="Grid files (every pretrained weights file their cells need) or encoders as ENCODER[:WEIGHTS], e.g. "
              "resnet18:imagenet, resnet50:ssl, tu-convnext_tiny (weights imagenet when not given)."),
          ) -> None:
    """Download pretrained encoder weights into the Hugging Face cache and print where each file went."""
    from segbench.models.pretrained import fetch_weights

    pairs = weights_wanted(targets)
    if not pairs:
        console.print("nothing to fetch: no cell of these grids starts from pretrained weights")
        return
    for encoder, name in pairs:
        resolved = fetch_weights(encoder, name)
        console.print(f"{encoder} {name}: {escape(str(resolved.path))}", highlight=False, soft_wrap=True)


@app.command("list")
@user_errors
def list_weights() -> None:
    """Encoder weights in the Hugging Face cache: encoder, weights, file and size."""
    from huggingface_hub import constants

    from segbench.models.pretrained import list_cached

    cached = list_cached()
    if not cached:
        console.print(f"no encoder weights in the Hugging Face cache {escape(constants.HF_HUB_CACHE)}", highlight=False)
        return
    cache = Path(constants.HF_HUB_CACHE)
    table = Table("encoder", "weights", "file (in the cache)", "size", title=f"encoder weights in {escape(str(cache))}")
    table.columns[2].overflow = "fold"  # a path is read whole
    for weights in cached:
        file = weights.path.relative_to(cache) if weights.path.is_relative_to(cache) else weights.path
        table.add_row(weights.encoder, weights.name, escape(str(file)), f"{weights.size_bytes / 2**20:.1f} MiB")
    console.print(table)
