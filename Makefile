# One command each: `make run` starts the embedded stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-sqlite test-postgres lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.run-installed $@

install: $(VENV)/.run-installed
install-dev: $(VENV)/.dev-installed

run: install
	$(BIN)/python -m app.tools.devstack

# What CI runs: lint, format check, the whole suite on SQLite, then every test that touches the
# database again on a real PostgreSQL (started by the tests; needs Debian's `postgresql` package).
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --db sqlite
	$(BIN)/python -m pytest -q -p no:cacheprovider --db postgres

test-sqlite: install-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider --db sqlite

test-postgres: install-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider --db postgres

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install-dev
	$(BIN)/python bench/run_all.py

clean:
	rm -rf var .pytest_cache
