"""Hand-made records with the fields summaries and gates read, for tests where training is not the point."""

from __future__ import annotations

from segbench.records.store import RECORD_SCHEMA_VERSION

SLUG = "unet__resnet18__ce__synthetic__s0"


def record(slug: str = SLUG, config_hash: str = "abc123", miou: float = 0.5, cost: dict | None = None,
           status: str = "ok", latency_ratio: float = 1.0, written_at: str = "2026-01-01T00:00:00+00:00",
           machine: str | None = "machine-a", spread: float | None = 0.01, params: int = 1000) -> dict:
    """A record of `slug`; `cost` (params and MACs) comes from real measurements where a test needs them.

    machine: the fingerprint id its latency was timed under (None: a record from before fingerprints); spread: how
    far its two timing rounds agreed (None: timed in one round).
    """
    model, encoder, loss, dataset, seed = slug.split("__")
    conditions = {"threads": 1, "precision": "fp32", "memory_format": "contiguous_format"}
    if machine is not None:
        conditions["machine"] = {"id": machine, "label": f"CPU {machine}"}
    return {
        "schema_version": RECORD_SCHEMA_VERSION, "cell_id": f"{slug}-{config_hash}", "slug": slug,
        "config_hash": config_hash, "status": status, "written_at": written_at,
        "config": {"model": model, "encoder": encoder, "loss": {"name": loss}, "dataset": {"name": dataset},
                   "seed": int(seed[1:])},
        "error": None if status == "ok" else {"kind": "exception", "message": "RuntimeError: boom"},
        "metrics": {"miou": miou, "pixel_accuracy": 0.8, "mdice": 0.6, "micro_iou": 0.7} if status == "ok" else None,
        "cost": {**(cost or {"params": {"total": params}, "macs": {"macs": 2_000_000, "gmacs": 0.002}}),
                 "latency": {"latency_ratio": latency_ratio, "conditions": conditions,
                             "batch_1": {"latency_ms_p50": 12.0, "input_shape": [1, 3, 64, 128]},
                             **({"stability": {"spread": spread}} if spread is not None else {})}},
        "timing": {"train_time_s": 10.0},
    }
