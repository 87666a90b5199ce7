"""How close training runs to the hardware: achieved FLOP/s, and MFU against the device's dense peak.

Achieved training FLOP/s is the usual estimate: a training step costs about 3 forward passes (forward, and a
backward pass of about twice the forward's work), so 3 x forward FLOPs per image at the training crop size x
measured images/s. MFU (model FLOPs utilisation) divides it by the device's dense peak for the precision used; only
devices in PEAKS get one, matched on their name, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

METHOD = ("3 x forward FLOPs (fvcore, 2 x MACs) per image at the training crop size x measured training images/s "
          "(median step); MFU = that / the device's dense peak for the precision used")

DATASHEET_SPARSE = "tensor-core figures there are with 2:4 sparsity; the dense figures here are half of them"


@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s of one device: FP32 (CUDA cores), TF32, BF16 and FP16 (tensor cores, FP32 accumulate)."""

    pattern: str  # regular expression searched in torch.cuda.get_device_name()
    device: str
    fp32: float
    tf32: float
    bf16: float
    fp16: float
    source: str


T = 1e12
# The first match wins, so the more specific names come first. MIG slices (a fraction of the GPU) match none.
PEAKS: tuple[Peak, ...] = (
    Peak(r"H200 NVL", "NVIDIA H200 NVL", 60 * T, 835 / 2 * T, 1671 / 2 * T, 1671 / 2 * T,
         f"NVIDIA H200 Tensor Core GPU datasheet, H200 NVL column ({DATASHEET_SPARSE})"),
    Peak(r"H200", "NVIDIA H200 SXM", 67 * T, 989 / 2 * T, 1979 / 2 * T, 1979 / 2 * T,
         f"NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column ({DATASHEET_SPARSE})"),
    Peak(r"H100 NVL", "NVIDIA H100 NVL", 60 * T, 835 / 2 * T, 1671 / 2 * T, 1671 / 2 * T,
         f"NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column ({DATASHEET_SPARSE})"),
    Peak(r"H100 PCIe", "NVIDIA H100 PCIe", 51 * T, 756 / 2 * T, 1513 / 2 * T, 1513 / 2 * T,
         f"NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column ({DATASHEET_SPARSE})"),
    Peak(r"H100 (SXM|80GB HBM3)", "NVIDIA H100 SXM", 67 * T, 989 / 2 * T, 1979 / 2 * T, 1979 / 2 * T,
         f"NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column ({DATASHEET_SPARSE})"),
    Peak(r"A100\b", "NVIDIA A100 (SXM4 or PCIe, 40 or 80 GB)", 19.5 * T, 156 * T, 312 * T, 312 * T,
         "NVIDIA A100 Tensor Core GPU datasheet (dense figures as listed; both form factors share them)"),
    Peak(r"\bL4\b", "NVIDIA L4", 30.3 * T, 120 / 2 * T, 242 / 2 * T, 242 / 2 * T,
         f"NVIDIA L4 Tensor Core GPU datasheet ({DATASHEET_SPARSE})"),
    Peak(r"RTX 4090$", "NVIDIA GeForce RTX 4090", 82.6 * T, 82.6 * T, 165.2 * T, 165.2 * T,
         "NVIDIA Ada Lovelace GPU architecture whitepaper, appendix table for the GeForce RTX 4090 (dense, FP32 "
         "accumulate; FP16 with FP16 accumulate would be twice as fast)"),
)


def find_peak(device_name: str) -> Peak | None:
    """The PEAKS entry of a CUDA device name such as 'NVIDIA H100 80GB HBM3'; None when unknown or a MIG slice."""
    if "MIG" in device_name:
        return None
    return next((peak for peak in PEAKS if re.search(peak.pattern, device_name)), None)


def peak_flops(device_name: str, precision: str, tf32_allowed: bool) -> tuple[float, str, Peak] | None:
    """(dense peak FLOP/s, which peak, table entry) for a run in `precision` ('fp32', 'bf16' or 'fp16'): the
    tensor-core peak for bf16 and fp16; for fp32 the TF32 peak when TF32 is allowed, else the FP32 peak."""
    peak = find_peak(device_name)
    if peak is None:
        return None
    if precision == "fp32":
        if tf32_allowed:
            return peak.tf32, "tf32 tensor cores (TF32 allowed)", peak
        return peak.fp32, "fp32 CUDA cores (TF32 not allowed)", peak
    return getattr(peak, precision), f"{precision} tensor cores", peak


def training_throughput(forward_macs: int | None, images_per_s: float | None, crop: tuple[int, int],
                        device: dict[str, Any], precision: str) -> dict[str, Any]:
    """The record's `throughput`: achieved training FLOP/s (see METHOD) and, on a known GPU, MFU.

    forward_macs: fvcore MACs of one forward pass of one image at the training crop (H, W); images_per_s: training
    images per second; device: segbench.env.device_description of the training device.
    """
    flops_per_s = 3 * 2 * forward_macs * images_per_s if forward_macs and images_per_s else None
    record: dict[str, Any] = {
        "train_flops_per_s": flops_per_s,
        "train_gflops_per_s": flops_per_s / 1e9 if flops_per_s is not None else None,
        "forward_macs_per_image": forward_macs,
        "crop": list(crop),
        "images_per_s": images_per_s,
        "precision": precision,
        "method": METHOD,
        "mfu": None,
        "peak_flops": None,
        "peak_basis": None,
        "peak_source": None,
    }
    if device.get("type") != "cuda":
        record["peak_source"] = "no peak table for CPUs: achieved GFLOP/s only"
        return record
    tf32 = device.get("tf32") or {}
    found = peak_flops(str(device.get("name", "")), precision,
                       bool(tf32.get("matmul_allow_tf32") or tf32.get("cudnn_allow_tf32")))
    if found is None:
        record["peak_source"] = f"'{device.get('name')}' is not in segbench's peak table: no MFU"
        return record
    peak, basis, entry = found
    record.update(peak_flops=peak, peak_basis=f"{entry.device}, {basis}, dense", peak_source=entry.source,
                  mfu=flops_per_s / peak if flops_per_s is not None else None)
    return record
