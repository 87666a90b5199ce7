"""The record and the summary as typed models: what `record.json` and `summary.json` hold, field by field.

A record is written once by the worker (or by the runner for a worker that died) and read by everything after it:
summary, gate, leaderboard, report, show, predict, TensorBoard. These models are the one description of its shape:
the writer validates through them (a field of the wrong type fails the write, in the tests, not in a user's report)
and the reader (`store.read_record`) returns them, so readers use attributes, never string keys.

Compatibility, both ways:
- the JSON on disk keeps its shape: a model dumps exactly the keys it was given (`Part.to_json`), so records written
  before these models existed read unchanged and a record read and written again is the same file;
- records from an older format are migrated in one place (`migrate`), and a record from a newer segbench reads too:
  its unknown fields are kept (every part allows extra fields) and listed by `unknown_fields`, which the reader
  reports as one note per results folder.

`schema_version` versions this format (what a reader must understand); `semantics_version` is what makes two cells
comparable (it enters every config hash) and is not this file's business.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from segbench.metrics.catalogue import SUMMARY_FIELDS
from segbench.records.paths import LEGACY_CHECKPOINT_FILE

# The record format this segbench writes and fully understands. Version 1 since the first release; records of
# benchmark-semantics version 1 (before `model.pt`, per-image counts and the selection section) are version 1 too
# and are migrated by `migrate`.
RECORD_SCHEMA_VERSION = 1
# summary.json: version 2 added the machine fingerprint and the latency stability per row (issue 18).
SUMMARY_KIND = "segbench-summary"
SUMMARY_VERSION = 2
READABLE_SUMMARY_VERSIONS = (1, 2)


class Part(BaseModel):
    """A section of a record: typed known fields; fields a newer segbench added are kept as extras."""

    model_config = ConfigDict(extra="allow", validate_assignment=False, arbitrary_types_allowed=False)

    def to_json(self) -> dict[str, Any]:
        """The section as it is stored: exactly the keys it was built from (unset defaults are not added)."""
        return self.model_dump(mode="python", exclude_unset=True, by_alias=True)


# ---- configuration (the resolved cell, as the grid stage wrote it) ----

class DatasetRef(Part):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class LossRef(Part):
    name: str
    gamma: float = 2.0
    class_weights: str | None = None
    id: str | None = None


class TrainSettings(Part):
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "poly"
    poly_power: float = 0.9
    crop: list[int] = Field(default_factory=lambda: [128, 256])
    scale_range: list[float] = Field(default_factory=lambda: [0.5, 2.0])
    hflip: bool = True
    precision: str = "auto"
    deterministic: bool = False
    channels_last: bool = False
    compile: str | None = None
    num_workers: int | str = "auto"
    eval_every: int = 1
    world_size: int = 1
    sync_bn: bool | str = "auto"
    budget: dict[str, float] | None = None  # {tflops: X}: train until the training FLOPs reach X (issue 21)


class TTASettings(Part):
    scales: list[float] = Field(default_factory=lambda: [1.0])
    flip: bool = False


class EvalSettings(Part):
    split: str = "val"
    batch_size: int = 8
    size: list[int] | None = None
    max_images: int | None = None
    select: str = "last"
    select_split: str | None = None
    holdout: float | None = None
    mode: str | None = None  # the inference protocol (issue 22; absent before, and when unset)
    crop: list[int] | None = None
    stride: list[int] | None = None
    tta: TTASettings | None = None
    datasets: list[dict[str, Any]] | None = None
    corruptions: dict[str, Any] | None = None


class MeasureSettings(Part):
    enabled: bool = True
    budget_s: float | None = None
    warmup: int = 1
    iters: int = 3
    batch_size: int = 8
    macs: bool = True
    memory: bool = True
    threads: int | None = None
    runtimes: list[str] | None = None  # deployment (issue 23; absent before, and at the default [torch])
    precisions: list[str] | None = None
    int8_calibration_images: int | None = None


class TrialRef(Part):
    """A tuning trial's place (segbench.grid.cells.TrialSpec): its study, its number, the holdout it is scored on."""

    study: str
    number: int
    holdout: float


class CellConfig(Part):
    """The cell's resolved configuration (`Cell.resolved()`); `segbench.grid.cells.Cell` validates it for reuse."""

    dataset: DatasetRef
    model: str
    encoder: str
    loss: LossRef
    seed: int
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    encoder_weights: str | None = None
    weights: str | None = None  # pretrained encoder weights by name (absent: random initialisation)
    trial: TrialRef | None = None  # set on the cells of a tuning study only (absent: a grid's cell)

    def without_seed(self) -> dict[str, Any]:
        """The configuration as stored, minus the seed: what cells that differ only by seed share."""
        return {key: value for key, value in self.to_json().items() if key != "seed"}


