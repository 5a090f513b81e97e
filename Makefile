# The two commands a newcomer runs: `make demo` and `make test`.
# Each creates .venv when it is missing and installs the project (editable, with the dev
# extra) whenever pyproject.toml is newer than the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

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

bench: $(STAMP)
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/objects.py
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/workflows.py --runs 1
	$(BIN)/python bench/peers/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
