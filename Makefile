# imgsearch — developer entry points. Every target sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# sam and checkov live apart: aws-sam-cli's pins would clash with the runtime's dependencies.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
# The engines benchmarks/peers.py compares with: their dependencies would move .venv's.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

.PHONY: setup tools test lint demo bench bench-peers clean e2e-deps

$(STAMP): requirements-dev.txt layers/pyproject.toml layers/devkit/pyproject.toml layers/client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel on disk (an unpinned torch would pull CUDA builds).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

tools: $(TOOLS_STAMP)

# What git tracks (a clean clone's files), not a developer's untracked scratch files.
LINTED := $(shell git ls-files '*.py' 2>/dev/null || echo .)

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Headless Chromium for tests/e2e/test_search_page.py (Debian packages), installed only if missing.
e2e-deps:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }

# Unit and integration tests spread over every core, a file per worker; e2e apart and after:
# its local stack lives in moto's in-process state, which the other tests' mocks reset. Each e2e
# worker seeds a stack of its own (a session fixture), and a file's tests stay on one worker.
test: lint $(TOOLS_STAMP) e2e-deps
	$(BIN)/pytest -n auto --dist loadfile tests/unit tests/integration
	$(BIN)/pytest -n auto --dist loadfile tests/e2e

demo: setup
	$(BIN)/imgsearch local up

bench: setup
	$(BIN)/python benchmarks/embed.py

$(PEERS_STAMP): requirements-peers.txt layers/pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r requirements-peers.txt
	touch $@

# imgsearch against faiss, hnswlib, LanceDB, Chroma and Milvus Lite; ARGS="--sizes 100000 1000000"
bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python benchmarks/peers.py $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(PEERS_VENV) .pytest_cache .ruff_cache .imgsearch
