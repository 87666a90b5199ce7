"""Grid files: parsed once, at the boundary, into frozen typed objects.

Everything downstream (expansion, runner, worker) sees these objects, never raw dicts. Every problem with a grid
file becomes a ConfigError with one sentence naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from segbench.errors import ConfigError
from segbench.grid.tune import TuneConfig
from segbench.losses import LOSSES

# Names that become parts of file names (cell ids, the saved grid): no separators, no leading dot, so no value in a
# grid file can make segbench write outside its results folder.
SafeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$", max_length=80)]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossSpec(Frozen):
    """A loss and its options; `key` names it in cell ids."""

    name: str
    gamma: float = Field(2.0, ge=0)
    class_weights: Literal["inverse_freq", "median_freq"] | None = None
    id: SafeName | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        LOSSES.get(name)
        return name

    @property
    def key(self) -> str:
        if self.id:
            return self.id
        parts = [self.name]
        if self.name == "focal" and self.gamma != 2.0:
            parts.append(f"g{self.gamma:g}")
        if self.class_weights:
            parts.append({"inverse_freq": "invfreq", "median_freq": "medfreq"}[self.class_weights])
        return "-".join(parts)


class DatasetSpec(Frozen):
    """A dataset by registered name with its options (`params`, validated by the dataset itself)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: SafeName | None = None

    @property
    def key(self) -> str:
        return self.id or self.name


class ComputeBudget(Frozen):
    """Equal training compute: train for the iterations whose training FLOPs (3 x fvcore forward FLOPs per image at
    the crop, x the global batch) reach `tflops` x 1e12 (segbench.cell.budget)."""

    tflops: float = Field(gt=0, allow_inf_nan=False)


class TrainConfig(Frozen):
    epochs: int | None = Field(None, ge=1)
    iterations: int | None = Field(None, ge=1)
    budget: ComputeBudget | None = None
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_power: float = Field(0.9, gt=0)
    crop: tuple[int, int] = (128, 256)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    # Numerics and speed (segbench.devices): `auto` precision is bf16 on a CUDA GPU with bfloat16, fp32 otherwise;
    # fp16 trains with a gradient scaler. num_workers `auto` is resolved at run time (segbench.cell.data), so the
    # grid's hash does not depend on the machine.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    deterministic: bool = False
    channels_last: bool = False
    compile: Literal["default", "reduce-overhead", "max-autotune"] | None = None
    num_workers: int | Literal["auto"] = "auto"
    eval_every: int = Field(1, ge=1)
    # One cell on several processes (segbench.cell.distributed): batch_size stays the global batch, each of the
    # world_size processes trains batch_size / world_size images per step. sync_bn `auto` converts BatchNorm to
    # SyncBatchNorm on CUDA (NCCL) when world_size > 1; gloo (the CPU) cannot run it (resolve_sync_bn).
    world_size: int = Field(1, ge=1)
    sync_bn: bool | Literal["auto"] = "auto"

    @field_validator("world_size")
    @classmethod
    def _global_batch_divides(cls, world_size: int, info: ValidationInfo) -> int:
        batch_size = info.data.get("batch_size")
        if batch_size is not None and batch_size % world_size:
            raise ValueError(f"train.batch_size {batch_size} is the global batch and must divide by the world size "
                             f"(each of the {world_size} processes trains batch_size / world_size images); use a "
                             f"multiple of {world_size}")
        return world_size

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError("use auto or a number of loader processes (0 loads in the training process)")

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if sum(value is not None for value in (self.epochs, self.iterations, self.budget)) != 1:
            raise ValueError("set exactly one of train.epochs, train.iterations and train.budget ({tflops: X})")
        if min(self.crop) < 1 or self.scale_range[0] <= 0 or self.scale_range[0] > self.scale_range[1]:
            raise ValueError("train.crop must be two positive sizes and train.scale_range an increasing positive pair")
        return self



def resolve_sync_bn(setting: bool | str, backend: str) -> bool:
    """train.sync_bn for a backend: `auto` is on with NCCL; SyncBatchNorm cannot run on gloo (the CPU)."""
    if backend != "nccl":
        if setting is True:
            raise ConfigError("train.sync_bn: true needs CUDA GPUs (NCCL); SyncBatchNorm cannot run on the CPU "
                              "(gloo): use auto or false.")
        return False
    return setting in (True, "auto")

class EvalDataset(DatasetSpec):
    """A further dataset a cell is evaluated on once trained (another domain, city or camera): its split, and its
    labels mapped onto the training classes by class name, classes without a counterpart ignored
    (segbench.cell.domains)."""

    split: str = "val"