# ---- how and where it ran ----

class ErrorInfo(Part):
    """Why a cell did not finish: `kind` (see store.TRANSIENT_FAILURES) and one message; details by kind (traceback,
    where the loss diverged, the log tail of a worker that died, the rank that failed)."""

    kind: str
    message: str
    traceback: str | None = None
    log_tail: str | None = None
    iteration: int | None = None
    nonfinite_iteration: int | None = None
    last_finite_loss: float | None = None
    rank: int | None = None
    exitcode: int | None = None


class LockInfo(Part):
    file: str
    sha256: str


class DeviceInfo(Part):
    type: str
    torch_threads: int | None = None
    name: str | None = None


class Environment(Part):
    python: str | None = None
    platform: str | None = None
    hostname: str | None = None
    cpu_count: int | None = None
    packages: dict[str, str | None] = Field(default_factory=dict)
    git_commit: str | None = None
    lock: LockInfo | None = None
    device: DeviceInfo | None = None


class Execution(Part):
    """Where the cell ran: the executor's placement (threads, GPUs; a Ray node's id and address)."""

    executor: str | None = None
    threads: int | None = None
    host: str | None = None
    gpu_ids: list[int | str] | None = None  # CUDA device indices; Ray names them as strings
    node_id: str | None = None
    node_ip: str | None = None


class OomRetry(Part):
    batch_size: int
    error: str


class Distributed(Part):
    world_size: int = 1
    backend: str | None = None
    global_batch_size: int | None = None
    batch_size_per_process: int | None = None
    sync_bn: bool | None = None
    threads_per_rank: int | None = None
    launcher: str | None = None


class Precision(Part):
    requested: str | None = None
    used: str | None = None
    autocast_dtype: str | None = None
    grad_scaler: Any = None
    channels_last: bool | None = None
    compile: str | None = None
    deterministic: bool | None = None
    cudnn_benchmark_train: bool | None = None


# ---- what it measured: data, metrics, selection, history ----

class DatasetInfo(Part):
    name: str
    classes: list[str]
    ignore_index: int | None = None
    palette: list[list[int]] | None = None
    num_train: int | None = None
    num_val: int | None = None
    num_select: int | None = None


class PerClass(Part):
    iou: list[float | None] = Field(default_factory=list)
    dice: list[float | None] = Field(default_factory=list)
    precision: list[float | None] = Field(default_factory=list)
    recall: list[float | None] = Field(default_factory=list)
    specificity: list[float | None] = Field(default_factory=list)
    gt_pixels: list[int] = Field(default_factory=list)
    pred_pixels: list[int] = Field(default_factory=list)
    gt_share: list[float | None] = Field(default_factory=list)


class Metrics(Part):
    """The metrics of the selected weights on the reported split, all from one confusion matrix (fractions; None
    where undefined). Keys are the metric catalogue's (segbench.metrics.catalogue)."""

    pixel_accuracy: float | None = None
    miou: float | None = None
    mdice: float | None = None
    mprecision: float | None = None
    mrecall: float | None = None
    fwiou: float | None = None
    micro_iou: float | None = None
    micro_dice: float | None = None
    micro_precision: float | None = None
    micro_recall: float | None = None
    micro_specificity: float | None = None
    per_class: PerClass | None = None
    num_pixels: int | None = None
    num_classes: int | None = None

    def value(self, key: str) -> float | None:
        """A metric by its catalogue key (None when this record has no such metric)."""
        return getattr(self, key, None) if key in type(self).model_fields else (self.__pydantic_extra__ or {}).get(key)


class CalibrationBin(Part):
    lower: float
    upper: float
    pixels: int
    accuracy: float | None = None  # None: an empty bin
    confidence: float | None = None


class Calibration(Part):
    """Expected calibration error of the top-class confidence over the reported split, and its reliability diagram
    (segbench.metrics.calibration)."""

    ece: float | None = None
    pixels: int | None = None
    bins: list[CalibrationBin] = Field(default_factory=list)
    method: str | None = None


