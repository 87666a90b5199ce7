"""Honest checkpoint selection: the holdout carving and the best-on-selection-split rule."""

import math

import pytest
import torch

from segbench.cell.selection import RULE_BEST, RULE_LAST, SelectionRule, better, holdout_indices, offer


def test_holdout_is_deterministic_disjoint_and_seed_dependent():
    train, select = holdout_indices(50, 0.2, seed=3)
    assert len(select) == 10 and len(train) == 40
    assert set(train).isdisjoint(select) and sorted(train + select) == list(range(50))
    assert holdout_indices(50, 0.2, seed=3) == (train, select)
    assert holdout_indices(50, 0.2, seed=4)[1] != select
    assert len(holdout_indices(10, 0.01, seed=0)[1]) == 1  # at least one image
    with pytest.raises(ValueError, match="no training image"):
        holdout_indices(2, 0.9, seed=0)


def test_better_never_picks_nan_and_takes_the_first_defined_score():
    assert better(0.1, None) and not better(float("nan"), None)
    assert better(0.5, float("nan")) and not better(0.4, 0.5) and not better(0.5, 0.5)


def test_best_rule_keeps_the_weights_of_the_best_evaluation_not_the_last():
    model = torch.nn.Linear(2, 1, bias=False)
    scores = [0.30, 0.55, float("nan"), 0.41]  # the best evaluation is the second, not the last
    best = None
    for epoch, score in enumerate(scores, 1):
        with torch.no_grad():
            model.weight.fill_(epoch)  # weights that tell the epochs apart
        best = offer(best, epoch, score, model)
    assert best["epoch"] == 2 and best["select_miou"] == 0.55
    assert torch.equal(best["model"]["weight"], torch.full((1, 2), 2.0))
    model.weight.data.fill_(9)  # the kept copy does not follow the live model
    assert torch.equal(best["model"]["weight"], torch.full((1, 2), 2.0))


class _Eval:
    def __init__(self, select, select_split=None, holdout=None):
        self.select, self.select_split, self.holdout = select, select_split, holdout


def test_rule_descriptions_and_record_part():
    history = [{"epoch": 1, "val_miou": 0.2}, {"epoch": 2}, {"epoch": 3, "val_miou": 0.3}]
    last = SelectionRule.of(_Eval(RULE_LAST))
    assert last.split is None and "final model" in last.describe(2)
    best = SelectionRule.of(_Eval(RULE_BEST, holdout=0.1))
    part = best.record(history, selected_epoch=1, select_miou=0.25)
    assert part["rule"] == "best" and part["split"] == "holdout" and part["evaluations"] == 2
    assert "0.1 holdout" in part["description"] and part["epoch"] == 1
    named = SelectionRule.of(_Eval(RULE_BEST, select_split="test"))
    assert named.split == "test" and "'test' split" in named.describe(4)
    assert not math.isnan(part["select_miou"])
