"""Results folders on disk: every path and file name in one place (paths.py); the typed record and summary (schema.py:
what record.json and summary.json hold, and the migration of older formats); one `record.json` per cell, validated,
written atomically and read back as a typed Record (store.py), the only source of truth for results; the summary file
(summaries.py), a cell folder's record and weights (cells.py), the grids saved in a results folder (grids.py), several
results folders merged into one (merge.py, `segbench merge`); and the one record-to-row function that summaries,
leaderboards, tables and figures read (rows.py). No module outside this package opens a record or summary file.

Must not import the later stages `measure`, `cell`, `execution`, `analysis`, `predict` and `cli`
(docs/architecture.md, "What a stage may import"; tests/test_import_rules.py).
"""
