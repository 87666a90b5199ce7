# segbench: every target sets itself up on a fresh machine (creates .venv and installs what it needs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEGBENCH := $(VENV)/bin/segbench
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: demo html-check test test-fast lint bench summary baseline clean install

install: $(VENV)/.installed

# constraints.txt pins every installed package at the version CI tested (a new torch must not silently move metrics,
# latency fingerprints or checksums); records name it (environment.lock). `make lock` refreshes it on purpose.
LOCK ?= constraints.txt
# pip byte-compiles what it installs: keep it so. Where PYTHONDONTWRITEBYTECODE is set (as on the development machine)
# Python never caches bytecode itself, and with `pip --no-compile` every process would compile torch again on import
# (the test suite took 1017 s instead of about 610 s).
$(VENV)/.installed: pyproject.toml setup.py $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

.PHONY: lock
lock:  ## upgrade .venv to the newest versions pyproject allows and write them to constraints.txt (then test, baseline)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -e '.[dev]'
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --exclude-editable; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	touch $(VENV)/.installed
	@echo "$(LOCK) written; run make test and make baseline, then commit both"

# On a CPU with two or more threads the demo runs two cells at a time, one thread each: two single-threaded steps
# use two cores better than one two-threaded step does, and one cell's start-up and evaluation overlap the other's
# training (2 min instead of 2 min 40 s on the 2-core development machine). On a GPU: one cell per GPU, as always.
DEMO_FLAGS ?= $(shell $(PY) -c "import torch; print('--parallel 2' if not torch.cuda.is_available() \
	and torch.get_num_threads() >= 2 else '')")
demo: install  ## train the quickstart grid (4 cells, within 5 minutes on 2 CPU cores) and print the leaderboard
	$(SEGBENCH) run grids/quickstart.yaml --results runs/quickstart $(DEMO_FLAGS)

# The quickstart's HTML report opened in headless chromium with the browser test's checks (sort, filter by model,
# a row's link, no console error, no request outside the file): needs Debian's chromium and chromium-driver.
html-check: install  ## after make demo: report runs/quickstart --html, then check the page in headless chromium
	$(SEGBENCH) report runs/quickstart --html
	SEGBENCH_HTML_PAGE=runs/quickstart/report/report.html SEGBENCH_BROWSER_TEST=required \
		$(PY) -m pytest tests/test_report_html.py -k test_a_given_report_in_a_browser -q

test: install  ## lint, then the whole test suite (CPU only)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The everyday loop: everything but the tests marked slow (those that train a model, start processes or a cluster,
# or take more than about 2 s). `make test`, which CI runs, still runs them all.
test-fast: install  ## lint, then the tests not marked slow (under 3 minutes on 2 CPU cores)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The regression gate: grids/ci.yaml (small, deterministic on the CPU) against the committed baseline. Metrics are
# reproducible for a seed, so their thresholds only absorb float differences between machines and thread counts;
# params and MACs must not grow at all; latency is gated through latency_ratio (model time over a reference workload
# timed iteration by iteration in the same process, one thread), never through absolute times, and only when this
# machine's fingerprint equals the baseline's (compare prints whether it did; docs/report.md has the measurements).
CI_RESULTS ?= runs/ci
BASELINE ?= results/baseline/summary.json
GATE ?= --fail-on miou:-0.01 --fail-on pixel_accuracy:-0.01 --fail-on params:+0% --fail-on gmacs:+0% \
	--fail-on latency_ratio:+25% --fail-on-missing

.PHONY: ci-results
# A private, freshly generated dataset cache: a cache left by an older synthetic generator must not shift the metrics.
ci-results: install  ## a fresh run of grids/ci.yaml and its summary (used by summary and baseline)
	rm -rf $(CI_RESULTS) $(CI_RESULTS)-data
	$(SEGBENCH) run grids/ci.yaml --results $(CI_RESULTS) --cache-dir $(CI_RESULTS)-data --device cpu \
		|| test $$? -eq 1  # failed cells: the gate names them
	$(SEGBENCH) summary $(CI_RESULTS) --out $(CI_RESULTS)/summary.json

summary: ci-results  ## run grids/ci.yaml, summarise it and gate it against results/baseline/
	$(SEGBENCH) compare $(BASELINE) $(CI_RESULTS)/summary.json $(GATE)

# A baseline's latency must be steady: each cell's two timing rounds, and the cells that time the same inference
# (the CI grid's two losses per architecture), must agree within STABLE_LATENCY %, or nothing is written.
STABLE_LATENCY ?= 10
baseline: ci-results  ## refresh the committed baseline on purpose (after an intended change), on a quiet machine
	mkdir -p $(dir $(BASELINE))
	$(SEGBENCH) summary $(CI_RESULTS) --out $(BASELINE) --stable-latency $(STABLE_LATENCY)
	@echo "baseline written to $(BASELINE); commit it"

# Each benchmark times segbench against a plain alternative in the same run and fails when the ratio misses its
# target, so `make bench` exits non-zero; the ratios are printed together at the end.
bench: install  ## benchmarks of segbench itself against plain alternatives (pytest-benchmark), printed as ratios
	$(PY) -m pytest tests/benchmarks --benchmark-only

# The GPU check, for a machine with a CUDA GPU (never part of `make test`). Such a machine may reach no package
# registry: `make gpu-wheels`, run where PyPI is reachable, gathers into $(GPU_WHEELS)/ what a Python 3.12 with
# PyTorch, torchvision, timm, typer, rich, pandas, matplotlib, PyYAML, scipy and tensorboard lacks, at the versions
# installed in $(VENV); there, `make gpu-check` installs them (pip --no-index --no-deps, into .gpu-site/) and runs
# scripts/gpu_check.py with that machine's own Python.
GPU_WHEELS ?= .gpu-wheels
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
# Pure Python (fvcore, iopath and yacs exist only as source packages: pip wheel builds them here).
# onnxscript and onnx-ir: PyTorch's ONNX exporter (the machine has onnx and a CPU onnxruntime, not these).
GPU_PURE_PACKAGES := segmentation-models-pytorch torchinfo fvcore iopath yacs termcolor pydantic annotated-types \
	typing-inspection typing-extensions onnxscript onnx-ir
GPU_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

.PHONY: gpu-wheels gpu-check
gpu-wheels: install  ## wheels for a GPU machine without registries, into .gpu-wheels/ (run where PyPI is reachable)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	pinned="$$($(PY) -c "import sys; from importlib.metadata import version; \
		print(' '.join(f'{name}=={version(name)}' for name in sys.argv[1:]))" $(GPU_PURE_PACKAGES))" && \
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(GPU_WHEELS) $$pinned
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
		--python-version $(GPU_PYTHON_VERSION) $(GPU_PLATFORMS) --dest $(GPU_WHEELS) \
		"pydantic-core==$$($(PY) -c "from importlib.metadata import version; print(version('pydantic-core'))")"
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(GPU_WHEELS) .
	@ls $(GPU_WHEELS) && du -sh $(GPU_WHEELS)

gpu-check:  ## on a machine with a CUDA GPU: train grids/gpu-check.yaml, check its records, print speed and MFU
	$(GPU_PYTHON) scripts/gpu_check.py $(if $(wildcard $(GPU_WHEELS)/*.whl),--wheels $(GPU_WHEELS))

clean:
	rm -rf runs .pytest_cache .ruff_cache .benchmarks