class CorruptionsConfig(Frozen):
    """Weather and sensor corruptions every trained cell is evaluated under (segbench.datasets.corruptions): names
    (or `all`), severities 1-5, and the first max_images images of the reported split (all by default)."""

    names: tuple[str, ...] | Literal["all"]
    severities: tuple[int, ...] = Field((1, 2, 3, 4, 5), min_length=1)
    max_images: int | None = Field(None, ge=1)

    @field_validator("names")
    @classmethod
    def _known(cls, names: Any) -> Any:
        from segbench.datasets.corruptions import CORRUPTIONS

        if names == "all":
            return tuple(CORRUPTIONS)
        unknown = [name for name in names if name not in CORRUPTIONS]
        if unknown or not names:
            raise ValueError(f"eval.corruptions.names: {', '.join(unknown) or 'none given'} not known; use all or "
                             f"some of {', '.join(CORRUPTIONS)}")
        return names

    @field_validator("severities")
    @classmethod
    def _levels(cls, severities: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= level <= 5 for level in severities) or len(set(severities)) != len(severities):
            raise ValueError(f"eval.corruptions.severities {list(severities)} must be distinct levels from 1 to 5")
        return severities


class TTAConfig(Frozen):
    """Test-time augmentation: softmax probabilities averaged over image scales and, with flip, mirrored images."""

    scales: tuple[PositiveFloat, ...] = Field((1.0,), min_length=1)
    flip: bool = False


class EvalConfig(Frozen):
    split: str = "val"
    batch_size: int = Field(8, ge=1)
    size: tuple[int, int] | None = None
    max_images: int | None = Field(None, ge=1)
    # The inference protocol (segbench.cell.inference): resize (to eval.size), whole (the image at its own size,
    # padded to the architecture's multiple) or slide (windows of crop every stride over it); unset: resize when
    # eval.size is set, else whole, as before the protocol was a setting. tta: scales and flip averaged.
    mode: Literal["resize", "whole", "slide"] | None = None
    crop: tuple[PositiveInt, PositiveInt] | None = None
    stride: tuple[PositiveInt, PositiveInt] | None = None
    tta: TTAConfig | None = None
    datasets: tuple[EvalDataset, ...] = ()  # evaluated after training, beside the cell's own split
    corruptions: CorruptionsConfig | None = None  # the reported split again, corrupted, after training

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value
    # Which weights are reported (segbench.cell.selection): the final model, or the best on a selection split that
    # is never the reported one (another split of the dataset, or a seeded holdout carved out of the training split).
    select: Literal["last", "best"] = "last"
    select_split: SafeName | None = None
    holdout: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _distinct_datasets(self) -> EvalConfig:
        keys = [f"{d.key}/{d.split}" for d in self.datasets]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"eval.datasets lists '{repeated[0]}' twice; give each entry a distinct 'id'")
        return self

    @property
    def protocol_mode(self) -> str:
        return self.mode or ("resize" if self.size is not None else "whole")

    @model_validator(mode="after")
    def _protocol(self) -> EvalConfig:
        if self.mode == "resize" and self.size is None:
            raise ValueError("eval.mode: resize needs eval.size [H, W]; use mode whole to evaluate at native size")
        if self.mode == "whole" and self.size is not None:
            raise ValueError("eval.mode: whole evaluates at the image's own size; remove eval.size or use mode resize")
        if self.mode == "slide":
            if self.crop is None or self.stride is None:
                raise ValueError("eval.mode: slide needs eval.crop [H, W] (the window) and eval.stride [H, W]")
            if self.stride[0] > self.crop[0] or self.stride[1] > self.crop[1]:
                raise ValueError(f"eval.stride {list(self.stride)} is larger than eval.crop {list(self.crop)}: the "
                                 "windows would leave pixels out; use a stride at most the window")
        elif self.crop is not None or self.stride is not None:
            raise ValueError("eval.crop and eval.stride are the sliding window: set eval.mode: slide or remove them")
        return self

    @model_validator(mode="after")
    def _selection_split(self) -> EvalConfig:
        if self.select == "best":
            if (self.select_split is None) == (self.holdout is None):
                raise ValueError(
                    "eval.select: best needs one selection split that is not the reported split: set "
                    "eval.select_split: NAME (another split of the dataset) or eval.holdout: FRACTION (e.g. 0.1 of "
                    "the training split), not both"
                )
            if self.select_split == self.split:
                raise ValueError(
                    f"eval.select_split '{self.select_split}' is the reported split (eval.split): choosing on it "
                    "biases the reported numbers; name another split or use eval.holdout"
                )
        elif self.select_split is not None or self.holdout is not None:
            raise ValueError("eval.select_split and eval.holdout only apply with eval.select: best; set select: best "
                             "or remove them")
        return self


