# heartrate-serve: one Makefile. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := proto/heartrate_service.proto

.PHONY: install proto proto-check run test test-unit test-integration test-e2e lint format bench bench-core loadtest clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Generated stubs are committed; tests/unit/test_proto_generated.py checks they match the .proto.
proto: $(STAMP)
	$(PY) -m heartrate_serve.proto.generate

run: $(STAMP)
	$(VENV)/bin/heartrate-serve

# The whole suite (unit, compat, integration on a real Redis, e2e on a real Serve), then lint.
test: $(STAMP) .typecheck/heartrate_serve
	$(PY) -m pytest tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/compat

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

test-e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

# mypy cannot follow the editable install's import hook: it checks a tree of links instead.
.typecheck/heartrate_serve:
	mkdir -p .typecheck/heartrate_serve
	for d in core deployments proto loadtest; do ln -sfn ../../$$d .typecheck/heartrate_serve/$$d; done
	ln -sfn ../../heartrate_serve/__init__.py .typecheck/heartrate_serve/__init__.py

lint: $(STAMP) .typecheck/heartrate_serve
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
