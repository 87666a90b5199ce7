"""Data only: the frost photographs `segbench.datasets.corruptions.frost` blends into images (source and licence in
NOTICE and LICENSE). A package, so that setuptools discovers it and ships its files (pyproject's package-data)."""