class MeasureConfig(Frozen):
    """Cost measurement of each trained cell at its evaluation input size (see reference/measurement.md)."""

    enabled: bool = True
    # Latency timing gets a time budget (seconds per cell, both batch sizes together): warm-up and timed iterations
    # are calibrated to fill it (segbench.measure.latency.calibrate), never fewer than `warmup` and `iters`; null
    # runs exactly `warmup` and `iters`. 10 s gives a 20 ms model 200 iterations per batch size and costs little next
    # to any training run, while a model of seconds per call is no longer timed for minutes. The minimums are small
    # so that such a model stays near the budget: 3 timed iterations are the fewest whose median ignores an outlier.
    budget_s: float | None = Field(10.0, gt=0)
    warmup: int = Field(1, ge=1)
    iters: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    macs: bool = True
    memory: bool = True  # peak memory of one training step and one inference batch (a fresh process on the CPU)
    threads: int | None = Field(None, ge=1)  # CPU threads while timing latency; None keeps the process's setting
    # Deployment cost (segbench.cell.deployment): each trained cell in each runtime x precision that applies, its
    # latency against eager PyTorch in the same process and the accuracy the deployed form keeps. The default is
    # today's eager fp32 measurement alone; asked for, they are measured also with `enabled: false`. onnxruntime and
    # tensorrt need the `deploy` extra.
    runtimes: tuple[Literal["torch", "torch-compile", "onnxruntime", "tensorrt"], ...] = ("torch",)
    precisions: tuple[Literal["fp32", "fp16", "bf16", "int8"], ...] = ("fp32",)
    int8_calibration_images: int = Field(32, ge=1)  # training images (chosen by the seed) calibrating INT8

    @model_validator(mode="after")
    def _deployment(self) -> MeasureConfig:
        for key in ("runtimes", "precisions"):
            values = getattr(self, key)
            if not values:
                raise ValueError(f"measure.{key} is empty; list at least one (the default is "
                                 f"[{type(self).model_fields[key].default[0]}])")
            repeated = sorted({value for value in values if values.count(value) > 1})
            if repeated:
                raise ValueError(f"measure.{key} lists '{repeated[0]}' twice; list each once")
        return self


class ExcludeRule(Frozen):
    """A cell is excluded when every field given here matches it."""

    dataset: str | None = None
    model: str | None = None
    encoder: str | None = None
    loss: str | None = None
    seed: int | None = None
    weights: str | None = None


class GridConfig(Frozen):
    name: SafeName = "grid"
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    models: list[SafeName] = Field(min_length=1)
    encoders: list[SafeName] = Field(min_length=1)
    losses: list[LossSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    exclude: list[ExcludeRule] = Field(default_factory=list)
    encoder_weights: dict[str, Path] = Field(default_factory=dict)
    # Pretrained encoder weights by name, an axis like the others: `none` (random initialisation), `imagenet`, or
    # another name the library offers for the encoder (segbench.models.pretrained; checked per cell at expansion).
    weights: list[SafeName] = Field(default_factory=lambda: ["none"], min_length=1)
    tune: TuneConfig | None = None  # an equal tuning budget per configuration (segbench.grid.tune)

    @field_validator("weights")
    @classmethod
    def _weights_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if name != name.lower():
                raise ValueError(f"weights '{name}' must be lower case, as the libraries name them (none, imagenet, "
                                 "ssl, swsl, ...)")
        return names

    @model_validator(mode="before")
    @classmethod
    def _replaced_train_keys(cls, document: Any) -> Any:
        train = document.get("train") if isinstance(document, dict) else None
        train = train if isinstance(train, dict) else {}
        old_keys = [f"train.{key}" for key in ("autocast", "autocast_dtype") if key in train]
        if old_keys:
            raise ValueError(
                f"{' and '.join(old_keys)} {'were' if len(old_keys) > 1 else 'was'} replaced by train.precision: "
                f"write 'precision: {replacement_precision(train)}' instead (one of auto, fp32, bf16, fp16)"
            )
        return document

    @field_validator("datasets", "losses", mode="before")
    @classmethod
    def _names_to_dicts(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> GridConfig:
        for axis, keys in (
            ("datasets", [d.key for d in self.datasets]),
            ("losses", [loss.key for loss in self.losses]),
            ("models", self.models),
            ("encoders", self.encoders),
            ("seeds", [str(seed) for seed in self.seeds]),
            ("weights", self.weights),
        ):
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise ValueError(f"{axis} lists '{repeated[0]}' twice; give each entry a distinct 'id'")
        return self


def replacement_precision(train: dict[str, Any]) -> str:
    """The train.precision that does what an old grid's autocast keys did: autocast (bf16 on CUDA, nothing on the
    CPU) is `auto`, bf16 where the GPU has it; float16 autocast is fp16; no autocast is fp32."""
    if train.get("autocast", True) is False:
        return "fp32"
    return "fp16" if train.get("autocast_dtype") == "float16" else "auto"