class Boundary(Part):
    """Boundary IoU per class over the reported split (segbench.metrics.boundary): counts, per-class values, their
    mean, and the boundary width d used (pixels, one per evaluated image size)."""

    boundary_miou: float | None = None
    per_class: list[float | None] = Field(default_factory=list)
    intersection: list[int] = Field(default_factory=list)
    union: list[int] = Field(default_factory=list)
    width_px: list[int] = Field(default_factory=list)
    method: str | None = None


class DomainMetrics(Part):
    miou: float | None = None
    pixel_accuracy: float | None = None
    mdice: float | None = None
    num_pixels: int | None = None
    per_class_iou: list[float | None] = Field(default_factory=list)


class DomainEvaluation(Part):
    """The selected weights on a further dataset of eval.datasets (segbench.cell.domains)."""

    dataset: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    split: str | None = None
    images: int | None = None
    classes_mapped: int | None = None
    unmapped_classes: list[str] = Field(default_factory=list)
    metrics: DomainMetrics | None = None
    confusion_matrix: list[list[int]] | None = None
    seconds: float | None = None
    method: str | None = None


class CorruptionResult(Part):
    name: str
    severity: int
    miou: float | None = None
    pixel_accuracy: float | None = None


class Corruptions(Part):
    """The selected weights under eval.corruptions (segbench.cell.robustness)."""

    names: list[str] = Field(default_factory=list)
    severities: list[int] = Field(default_factory=list)
    images: int | None = None
    clean_miou: float | None = None
    results: list[CorruptionResult] = Field(default_factory=list)
    per_corruption: dict[str, float | None] = Field(default_factory=dict)
    mean_corrupted_miou: float | None = None
    worst: str | None = None
    relative_robustness: float | None = None
    seconds: float | None = None
    kept: int | None = None  # results kept from an earlier evaluation of the same weights (segbench.cell.attached)
    method: str | None = None


class DeployForm(Part):
    """One runtime x precision of measure.runtimes x measure.precisions (segbench.cell.deployment)."""

    runtime: str
    precision: str
    status: str  # reference (eager fp32), ok, skipped or failed
    reason: str | None = None  # why skipped or failed, one sentence
    file: str | None = None  # the ONNX model it ran, in the cell folder
    providers: list[str] | None = None  # ONNX Runtime's execution providers of the session
    calibration_images: int | None = None  # INT8
    miou: float | None = None
    pixel_accuracy: float | None = None
    miou_change: float | None = None  # minus eager fp32's
    agreement: float | None = None  # share of valid pixels predicted as eager fp32 predicts them
    max_abs_diff: float | None = None
    pixels: int | None = None
    latency: dict[str, Any] | None = None  # batch_1, batch_n (latency stats, ratio_to_eager), threads


class Deployment(Part):
    """The selected weights in each deployed form (segbench.cell.deployment)."""

    reference: str | None = None
    threads: int | None = None
    onnx: dict[str, Any] | None = None  # the export: file, opset, exporter, input, seconds, versions
    int8: dict[str, Any] | None = None  # the quantization: file, format, calibration, images, seconds
    forms: list[DeployForm] = Field(default_factory=list)
    method: str | None = None

    def form(self, runtime: str, precision: str) -> DeployForm | None:
        return next((f for f in self.forms if (f.runtime, f.precision) == (runtime, precision)), None)


class Reevaluation(Part):
    """One evaluation of a finished cell's saved weights with other evaluation settings than those it was evaluated
    with before (segbench.cell.attached.evaluate_trained): nothing trained."""

    at: str | None = None
    seconds: float | None = None
    device: str | None = None
    host: str | None = None
    protocol: str | None = None
    evaluated: list[str] = Field(default_factory=list)
    kept: str | None = None


class Interval(Part):
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    resamples: int | None = None
    seed: int | None = None
    method: str | None = None


class PerImage(Part):
    index: int
    valid_pixels: int
    correct_pixels: int
    sample_id: str | None = None


class PerImageCounts(Part):
    file: str
    images: int
    classes: int
    arrays: dict[str, str] = Field(default_factory=dict)


class Example(Part):
    rank: str
    sample_id: str | None = None
    pixel_accuracy: float | None = None
    image: str
    label: str
    pred: str


class Epoch(Part):
    """One row of the training history: an epoch, with its evaluation where one ran."""

    epoch: int
    iterations: int | None = None
    train_loss: float | None = None
    lr: float | None = None
    epoch_time_s: float | None = None
    val_miou: float | None = None
    val_pixel_accuracy: float | None = None
    eval_time_s: float | None = None
    select_miou: float | None = None


class Selection(Part):
    rule: str
    split: str | None = None
    holdout: float | None = None
    epoch: int | None = None
    select_miou: float | None = None
    evaluations: int | None = None
    description: str | None = None


