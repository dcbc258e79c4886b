# Citizen rewards: developer and CI entry points.
#   make run      start the scheme locally (SQLite + in-process jobs unless
#                 DATABASE_URL / REDIS_URL are set), with the demo scheme loaded
#   make test     run the test suite (PYTEST_ARGS="-k ledger -x" to narrow it)
#   make lint     ruff
#   make openapi  write openapi.yaml
#   make lock     re-resolve requirements.lock / requirements-dev.lock from pyproject.toml
#                 (LOCK_ARGS=--upgrade to move every pin to the newest allowed release)
#   make clean    remove the virtualenv and the local instance/ data
#   make browser-deps  Chromium (apt) and axe-core (npm, into .cache/npm) for tests/browser

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

# Pinned versions every install uses (image: LOCK; venv and CI: DEV_LOCK, the same pins
# plus the test tools). Regenerate with `make lock` after changing dependencies.
LOCK       := requirements.lock
DEV_LOCK   := requirements-dev.lock
LOCK_ARGS  ?=
UV_COMPILE  = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
              --custom-compile-command "make lock" $(LOCK_ARGS)

# Only directories that exist (git does not keep empty ones, e.g. bench/).
LINT_PATHS := $(wildcard rewards workers tests bench migrations)

.DEFAULT_GOAL := run
.PHONY: run venv test lint openapi lock clean browser-deps

run: venv
	$(BIN)/rewards db upgrade
	$(BIN)/rewards demo
	$(BIN)/rewards run --host $(HOST) --port $(PORT)

venv: $(STAMP)

# Reinstall only when pyproject.toml or the lock is newer than the last install. The
# locked versions first, then the project itself without resolving anything again;
# `pip check` catches a dependency added to pyproject.toml but not yet locked.
$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r $(DEV_LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check || { echo "$(DEV_LOCK) is behind pyproject.toml: run make lock" >&2; exit 1; }
	touch $@

lock:
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(UV_COMPILE) pyproject.toml -o $(LOCK)
	$(UV_COMPILE) pyproject.toml --extra test -c $(LOCK) -o $(DEV_LOCK)

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
