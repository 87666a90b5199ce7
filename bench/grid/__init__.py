"""Grid files into cells: YAML and `key.path=value` overrides (load.py) parsed once, at the boundary, into a frozen
typed GridConfig (schema.py), its loss, dataset, model and encoder names checked against the registries, then
expanded into cells whose stable id is a readable slug plus a hash of the resolved configuration (cells.py).

Must not import the later stages `devices`, `optim`, `records`, `measure`, `cell`, `execution`, `analysis`, `predict`
and `cli` (docs/architecture.md, "What a stage may import"; tests/test_import_rules.py).
"""
