"""Deployed forms of a trained model (`measure.runtimes` x `measure.precisions`) and their latency against eager
PyTorch in the same process.

Forms:
- `torch` fp32 is the eager model, every other form's reference; `torch` bf16/fp16 run it under autocast.
- `torch-compile`: `torch.compile` (inductor; on CUDA mode "reduce-overhead", which records CUDA graphs), fp32 or under
  autocast.
- `onnxruntime` and `tensorrt`: the model exported once to ONNX by PyTorch's exporter (`torch.onnx.export(...,
  dynamo=True)`, opset ONNX_OPSET, a dynamic batch dimension, checked by `onnx.checker`) and run by ONNX Runtime: its
  CPU provider with the measurement's threads, its CUDA provider on a GPU (onnxruntime-gpu), TensorRT through its
  TensorRT provider (fp16 with `trt_fp16_enable`). INT8: static post-training quantization by ONNX Runtime's tools
  (QDQ format, uint8 activations, per-channel int8 weights, MinMax calibration on training images the caller picks).

`plan` says which combination applies on a device and why the others are skipped; a form that cannot be built is
a BuildFailed with one sentence. Accuracy is measured by the cell stage (segbench.cell.deployment), which evaluates
each form like the trained model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.devices import autocast_context, synchronize
from segbench.errors import ConfigError
from segbench.grid.schema import MeasureConfig
from segbench.measure.latency import calibrate, latency_stats

ONNX_OPSET = 18
REFERENCE = ("torch", "fp32")  # every form's latency is timed against this one, alternately, in the same process
ONNX_RUNTIMES = ("onnxruntime", "tensorrt")
DEPLOY_EXTRA = "deploy"
DEPLOY_PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # the exporter needs onnxscript


class BuildFailed(Exception):
    """A deployed form could not be built (an operator the exporter cannot express, a quantizer error): the cell
    stays ok and its record says why, in one sentence."""


@dataclass(frozen=True)
class Form:
    runtime: str
    precision: str
    skipped: str | None = None  # why this combination is not measured here, or None


def missing_packages() -> list[str]:
    """The packages of the `deploy` extra that this Python cannot import."""
    return [package for package in DEPLOY_PACKAGES if importlib.util.find_spec(package) is None]


def require_deploy_extra(what: str, instead: str | None = None) -> None:
    """ConfigError naming the install command (and `instead`, another way out) when the `deploy` extra's packages
    are missing; `what` is the subject of the sentence, e.g. "segbench export onnx"."""
    missing = missing_packages()
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)} (the `{DEPLOY_EXTRA}` extra); install it with pip "
                          f"install 'segbench[{DEPLOY_EXTRA}]'{f' or {instead}' if instead else ''}.")


def check_deploy_extra(runtimes: Iterable[str]) -> None:
    """ConfigError (one sentence, before anything is written) when the grid asks for a runtime whose packages are
    missing."""
    wanted = [runtime for runtime in runtimes if runtime in ONNX_RUNTIMES]
    if wanted:
        require_deploy_extra(f"measure.runtimes asks for {', '.join(wanted)}, which",
                             f"remove {' and '.join(wanted)} from measure.runtimes")


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def plan(settings: MeasureConfig, device: torch.device) -> list[Form]:
    """Every runtime x precision of the settings, in their order, with the eager fp32 reference first; each either
    measured or skipped with the reason."""
    forms = [Form(*REFERENCE)]
    providers = available_providers() if any(r in ONNX_RUNTIMES for r in settings.runtimes) else []
    for runtime in settings.runtimes:
        for precision in settings.precisions:
            if (runtime, precision) != REFERENCE:
                forms.append(Form(runtime, precision, _skip_reason(runtime, precision, device, providers)))
    return forms


def _skip_reason(runtime: str, precision: str, device: torch.device, providers: list[str]) -> str | None:
    cuda = device.type == "cuda"
    if precision == "int8" and runtime != "onnxruntime":
        return ("INT8 is measured as ONNX Runtime's static post-training quantization: use runtime onnxruntime"
                if runtime != "tensorrt" else "TensorRT INT8 needs a calibration table, which segbench does not build "
                                              "yet; ONNX Runtime's INT8 (runtime onnxruntime) is measured instead")
    if precision == "fp16" and not cuda:
        return "fp16 runs on a GPU; on the CPU it is skipped"
    if runtime == "tensorrt":
        if not cuda or "TensorrtExecutionProvider" not in providers:
            return ("needs ONNX Runtime's TensorrtExecutionProvider on a GPU (onnxruntime-gpu with TensorRT), "
                    f"which this machine does not have (providers: {', '.join(providers) or 'none'})")
        if precision == "bf16":
            return "TensorRT through ONNX Runtime offers fp32, fp16 and INT8, not bf16"
    if runtime == "onnxruntime":
        if precision == "bf16":
            return "ONNX Runtime has no bf16 path for these models; bf16 is measured with torch and torch-compile"
        if precision == "fp16":
            if "CUDAExecutionProvider" not in providers:
                return ("fp16 needs ONNX Runtime's CUDAExecutionProvider (onnxruntime-gpu), which this machine does "
                        f"not have (providers: {', '.join(providers) or 'none'})")
            return "an fp16 ONNX model is not built yet; fp16 is measured with torch, torch-compile and tensorrt"
        if precision == "int8" and cuda:
            return "ONNX Runtime's INT8 (QDQ) model runs on its CPU provider: measured on a CPU run of the grid"
    return None


def session_providers(runtime: str, precision: str, device: torch.device) -> list[Any]:
    """ONNX Runtime execution providers of a form, most preferred first, among those this onnxruntime has (a CPU
    build on a GPU machine runs on the CPU: the record names the providers the session used)."""
    wanted: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda" and precision != "int8":
        wanted.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    if runtime == "tensorrt":
        options = {"device_id": device.index or 0, "trt_fp16_enable": precision == "fp16"}
        wanted.insert(0, ("TensorrtExecutionProvider", options))
    available = set(available_providers())
    return [provider for provider in wanted if (provider[0] if isinstance(provider, tuple) else provider) in available]


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> dict[str, Any]:
    """Export `model` (in eval mode, fp32) to `path` with dynamic batch, height and width (else a dynamic batch
    only), check it, and say how; BuildFailed when the exporter or the checker refuses it. Written atomically."""
    import onnx

    started = time.perf_counter()
    model = model.eval()
    example = torch.randn(1, *input_shape, device=next(model.parameters()).device)
    try:
        try:  # batch, height and width dynamic, so sliding windows and TTA scales run through one model
            dynamic = {0: torch.export.Dim("batch"), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                                        dynamic_shapes=(dynamic,))
            shape: list[Any] = ["batch", input_shape[0], "height", "width"]
        except Exception:  # an architecture whose graph needs its input size: only the batch stays dynamic
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            shape = ["batch", *input_shape]
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            program.save(temporary)
            onnx.checker.check_model(temporary)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except Exception as exc:  # the exporter raises many kinds; each becomes the record's one sentence
        raise BuildFailed(f"ONNX export failed ({type(exc).__name__}: {_first_line(exc)})") from None
    return {"file": path.name, "opset": ONNX_OPSET, "exporter": "torch.onnx.export(dynamo=True)",
            "input": shape, "seconds": time.perf_counter() - started,
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__}}


def quantize_int8(source: Path, target: Path, batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """Static post-training INT8 quantization of the ONNX model `source` into `target` (QDQ), calibrated on
    `batches` ([1, 3, H, W] float32 inputs); BuildFailed when the quantizer refuses the model."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    batches = list(batches)
    input_name = _input_name(source)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.remaining, None)
            return None if batch is None else {input_name: batch}

    # ONNX Runtime's tools write scratch files into the working directory: they run inside a folder of their own.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, contextlib.chdir(scratch), _quiet_root_logger():
        prepared = Path(scratch) / "prepared.onnx"
        try:  # graph optimisation and ONNX shape inference before quantization, as ONNX Runtime recommends; its
            # symbolic shape inference is skipped: it cannot follow the exports' dynamic height and width
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            preprocessed = True
        except Exception:  # a graph the optimiser refuses: quantize the export as it is
            prepared, preprocessed = source, False
        try:
            quantize_static(str(prepared), str(Path(scratch) / target.name), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:
            raise BuildFailed(f"INT8 quantization failed ({type(exc).__name__}: {_first_line(exc)})") from None
        os.replace(Path(scratch) / target.name, target)
    return {"file": target.name, "format": "QDQ", "activations": "uint8", "weights": "int8, per channel",
            "calibration": "MinMax", "images": len(batches), "preprocessed": preprocessed,
            "seconds": time.perf_counter() - started}


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer warns through the root logger (e.g. "Please consider pre-processing"): what it did
    is in the record, so its warnings are not printed into the user's run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else "no message")[:300]


class OnnxForward(nn.Module):
    """An ONNX Runtime session as a module: float32 NCHW tensor in, logits tensor out, on the input's device."""

    def __init__(self, path: Path, providers: list[Any], threads: int) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise BuildFailed(f"ONNX Runtime cannot load {path.name} ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        self.path = Path(path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().float().contiguous().cpu().numpy()
        try:
            outputs = self.session.run(None, {self.input_name: array})
        except Exception as exc:  # e.g. a model exported with a fixed input size, given another size
            raise BuildFailed(f"ONNX Runtime cannot run {self.path.name} on a {'x'.join(map(str, array.shape))} input "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
        return torch.from_numpy(outputs[0]).to(images.device)


class Autocast(nn.Module):
    """`model` under autocast to `dtype` ('bfloat16' or 'float16'), so its form is timed and evaluated alike."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: str) -> None:
        super().__init__()
        self.model, self.device, self.dtype = model, device, dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.dtype):
            return self.model(images).float()


AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


def torch_form(model: nn.Module, runtime: str, precision: str, device: torch.device) -> nn.Module:
    """The eager or compiled model in `precision` (autocast for bf16 and fp16)."""
    form = model
    if runtime == "torch-compile":
        try:
            form = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)
        except Exception as exc:
            raise BuildFailed(f"torch.compile failed ({type(exc).__name__}: {_first_line(exc)})") from None
    return Autocast(form, device, AUTOCAST[precision]) if precision in AUTOCAST else form


def paired_latency(reference: nn.Module, form: nn.Module, input_shape: tuple[int, int, int], device: torch.device,
                   settings: MeasureConfig) -> dict[str, Any]:
    """Latency of `form` at batch 1 and batch `settings.batch_size`, each timed alternately with the eager
    `reference` in the same process (same warm-up minimums; half the time budget per batch size, shared by the two
    models), and its ratio of medians to the reference's; the first calls (compilation, session warm-up) are
    warm-up."""
    previous = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        result: dict[str, Any] = {}
        for key, batch in (("batch_1", 1), ("batch_n", settings.batch_size)):
            example = torch.randn(batch, *input_shape, device=device)
            times: list[list[float]] = [[], []]

            def one_iteration(times: list[list[float]] = times, example: torch.Tensor = example) -> None:
                for index, model in enumerate((reference, form)):
                    started = time.perf_counter()
                    model(example)
                    synchronize(device)
                    times[index].append(time.perf_counter() - started)

            budget = settings.budget_s / 2 if settings.budget_s else None
            with torch.inference_mode():
                warmup, iters = calibrate(one_iteration, budget, settings.warmup, settings.iters)
                for timed in times:
                    timed.clear()
                for _ in range(iters):
                    one_iteration()
            stats, eager = latency_stats(times[1], batch), latency_stats(times[0], batch)
            result[key] = {**stats, "warmup": warmup, "eager_latency_ms_p50": eager["latency_ms_p50"],
                           "ratio_to_eager": stats["latency_ms_p50"] / eager["latency_ms_p50"]}
        result["threads"] = torch.get_num_threads()
        return result
    finally:
        torch.set_num_threads(previous)
