"""Cost measurements as small pure functions, each returning the number with the conditions it was taken under.

Conventions (see the project's measurement reference): unique parameters (params.py); MACs counted by fvcore at
batch 1, GFLOPs derived as 2 x GMACs (macs.py); latency in eval mode under `torch.inference_mode()`, warm-up then
timed iterations, synchronised on CUDA, reported as a distribution, with a fixed reference workload timed in the same
process giving `latency_ratio`, the number regression gates compare across machines (latency.py); peak memory per
phase (one training step, one inference batch), from the CUDA allocator or, on the CPU, from the resident set of a
fresh process (memory.py, which starts probe.py). cost.py puts them together.
Raw numbers only: integers for parameters and MACs, bytes for memory, milliseconds where the key says `_ms`.

Must not import the later stages `cell`, `execution`, `analysis`, `predict` and `cli` (docs/architecture.md, "What a
stage may import"; tests/test_import_rules.py).
"""

from segbench.measure.cost import cell_cost, measure_model
from segbench.measure.latency import REFERENCE_WORKLOAD, latency_stats, measure_latency
from segbench.measure.macs import count_macs, torchinfo_estimate
from segbench.measure.memory import cuda_peak_memory, measure_memory
from segbench.measure.params import count_params

__all__ = [
    "REFERENCE_WORKLOAD",
    "cell_cost",
    "count_macs",
    "count_params",
    "cuda_peak_memory",
    "latency_stats",
    "measure_latency",
    "measure_memory",
    "measure_model",
    "torchinfo_estimate",
]
