"""Achieved training FLOP/s and MFU: the peak table matched on device names, never a guess."""

from __future__ import annotations

import pytest

from segbench.measure.throughput import find_peak, peak_flops, training_throughput

T = 1e12


@pytest.mark.parametrize(("name", "device"), [
    ("NVIDIA H200", "NVIDIA H200 SXM"),
    ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 (SXM4 or PCIe, 40 or 80 GB)"),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 (SXM4 or PCIe, 40 or 80 GB)"),
    ("NVIDIA L4", "NVIDIA L4"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
])
def test_known_devices_are_matched_on_their_name(name: str, device: str):
    assert find_peak(name).device == device


@pytest.mark.parametrize("name", ["NVIDIA L40S", "NVIDIA L40", "NVIDIA GeForce RTX 4090 D",
                                  "NVIDIA GeForce RTX 4090 Laptop GPU", "Tesla T4", "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
                                  "NVIDIA A10", ""])
def test_unknown_devices_and_mig_slices_get_no_peak(name: str):
    assert find_peak(name) is None and peak_flops(name, "bf16", True) is None


def test_the_peak_follows_the_precision_and_the_tf32_setting():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16", True)[0] == pytest.approx(989.5 * T)
    assert peak_flops("NVIDIA H100 80GB HBM3", "fp16", False)[0] == pytest.approx(989.5 * T)
    assert peak_flops("NVIDIA A100-SXM4-80GB", "fp32", True)[:2] == (156 * T, "tf32 tensor cores (TF32 allowed)")
    assert peak_flops("NVIDIA A100-SXM4-80GB", "fp32", False)[0] == 19.5 * T
    assert peak_flops("NVIDIA L4", "bf16", True)[0] == pytest.approx(121 * T)
    assert peak_flops("NVIDIA GeForce RTX 4090", "bf16", True)[0] == pytest.approx(165.2 * T)


def gpu(name: str, cudnn_tf32: bool = True) -> dict:
    return {"type": "cuda", "name": name,
            "tf32": {"matmul_allow_tf32": False, "cudnn_allow_tf32": cudnn_tf32, "float32_matmul_precision": "highest"}}


def test_mfu_on_a_known_gpu_is_achieved_over_peak():
    record = training_throughput(10 * 10**9, 400.0, (512, 1024), gpu("NVIDIA H200"), "bf16")
    assert record["train_flops_per_s"] == pytest.approx(3 * 2 * 10e9 * 400)  # 3 x forward FLOPs x images/s
    assert record["train_gflops_per_s"] == pytest.approx(24_000)
    assert record["peak_flops"] == pytest.approx(989.5 * T)
    assert record["mfu"] == pytest.approx(24e12 / 989.5e12)
    assert "datasheet" in record["peak_source"] and "bf16 tensor cores" in record["peak_basis"]
    assert "3 x forward FLOPs" in record["method"] and record["crop"] == [512, 1024]


def test_fp32_mfu_uses_the_tf32_peak_only_when_tf32_is_allowed():
    allowed = training_throughput(10**9, 100.0, (64, 64), gpu("NVIDIA A100-SXM4-40GB"), "fp32")
    refused = training_throughput(10**9, 100.0, (64, 64), gpu("NVIDIA A100-SXM4-40GB", cudnn_tf32=False), "fp32")
    assert allowed["peak_flops"] == 156 * T and refused["peak_flops"] == 19.5 * T
    assert refused["mfu"] == pytest.approx(6e11 / 19.5e12)


def test_an_unknown_gpu_and_the_cpu_get_flops_but_no_mfu():
    unknown = training_throughput(10**9, 100.0, (64, 64), gpu("NVIDIA A10"), "bf16")
    assert unknown["train_flops_per_s"] == pytest.approx(6e11)
    assert unknown["mfu"] is None and unknown["peak_flops"] is None and "not in segbench's peak table" in \
        unknown["peak_source"]
    cpu = training_throughput(10**9, 2.0, (64, 64), {"type": "cpu", "name": "x86_64"}, "fp32")
    assert cpu["train_gflops_per_s"] == pytest.approx(12.0) and cpu["mfu"] is None and cpu["peak_flops"] is None


def test_without_a_mac_count_nothing_is_estimated():
    record = training_throughput(None, 100.0, (64, 64), gpu("NVIDIA H200"), "bf16")
    assert record["train_flops_per_s"] is None and record["mfu"] is None and record["peak_flops"] > 0
