# One command each: `make run` starts the embedded stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Test files run in parallel (pytest-xdist, one file per process): the suite mostly waits on real
# Temporal servers, APIs, workers and sockets, so 3 processes fit a 2-core box. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

.PHONY: run test test-sqlite test-postgres lint bench install install-dev bytecode clean

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

# The project's own bytecode, written once (only stale files are recompiled). With
# PYTHONDONTWRITEBYTECODE set (as on our dev boxes and in the image) no import writes it, and every
# process start compiled the project from source: ~1 s of CPU per API or worker process, and the
# Temporal sandbox recompiled a workflow's modules for every new workflow run.
bytecode:
	$(BIN)/python -m compileall -q app activities workflows migrations tests bench api.py worker.py

run: install bytecode
	$(BIN)/python -m app.tools.devstack

# What CI runs: lint, format check, the whole suite on SQLite, then every test that touches the
# database again on a real PostgreSQL (started by the tests; needs Debian's `postgresql` package).
test: install-dev bytecode
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PYTEST) --db sqlite
	$(PYTEST) --db postgres

test-sqlite: install-dev bytecode
	$(PYTEST) --db sqlite

test-postgres: install-dev bytecode
	$(PYTEST) --db postgres

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install-dev bytecode
	$(BIN)/python bench/run_all.py

clean:
	rm -rf var .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +
