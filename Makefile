# heartrate-serve: one Makefile. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := proto/heartrate_service.proto
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install proto proto-check run test test-unit test-integration test-e2e lint format bench bench-core loadtest soak flood clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The Node.js client of the e2e tests (tests/e2e/test_node_client.py): its pinned packages, again
# when the lock file changes. No install scripts: @grpc/grpc-js and its dependencies are plain JS.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --ignore-scripts --no-audit --no-fund
	@touch $(NODE_STAMP)

# Debian's chromium for the dashboard's browser test (tests/e2e/test_dashboard.py, Playwright pointed
# at it; nothing downloads a browser). The binary is the stamp: installed with apt-get only when
# missing (as root in CI, else through sudo).
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# Generated stubs are committed; tests/unit/test_proto_generated.py checks they match the .proto.
proto: $(STAMP)
	$(PY) -m heartrate_serve.proto.generate

run: $(STAMP)
	$(VENV)/bin/heartrate-serve

# The whole suite (unit, compat, integration on a real Redis, e2e on a real Serve), then lint.
test: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(PY) -m pytest tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pyright

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/compat

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

test-e2e: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(PY) -m pytest tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pyright

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-core: $(STAMP)
	$(PY) -m heartrate_serve.loadtest.bench_core

bench: $(STAMP)
	$(PY) -m heartrate_serve.loadtest.bench_store
	$(PY) -m heartrate_serve.loadtest.bench

loadtest: $(STAMP)
	$(PY) -m heartrate_serve.loadtest.run_locust

# Streaming load with faults on a schedule (replica kills, a Redis crash): loadtest/soak.py.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(PY) -m heartrate_serve.loadtest.soak --minutes $(SOAK_MINUTES)

# A flood beyond capacity (what is shed, peak RSS, recovery): loadtest/flood.py.
flood: $(STAMP)
	$(PY) -m heartrate_serve.loadtest.flood

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
