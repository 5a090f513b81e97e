# The two commands a newcomer runs: `make demo` and `make test`.
# Each creates .venv when it is missing and installs the project (editable, with the dev
# extra) whenever pyproject.toml is newer than the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-restate lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/01_counter.py
	$(BIN)/python examples/02_signup.py
	$(BIN)/python examples/05_crash_recovery.py
	$(BIN)/python examples/00_storage.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# The endpoint (`actors endpoint`) against real Restate servers: one node, the endpoint
# SIGKILLed mid-workflow, a 3-node cluster with a node SIGKILLed. Installs the pinned
# restate-server from npm into ~/.cache/virtual-actors/npm the first time.
test-restate: $(STAMP)
	ACTORS_TEST_RESTATE=1 $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 300 tests/restate_server

# One run that updates everything: bench/results/{storage,objects,steps,workflows}.md and
# .json (only with --out: an ad-hoc run writes nothing), scaling.md/.json, floors.md/.json,
# profile.md/.json, peers.md/.json and the charts, and README.md's peer table;
# bench/targets.py then fills README.md's target table from those .json files.
BENCH_OUT := bench/results

bench: $(STAMP)
	$(BIN)/python bench/storage.py --out $(BENCH_OUT)
	$(BIN)/python bench/objects.py --out $(BENCH_OUT)
	$(BIN)/python bench/steps.py --out $(BENCH_OUT)
	$(BIN)/python bench/workflows.py --runs 1 --out $(BENCH_OUT)
	$(BIN)/python bench/parked.py --out $(BENCH_OUT)
	$(BIN)/python bench/scaling.py --out $(BENCH_OUT)/scaling
	$(BIN)/python bench/floors.py --out $(BENCH_OUT)
	$(BIN)/python bench/profile.py --out $(BENCH_OUT)
	$(BIN)/python bench/peers/run.py --out $(BENCH_OUT)
	$(BIN)/python bench/targets.py --results $(BENCH_OUT)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
