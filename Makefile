# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install Crucible with its pinned dependency set.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.crucible-installed
# Prefect's server telemetry service writes to its SQLite store while runs do; turning it off
# removes the "database is locked" tracebacks it otherwise logs (see constraints.txt).
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test lint bench bench-planner bench-planner-ax bench-analysis bench-orchestration bench-campaign bench-phase-map bench-pools bench-cli clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: the CPU wheel pinned here; otherwise pip resolves a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crucible run examples/tio2_anneal.yaml --sim --runs-dir runs/demo --fresh

# tests/test_prefect_ui.py drives the Prefect UI in headless Chromium (a Debian package, not a wheel).
test: $(STAMP)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y chromium chromium-driver) \
		|| echo "could not install chromium: tests/test_prefect_ui.py will fail and say how to install it"
	# two workers: most tests wait on instrument servers, Prefect or subprocesses, so two cores serve two at once
	$(BIN)/python -m pytest -n 2 --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .

# The quick benches take minutes. The planner and analysis benches take about 45 min each on two cores; their
# latest printed tables are in bench/results/.
bench: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/instruments.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/sim_lab.py

bench-planner: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -W ignore bench/planner.py --seeds 10 --workers 2

# The same with Ax as a fifth column (and in the latency table). Ax is not a Crucible dependency: it gets its own
# environment, so the tests keep their pinned set. On two cores this takes hours: Ax's two-objective runs are slow.
AX_VENV := .venv-ax
$(AX_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(AX_VENV)/bin/python || $(PYTHON) -m venv $(AX_VENV)
	$(AX_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(AX_VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]" ax-platform==1.3.1
	touch $@

bench-planner-ax: $(AX_VENV)/.installed
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(AX_VENV)/bin/python -W ignore bench/planner.py --seeds 10 \
		--workers 2 --methods crucible,random,sobol,tpe,ax --latency-methods tpe,ax --log bench/out/planner-ax.jsonl

# The pool protocol on ../shared/real_pools (20 repeats, every method side by side): hours on two cores.
bench-pools: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -W ignore bench/pools.py --repeats 20 --workers 2 \
		--log bench/out/pools.jsonl

bench-cli: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/cli.py

bench-analysis: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/analysis.py --n 2000

bench-orchestration: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/orchestration.py --experiments 200 --time-factor 5e-5

# Whole campaigns as `crucible run --sim` runs them, 1/2/4 synthesisers x 10 seeds x BoTorch/Sobol/random (hours).
bench-campaign: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -W ignore bench/campaign.py --scenarios tio2 --seeds 10 --workers 2
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -W ignore bench/campaign.py --scenarios nanoparticles,xrd-xas \
		--synthesisers 1 --methods botorch,sobol --seeds 4 --budget 30 --workers 2

# Phase mapping of the composition spread: map accuracy after 20/40/80 patterns, BoTorch explore vs Sobol, random, grid.
bench-phase-map: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -W ignore bench/phase_map.py --seeds 3 --workers 2

clean:
	rm -rf $(VENV) runs .pytest_cache
