"""Which weights a cell reports, chosen honestly.

`eval.select: last` (the default) reports the final model. `eval.select: best` keeps the weights with the best mIoU
on a selection split that is never the reported split: another split of the dataset (`eval.select_split`) or a
fraction of the training split carved out by the seed and excluded from training (`eval.holdout`). Choosing the best
of several evaluations on the reported split itself would bias the reported number upwards, more with every
evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from segbench.grid.cells import holdout_size

RULE_LAST = "last"
RULE_BEST = "best"


def holdout_indices(num_images: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, selection indices) of a training split of `num_images`: a seeded permutation, the first
    round(fraction x N) images (at least one) for selection. The same seed always carves the same images."""
    size = holdout_size(num_images, fraction)
    if size >= num_images:
        raise ValueError(f"eval.holdout {fraction} leaves no training image of {num_images}")
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[size:]), sorted(order[:size])


def better(candidate: float, incumbent: float | None) -> bool:
    """Whether a selection score beats the best so far (NaN never wins; the first defined score always does)."""
    if math.isnan(candidate):
        return False
    return incumbent is None or math.isnan(incumbent) or candidate > incumbent


@dataclass(frozen=True)
class SelectionRule:
    rule: str  # RULE_LAST or RULE_BEST
    split: str | None  # the selection split's name: a dataset split, or "holdout" for a carved fraction
    holdout: float | None

    @classmethod
    def of(cls, eval_config: Any) -> SelectionRule:
        split = eval_config.select_split or ("holdout" if eval_config.holdout else None)
        return cls(eval_config.select, split if eval_config.select == RULE_BEST else None, eval_config.holdout)

    def describe(self, evaluations: int) -> str:
        if self.rule == RULE_LAST:
            return "the final model (last iteration)"
        where = (f"a {self.holdout:g} holdout of the training split" if self.split == "holdout"
                 else f"the '{self.split}' split")
        return f"the best mIoU on {where} over {evaluations} evaluations (never the reported split)"

    def record(self, history: list[dict[str, Any]], selected_epoch: int, select_miou: float | None) -> dict[str, Any]:
        """The record's `selection` part: rule, split, epoch of the reported weights, selection-split score."""
        evaluations = sum("val_miou" in row for row in history)
        return {"rule": self.rule, "split": self.split, "holdout": self.holdout, "epoch": selected_epoch,
                "select_miou": select_miou, "evaluations": evaluations, "description": self.describe(evaluations)}


def offer(best: dict[str, Any] | None, epoch: int, select_miou: float,
          model: torch.nn.Module) -> dict[str, Any] | None:
    """The best-so-far entry after an evaluation on the selection split: a CPU copy of the weights when this one wins,
    else `best` unchanged. Kept in the training state, so a resumed run selects as an uninterrupted one would."""
    if not better(select_miou, None if best is None else best["select_miou"]):
        return best
    weights = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {"epoch": epoch, "select_miou": select_miou, "model": weights}
