# segbench: every target sets itself up on a fresh machine (creates .venv and installs what it needs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEGBENCH := $(VENV)/bin/segbench
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: demo test lint bench summary baseline clean install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install  ## train the quickstart grid on the built-in street scenes and print the leaderboard
	$(SEGBENCH) run grids/quickstart.yaml --results runs/quickstart

test: install  ## lint, then the whole test suite (CPU only)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The regression gate: grids/ci.yaml (small, deterministic on the CPU) against the committed baseline. Metrics are
# reproducible for a seed, so their thresholds only absorb float differences between machines and thread counts;
# params and MACs must not grow at all; latency is gated through latency_ratio (model time over a reference workload
# timed in the same process, one thread), never through absolute times, with room for a busy shared machine.
CI_RESULTS ?= runs/ci
BASELINE ?= results/baseline/summary.json
GATE ?= --fail-on miou:-0.01 --fail-on pixel_accuracy:-0.01 --fail-on params:+0% --fail-on gmacs:+0% \
	--fail-on latency_ratio:+50% --fail-on-missing

.PHONY: ci-results
# A private, freshly generated dataset cache: a cache left by an older synthetic generator must not shift the metrics.
ci-results: install  ## a fresh run of grids/ci.yaml and its summary (used by summary and baseline)
	rm -rf $(CI_RESULTS) $(CI_RESULTS)-data
	$(SEGBENCH) run grids/ci.yaml --results $(CI_RESULTS) --cache-dir $(CI_RESULTS)-data --device cpu \
		|| test $$? -eq 1  # failed cells: the gate names them
	$(SEGBENCH) summary $(CI_RESULTS) --out $(CI_RESULTS)/summary.json

summary: ci-results  ## run grids/ci.yaml, summarise it and gate it against results/baseline/
	$(SEGBENCH) compare $(BASELINE) $(CI_RESULTS)/summary.json $(GATE)

baseline: ci-results  ## refresh the committed baseline on purpose (after an intended change)
	mkdir -p $(dir $(BASELINE))
	cp $(CI_RESULTS)/summary.json $(BASELINE)
	@echo "baseline written to $(BASELINE); commit it"

bench: install  ## benchmarks of segbench itself against plain alternatives (pytest-benchmark), printed as ratios
	$(PY) -m pytest tests/benchmarks --benchmark-only

clean:
	rm -rf runs .pytest_cache .ruff_cache .benchmarks
