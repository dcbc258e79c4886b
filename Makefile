# Citizen rewards: developer and CI entry points.
#   make run      start the scheme locally (SQLite + in-process jobs unless
#                 DATABASE_URL / REDIS_URL are set), with the demo scheme loaded
#   make test     run the test suite (PYTEST_ARGS="-k ledger -x" to narrow it)
#   make lint     ruff
#   make openapi  write openapi.yaml
#   make clean    remove the virtualenv and the local instance/ data
#   make browser-deps  Chromium (apt) and axe-core (npm, into .cache/npm) for tests/browser

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

# Only directories that exist (git does not keep empty ones, e.g. bench/).
LINT_PATHS := $(wildcard rewards workers tests bench migrations)

.DEFAULT_GOAL := run
.PHONY: run venv test lint openapi clean browser-deps

run: venv
	$(BIN)/rewards db upgrade
	$(BIN)/rewards demo
	$(BIN)/rewards run --host $(HOST) --port $(PORT)

venv: $(STAMP)

# Reinstall only when pyproject.toml is newer than the last successful install.
$(STAMP): pyproject.toml
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)

openapi: venv
	$(BIN)/rewards openapi

clean:
	rm -rf $(VENV) instance/

# The staff pages' browser tests: Debian's Chromium (never a downloaded browser) and
# axe-core, which the tests inject into each page (they look in $(AXE_DIR)).
AXE_DIR ?= .cache/npm
browser-deps:
	test -x /usr/bin/chromium || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	test -f $(AXE_DIR)/node_modules/axe-core/axe.min.js || \
		npm install --prefix $(AXE_DIR) --no-audit --no-fund --no-save axe-core@4
