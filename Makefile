# Two commands do all the set-up on a fresh machine:
#   make run    start the whole stack on its embedded default (UI at http://127.0.0.1:3000)
#   make test   lint, validate the Dagster definitions and run every test
# Both create the virtual environment from uv.lock when it is missing or stale.

PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv

.PHONY: install run demo test lint bench

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/bridge-dagster dev

demo: install
	$(VENV)/bin/bridge-dagster demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	DAGSTER_HOME=$$(mktemp -d) $(VENV)/bin/dagster definitions validate -m bridge_dagster.definitions
	$(VENV)/bin/pytest

bench: install
	$(VENV)/bin/python bench/stamping.py --quick
	$(VENV)/bin/python bench/onextree.py --quick
	$(VENV)/bin/python bench/pipeline.py --quick
	$(VENV)/bin/python bench/reducer.py --quick
