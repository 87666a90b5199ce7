"""The evaluation protocol (segbench/cell/inference.py, eval.mode / eval.crop / eval.stride / eval.tta): sliding
windows against one forward pass and against averages worked out by hand, TTA against no TTA, the grid's checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segbench.cell.inference import WHOLE, Protocol, protocol_logits, slide_logits, tta_log_probabilities
from segbench.errors import ConfigError
from segbench.grid.schema import EvalConfig


def conv_model(seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1)).eval()


def test_a_window_covering_the_image_equals_one_forward_pass_exactly():
    model = conv_model()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        whole = model(images)
        slid = protocol_logits(model, images, Protocol(mode="slide", crop=(64, 96), stride=(32, 48)))
        larger = slide_logits(model, images, (128, 128), (64, 64))  # a side shorter than the window: one window
    assert torch.equal(slid, whole) and torch.equal(larger, whole)


def test_overlapping_windows_average_as_worked_out_by_hand():
    """Each window's output at a pixel is the sum of its 3x3 neighbourhood inside that window (zero outside). On an
    image of ones, 4x6 with 4x4 windows every 2 columns (x 0-3 and 2-5), a pixel's value is the mean over the
    windows that cover it of the neighbours it has in each."""
    model = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(model.weight)
    with torch.no_grad():
        out = slide_logits(model, torch.ones(1, 1, 4, 6), (4, 4), (2, 2))[0, 0]
    row = out[1].tolist()  # an interior row: 3 rows of neighbours in every window
    # x=0: left window only, at its left edge (2 columns); x=1: left only, interior (3);
    # x=2: left interior (9) and right window's left edge (6); x=3: left's right edge (6) and right interior (9);
    # x=4: right only, interior (9); x=5: right only, at its right edge (6).
    assert row == [6.0, 9.0, 7.5, 7.5, 9.0, 6.0]
    assert out[0].tolist() == [4.0, 6.0, 5.0, 5.0, 6.0, 4.0]  # the top row: 2 rows of neighbours


def test_tta_with_one_scale_and_no_flip_is_no_tta():
    model = conv_model(1)
    images = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        plain = protocol_logits(model, images, WHOLE)
        one_scale = tta_log_probabilities(model, images, (1.0,), False, 32)
    assert Protocol(scales=(1.0,), flip=False).tta is False
    torch.testing.assert_close(one_scale.softmax(1), plain.softmax(1), rtol=0, atol=1e-6)


def test_tta_averages_the_probabilities_of_each_pass():
    """Flip and a second scale of a model that sees one pixel at a time (1x1 convolution): on an image of one colour,
    the mirrored pass and the 2x pass give the same probabilities back, so the average is the plain pass; a model
    that sees neighbours does not, and its TTA result is the mean of the passes' softmax."""
    torch.manual_seed(2)
    pointwise = nn.Conv2d(3, 4, 1).eval()
    images = torch.tensor([0.3, -1.0, 0.8]).view(1, 3, 1, 1).expand(1, 3, 32, 64).contiguous()
    with torch.no_grad():
        plain = pointwise(images).softmax(1)
        tta = tta_log_probabilities(pointwise, images, (1.0, 2.0), True, 32).exp()
    torch.testing.assert_close(tta, plain, rtol=0, atol=1e-5)
    model = conv_model(3)
    with torch.no_grad():
        mirrored = model(images.flip(-1)).flip(-1).softmax(1)
        expected = (model(images).softmax(1) + mirrored) / 2
        both = tta_log_probabilities(model, images, (1.0,), True, 32).exp()
    torch.testing.assert_close(both, expected, rtol=0, atol=1e-6)


def test_a_scale_is_padded_to_the_architectures_multiple_and_resized_back():
    seen = []

    def model(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape[-2:]))
        return torch.zeros(batch.shape[0], 3, *batch.shape[-2:])

    out = tta_log_probabilities(model, torch.randn(1, 3, 64, 96), (0.75,), False, 32)
    assert seen == [(64, 96)]  # 48x72 padded to 64x96
    assert out.shape == (1, 3, 64, 96)


