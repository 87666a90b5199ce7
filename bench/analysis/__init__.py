"""Everything a user sees about a finished run, derived from records alone: the summary, the CI gate (gate.py, with
its seed and latency rules), the terminal leaderboard, and the Markdown report with its figures, tables and seed
statistics. Nothing here trains or measures: every output can be regenerated from a results folder at any time.

Must not import the later stages `predict` and `cli` (docs/architecture.md, "What a stage may import";
tests/test_import_rules.py).
"""
