"""Metrics the torchmetrics way: the confusion matrix as the sufficient statistic and its accumulator (confusion.py),
every metric of one matrix (compute.py), the catalogue that declares each reported number once (catalogue.py), the
bootstrap over images (bootstrap.py) and the scoring of prediction PNGs made by any tool (prediction_files.py).

Must not import the later stages `grid`, `devices`, `optim`, `records`, `measure`, `cell`, `execution`, `analysis`,
`predict` and `cli` (docs/architecture.md, "What a stage may import"; tests/test_import_rules.py).
"""
