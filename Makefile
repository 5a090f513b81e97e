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

bench: $(STAMP)
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/objects.py
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/workflows.py --runs 1
	$(BIN)/python bench/peers/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