@pytest.mark.parametrize(("section", "message"), [
    ({"mode": "slide", "crop": [64, 64]}, "eval.mode: slide needs eval.crop"),
    ({"mode": "slide", "crop": [64, 64], "stride": [32, 96]}, "larger than eval.crop"),
    ({"crop": [64, 64], "stride": [32, 32]}, "set eval.mode: slide or remove them"),
    ({"mode": "resize"}, "eval.mode: resize needs eval.size"),
    ({"mode": "whole", "size": [64, 128]}, "remove eval.size or use mode resize"),
    ({"tta": {"scales": []}}, "at least 1 item"),
    ({"tta": {"scales": [0.0]}}, "greater than 0"),
])
def test_the_grid_refuses_an_incomplete_protocol(section, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        EvalConfig.model_validate(section)


def test_the_protocol_of_a_grid_and_its_default():
    assert EvalConfig().protocol_mode == "whole" and EvalConfig(size=(64, 128)).protocol_mode == "resize"
    protocol = Protocol.of(EvalConfig.model_validate({"mode": "slide", "crop": [64, 64], "stride": [32, 32],
                                                      "tta": {"scales": [0.5, 1.0], "flip": True}}), 32)
    assert protocol == Protocol("slide", (64, 64), (32, 32), (0.5, 1.0), True, 32)
    assert protocol.describe() == ("sliding window 64x64, stride 32x32; TTA: softmax averaged over scales [0.5, 1.0] "
                                   "and flip")


def test_a_protocol_is_recorded_in_the_configuration_but_changes_no_cell_id():
    """The protocol is an evaluation setting of the trained weights (segbench.cell.attached): the record's
    configuration names it, the cell's id stays the one of the same training evaluated whole."""
    from support.records import cell_of

    plain = cell_of("unet__resnet18__ce__synthetic__s0")
    assert not {"mode", "crop", "stride", "tta"} & set(plain.resolved()["eval"])
    slid = plain.model_copy(update={"eval": EvalConfig.model_validate(
        {**plain.eval.model_dump(), "mode": "slide", "crop": [64, 64], "stride": [32, 32]})})
    assert slid.resolved()["eval"]["mode"] == "slide" and slid.config_hash == plain.config_hash
    assert slid.evaluation == {"eval": {"mode": "slide", "crop": [64, 64], "stride": [32, 32]}}
    assert plain.evaluation == {}


def test_epochs_are_evaluated_as_trained_whatever_the_reported_protocol():
    """Evaluations while training (history, selection) never use the grid's protocol, so it cannot change what
    trains: one forward pass of the resized or whole image."""
    slide = EvalConfig.model_validate({"mode": "slide", "crop": [64, 64], "stride": [32, 32],
                                       "tta": {"scales": [0.5, 1.0], "flip": True}})
    assert Protocol.during_training(slide, 32) == Protocol("whole", pad_multiple=32)
    assert Protocol.during_training(EvalConfig(size=(64, 128)), 32) == Protocol("resize", pad_multiple=32)


@pytest.mark.slow
def test_a_cell_evaluated_by_sliding_windows_with_tta_records_what_its_checkpoint_gives(tmp_path):
    """End to end: a cell with eval.mode slide and TTA trains, and its checkpoint evaluated under the same protocol
    reproduces the recorded confusion matrix; its saved grid names the protocol."""
    from typer.testing import CliRunner

    from segbench.cell.data import make_datasets
    from segbench.cli import app
    from segbench.grid.cells import Cell
    from segbench.models import MODELS

    from support.checkpoints import evaluate_checkpoint
    from support.grids import read_records, tiny_grid, write_grid

    document = tiny_grid(train={"iterations": 2, "epochs": None},
                         eval={"mode": "slide", "crop": [64, 64], "stride": [32, 32],
                               "tta": {"scales": [0.5, 1.0], "flip": True}})
    document["train"].pop("epochs")
    grid = write_grid(tmp_path / "grid.yaml", document)
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    (cell_id, record), = read_records(results).items()
    assert record["status"] == "ok", record.get("error")
    assert record["config"]["eval"]["mode"] == "slide" and record["config"]["eval"]["tta"]["flip"] is True
    timed = record["cost"]["latency"]["protocol"]  # one full image under the protocol, beside one forward pass
    assert timed["description"].startswith("sliding window 64x64, stride 32x32; TTA") and timed["n"] == 2
    assert timed["input_shape"] == [1, 3, 64, 128] and timed["latency_ms_p50"] > 0
    cell = Cell.model_validate(record["config"])
    _, val_set = make_datasets(cell, MODELS.get(cell.model).pad_multiple, None)
    again = evaluate_checkpoint(results / "cells" / cell_id, record, val_set)
    assert again.matrix.tolist() == record["confusion_matrix"]
