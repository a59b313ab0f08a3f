# The two commands: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types unit bench catalog clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/community run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The dashboard's browser test drives Debian's chromium (never a downloaded browser build).
BROWSER := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BROWSER):
	$(SUDO) apt-get install -y chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# Two workers: most tests wait on brokers and databases, not on the cores.
unit: $(STAMP) $(BROWSER)
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint types unit

bench: $(STAMP)
	$(BIN)/python bench/run_all.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres --write

catalog: $(STAMP)
	$(BIN)/community events catalog --write

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
