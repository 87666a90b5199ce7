"""Package discovery for segbench's three source folders.

`bench/` is installed as `segbench`, `models/` as `segbench.models` and `datasets/` as `segbench.datasets`
(so no top-level `models` or `datasets` package is ever installed). Subpackages are discovered, never listed by
hand, so a new folder cannot silently go missing from the wheel. Metadata lives in pyproject.toml.
"""

from setuptools import find_packages, setup

PACKAGE_DIRS = {"segbench": "bench", "segbench.models": "models", "segbench.datasets": "datasets"}


def discover(package: str, folder: str) -> list[str]:
    return [package] + [f"{package}.{sub}" for sub in find_packages(folder)]


setup(
    package_dir=PACKAGE_DIRS,
    packages=[name for package, folder in PACKAGE_DIRS.items() for name in discover(package, folder)],
)
