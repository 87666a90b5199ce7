"""Results folders on disk: every path and file name in one place (paths.py), one `record.json` per cell, read and
written atomically (store.py), the only source of truth for results, and the one record-to-row function that
summaries, leaderboards, tables and figures read (rows.py).

Must not import the later stages `measure`, `cell`, `execution`, `analysis`, `predict` and `cli` (docs/architecture.md,
"What a stage may import"; tests/test_import_rules.py).
"""
