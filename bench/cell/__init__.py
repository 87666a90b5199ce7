"""One cell, inside its worker process: its datasets and loaders (data.py), the training epoch (loop.py) and its
resumable state (state.py), evaluation into a confusion matrix (evaluate.py), which weights it reports (selection.py),
example predictions (examples.py), data-parallel ranks (distributed.py) and the training length (budget.py: epochs,
iterations or a compute budget); pipeline.py joins them into the parts of a record.

Must not import the later stages `execution`, `analysis`, `predict` and `cli` (docs/architecture.md, "What a stage may
import"; tests/test_import_rules.py).
"""
