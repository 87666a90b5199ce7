"""`segbench list models|encoders --filter PATTERN`: shell-style wildcards over every name the registry accepts."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from segbench.cli import app
from segbench.cli.list_cmd import accepted_encoders, matching
from segbench.models import MODELS, validate_encoder

WIDE = {"COLUMNS": "200"}
NAME = re.compile(r"^│ ([a-z][\w.+-]*)\s")  # the first column of a table row


def listed(*arguments: str) -> list[str]:
    outcome = CliRunner(env=WIDE).invoke(app, ["list", *arguments])
    assert outcome.exit_code == 0, outcome.output
    return [m.group(1) for line in outcome.output.splitlines() if (m := NAME.match(line))]


def test_models_filter_is_anchored_like_fnmatch():
    assert listed("models", "--filter", "unet*") == ["unet", "unet-classic", "unetplusplus"]
    assert set(listed("models", "--filter", "*unet*")) == {n for n in MODELS.names() if "unet" in n}
    assert listed("models", "-f", "UNET") == listed("models", "-f", "*unet*")  # no wildcard: substring, any case


def test_encoders_filter_covers_smp_and_timm_names():
    found = listed("encoders", "--filter", "*resnet18")
    assert "resnet18" in found and "tu-resnet18" in found
    timm_only = listed("encoders", "--filter", "tu-convnext_*")
    assert timm_only and all(name.startswith("tu-convnext_") for name in timm_only)
    for name in (found + timm_only)[:6]:
        validate_encoder(name)  # every listed name is one a grid file may use


def test_no_match_says_so():
    outcome = CliRunner(env=WIDE).invoke(app, ["list", "encoders", "--filter", "no-such-encoder-*"])
    assert outcome.exit_code == 0 and "no encoder matches 'no-such-encoder-*'" in outcome.output


def test_matching_and_the_accepted_names():
    names = ["resnet18", "tu-resnet18", "mobilenet_v2"]
    assert matching(names, "resnet1?") == ["resnet18"]
    assert matching(names, "[mt]*") == ["tu-resnet18", "mobilenet_v2"]
    accepted = accepted_encoders()
    assert "native" in accepted and "mobilenet_v2" in accepted and "tu-mobilenetv3_large_100" in accepted