class Weights(Part):
    """The pretrained encoder weights a cell started from: their name, where they came from, and the sha256 of the
    file that was loaded."""

    name: str  # e.g. "imagenet", "ssl"; for a `tu-` encoder "imagenet" means timm's default pretrained tag
    library: str | None = None  # "smp", "timm", or "file" (the grid's encoder_weights mapping)
    repo_id: str | None = None  # the Hugging Face Hub repository
    revision: str | None = None
    file: str | None = None  # the file loaded (in the hub cache, or the local path)
    sha256: str | None = None


class Budget(Part):
    """What a cell's training length was set by: `epochs`, `iterations` or `tflops` (equal training compute), and for
    a compute budget the iterations it implied."""

    basis: str
    tflops: float | None = None
    iterations: int | None = None
    train_flops_per_iteration: float | None = None
    method: str | None = None


class Tuning(Part):
    """How a tuned cell's train settings were chosen (grid `tune:`): its configuration's study, the sampler and the
    budget, the best parameters and their score on a holdout of the training split (never the reported split)."""

    study: str
    sampler: str
    trials: int  # the budget: trials per configuration
    completed: int | None = None  # trials that finished with a score
    space: dict[str, dict[str, Any]] | None = None  # train key -> {log_uniform | uniform | int | choice: ...}
    best_params: dict[str, float | int] | None = None
    best_value: float | None = None  # the best trial's objective: its mIoU on the holdout
    objective: str | None = None
    holdout: float | None = None  # fraction of the training split that scored the trials
    seed: int | None = None  # the study's seed: its sampler and the holdout it carved


# ---- what it cost ----

class Params(Part):
    total: int | None = None
    trainable: int | None = None
    encoder: int | None = None
    decoder: int | None = None


class Macs(Part):
    counter: str | None = None
    counter_version: str | None = None
    input_shape: list[int] | None = None
    macs: int | None = None
    gmacs: float | None = None
    gflops: float | None = None
    unsupported_ops: dict[str, int] = Field(default_factory=dict)
    convention: str | None = None
    error: str | None = None


class GpuInfo(Part):
    name: str | None = None
    capability: str | None = None
    cuda: str | None = None
    total_memory_bytes: int | None = None


class CpuInfo(Part):
    vendor: str | None = None
    family: str | None = None
    model: str | None = None
    stepping: str | None = None
    model_name: str | None = None
    vector_flags: list[str] = Field(default_factory=list)
    caches: dict[str, str] = Field(default_factory=dict)
    logical_cores: int | None = None


class Machine(Part):
    """The fingerprint latency was timed under (segbench.measure.machine): `id` digests everything else."""

    id: str
    label: str | None = None
    version: int | None = None
    method: str | None = None
    cpu: CpuInfo | None = None
    threads: int | None = None
    torch: str | None = None
    device_type: str | None = None
    gpu: GpuInfo | None = None


class LatencyConditions(Part):
    device: str | None = None
    device_type: str | None = None
    threads: int | None = None
    interop_threads: int | None = None
    dtype: str | None = None
    precision: str | None = None
    autocast: str | None = None
    memory_format: str | None = None
    cudnn_benchmark: bool | None = None
    compile: str | None = None
    mode: str | None = None
    torch_version: str | None = None
    machine: Machine | None = None
    budget_s: float | None = None
    min_warmup: int | None = None
    min_iters: int | None = None
    timing_s: float | None = None


class LatencyStats(Part):
    """Timed iterations at one batch size (milliseconds per call; throughput in images per second)."""

    input_shape: list[int] | None = None
    warmup: int | None = None
    batch_size: int | None = None
    n: int | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_mean: float | None = None
    latency_ms_std: float | None = None
    latency_ms_min: float | None = None
    throughput_images_per_s: float | None = None
    workload: str | None = None  # the reference only
    description: str | None = None  # the reference only


class LatencyRound(Part):
    n: int | None = None
    latency_ms_p50: float | None = None
    reference_ms_p50: float | None = None
    latency_ratio: float | None = None


class Stability(Part):
    method: str | None = None
    rounds: list[LatencyRound] = Field(default_factory=list)
    spread: float | None = None


class Latency(Part):
    conditions: LatencyConditions | None = None
    batch_1: LatencyStats | None = None
    batch_n: LatencyStats | None = None
    reference: LatencyStats | None = None
    latency_ratio: float | None = None
    latency_ratio_method: str | None = None
    stability: Stability | None = None
    protocol: LatencyStats | None = None  # one full image under a slide or TTA evaluation protocol (issue 22)
    error: str | None = None


