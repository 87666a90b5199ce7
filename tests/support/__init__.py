"""Helpers shared by the tests (importable as `support`: pyproject's pytest `pythonpath` holds tests/)."""
