# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

run: setup
	$(BIN)/deepfake-detector serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest runs beside a throwaway PostgreSQL server (installed from Debian's packages when
# missing), so the tests' PostgreSQL variants run too.
test: setup lint
	scripts/ensure-chromium
	scripts/with-postgres $(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) var inbox output