class MemoryPhase(Part):
    """Peak memory of one phase: CUDA allocator peaks, or the resident-set increase of a fresh CPU process."""

    input_shape: list[int] | None = None
    allocated_before_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    increase_bytes: int | None = None
    peak_source: str | None = None
    error: str | None = None

    def peak_bytes(self) -> int | None:
        """CUDA peak allocated, or the CPU resident-set increase."""
        return self.peak_allocated_bytes if self.peak_allocated_bytes is not None else self.increase_bytes


class MemoryEstimate(Part):
    tool: str | None = None
    tool_version: str | None = None
    input_shape: list[int] | None = None
    mult_adds: int | None = None
    forward_backward_bytes: int | None = None
    params_bytes: int | None = None
    input_bytes: int | None = None
    note: str | None = None
    error: str | None = None


class Memory(Part):
    device_type: str | None = None
    method: str | None = None
    inference: MemoryPhase | None = None
    train_step: MemoryPhase | None = None
    estimate: MemoryEstimate | None = None


class Cost(Part):
    params: Params | None = None
    input_shape: list[int] | None = None
    macs: Macs | None = None
    latency: Latency | None = None
    memory: Memory | None = None
    error: str | None = None


class Throughput(Part):
    train_flops_per_s: float | None = None
    train_gflops_per_s: float | None = None
    forward_macs_per_image: int | None = None
    crop: list[int] | None = None
    images_per_s: float | None = None
    precision: str | None = None
    method: str | None = None
    mfu: float | None = None
    peak_flops: float | None = None
    peak_basis: str | None = None
    peak_source: str | None = None


class DataLoaderInfo(Part):
    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None


class Timing(Part):
    wall_time_s: float | None = None
    train_time_s: float | None = None
    eval_time_s: float | None = None
    train_step_s_median: float | None = None
    train_images_per_s: float | None = None
    step_time_method: str | None = None
    first_steps: int | None = None
    first_steps_s: float | None = None
    compile_time_s: float | None = None
    data_loader: DataLoaderInfo | None = None
    iterations: int | None = None
    epochs: int | None = None
    resumed_from_epoch: int | None = None


# ---- the record ----

class Record(Part):
    """One cell's record (`<results>/cells/<cell id>/record.json`): identity, configuration, status, and for a cell
    that finished its metrics, history, selection, cost and timing."""

    schema_version: int = RECORD_SCHEMA_VERSION
    segbench_version: str | None = None
    semantics_version: int = 1
    cell_id: str
    slug: str
    config_hash: str
    config: CellConfig
    status: str
    error: ErrorInfo | None = None
    written_at: str | None = None
    attempt: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    environment: Environment | None = None
    device: str | None = None
    execution: Execution | None = None
    oom_retries: list[OomRetry] | None = None
    dataset: DatasetInfo | None = None
    metrics: Metrics | None = None
    intervals: dict[str, Interval] | None = None
    domains: list[DomainEvaluation] | None = None  # eval.datasets (issue 22)
    corruptions: Corruptions | None = None  # eval.corruptions (issue 22)
    reevaluations: list[Reevaluation] | None = None  # the saved weights evaluated again, training nothing
    deployment: Deployment | None = None  # measure.runtimes x measure.precisions (issue 23)
    calibration: Calibration | None = None  # records of finished cells from issue 22 on
    boundary: Boundary | None = None
    confusion_matrix: list[list[int]] | None = None
    per_image: list[PerImage] | None = None
    per_image_counts: PerImageCounts | None = None
    examples: list[Example] | None = None
    history: list[Epoch] | None = None
    selection: Selection | None = None
    checkpoint: str | None = None
    train_batch_size: int | None = None
    distributed: Distributed | None = None
    cost: Cost | None = None
    precision: Precision | None = None
    throughput: Throughput | None = None
    timing: Timing | None = None
    weights: Weights | None = None
    budget: Budget | None = None
    tuning: Tuning | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error_kind(self) -> str | None:
        return self.error.kind if self.error else None


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older record's JSON brought to the current format; the one place that knows older formats.

    - Records of benchmark-semantics version 1 kept their selected weights in `best.pt` and did not name the file:
      they get `checkpoint: best.pt` (where the cell finished; a failed cell has no weights);
    - their `selection` was a sentence (the weights with the best mIoU on the reported split) and the epoch was
      `best_epoch`: they become the section with rule `best` on that split, that epoch and the sentence.
    """
    data = dict(data)
    if data.get("semantics_version", 1) < 2 and data.get("status") == "ok" and not data.get("checkpoint"):
        data["checkpoint"] = LEGACY_CHECKPOINT_FILE
    if isinstance(data.get("selection"), str):
        split = ((data.get("config") or {}).get("eval") or {}).get("split", "val")
        data["selection"] = {"rule": "best", "split": split, "epoch": data.pop("best_epoch", None),
                             "description": data["selection"]}
    return data


def as_record(value: Record | dict[str, Any]) -> Record:
    """A record given as its JSON (tests, older callers) or already typed."""
    return value if isinstance(value, Record) else Record.model_validate(migrate(value))


def unknown_fields(part: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of the fields this segbench's schema does not know (a newer segbench wrote them, or a writer
    added a field without describing it here)."""
    found = [f"{prefix}{key}" for key in (part.__pydantic_extra__ or {})]
    for name in type(part).model_fields:
        value = getattr(part, name)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
        if isinstance(value, BaseModel):
            found += unknown_fields(value, f"{prefix}{name}.")
        elif items is not None:
            for key, item in items:
                if isinstance(item, BaseModel):
                    found += [path for path in unknown_fields(item, f"{prefix}{name}[{key}].")]
    return sorted(set(_collapse(found)))


