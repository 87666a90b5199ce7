"""segbench: which segmentation architecture, encoder and loss should I use on my data, and what does it cost?"""

__version__ = "0.1.0"

# Bumped whenever a change alters what a recorded number means (metric rules, measurement protocol, training
# semantics). It is part of every cell's hash, so records from different semantics are never compared.
BENCH_SEMANTICS_VERSION = 2  # 2: the final model is reported by default (eval.select: last)
