"""Running a grid: the runner (expansion, resume, retries at half the batch, the results-folder lock), the Executor
interface with the local and Ray executors, the worker process that runs one cell and writes its record, torchrun
ranks for `train.world_size > 1`, progress events and TensorBoard logs.

Must not import the later stages `analysis`, `predict` and `cli` (docs/architecture.md, "What a stage may import";
tests/test_import_rules.py).
"""