def _collapse(paths: list[str]) -> list[str]:
    """history[0].x, history[1].x -> history[].x"""
    import re

    return [re.sub(r"\[\d+\]", "[]", path) for path in paths]


# ---- the summary ----

class SummaryEnvironment(Part):
    platform: str | None = None
    device: str | None = None
    threads: int | None = None
    torch: str | None = None
    git_commit: str | None = None


class SupersededRef(Part):
    slug: str
    config_hash: str
    cell_id: str


class SummaryRowBase(Part):
    """Identity and axes; the catalogue's summary fields, then where the latency was timed, are added below."""

    cell_id: str
    config_hash: str | None = None
    status: str | None = None
    error: str | None = None
    dataset: str | None = None
    model: str | None = None
    encoder: str | None = None
    loss: str | None = None
    seed: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, key: str) -> Any:
        """A field by its catalogue key, or a deployment field (segbench.records.rows.DEPLOYMENT_FIELD), which a row
        has only where that form was measured (None otherwise)."""
        return getattr(self, key, None)


# Version 2: where and how steadily the latency was timed (segbench.records.rows.latency_provenance); `machine` is
# the fingerprint id (None: timed before fingerprints, never gated).
PROVENANCE_FIELDS: dict[str, Any] = {"machine": (str | None, None), "latency_spread": (float | None, None),
                                     "latency_workload": (str | None, None)}
# One summary row, its fields in the file's order: identity, a field per summary metric of the catalogue (the only
# ones `compare` checks; counts stay integers), then the latency's provenance, then the hash of the cell's
# evaluation settings (segbench.grid.cells.evaluation_hash; None: all at their defaults), which the gate compares
# beside the config hash.
SummaryRow = create_model(
    "SummaryRow", __base__=SummaryRowBase,
    **{key: (int | float | None, None) for key in SUMMARY_FIELDS if key not in SummaryRowBase.model_fields},
    **PROVENANCE_FIELDS,
    evaluation=(str | None, None),
)


class Summary(Part):
    """summary.json: one row per cell slug (the newest record of each), the machines their latency was timed on,
    and the records superseded by newer ones with another config hash."""

    kind: str
    version: int
    created_at: str | None = None
    source: str | None = None
    environment: SummaryEnvironment = Field(default_factory=SummaryEnvironment)
    machines: dict[str, Machine] = Field(default_factory=dict)
    cells: dict[str, SummaryRow] = Field(default_factory=dict)  # type: ignore[valid-type]
    superseded: list[SupersededRef] = Field(default_factory=list)
    upgraded_from: int | None = None  # the version a summary was read as, when older than SUMMARY_VERSION

    def ok_count(self) -> int:
        return sum(row.ok for row in self.cells.values())


def json_schema(document: str) -> dict[str, Any]:
    """The JSON Schema of `record` (record.json) or `summary` (summary.json), with the format's version."""
    model, version = {"record": (Record, RECORD_SCHEMA_VERSION), "summary": (Summary, SUMMARY_VERSION)}[document]
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = (f"segbench {document}.json, format version {version} (segbench.records.schema); objects "
                          "accept fields a newer segbench adds")
    return schema
