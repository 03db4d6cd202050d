# fabtrust task runner: CI calls `make test` (.ci/run).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(BIN)/fabtrust --home demo-home demo --fresh

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup
	@bash scripts/bootstrap-bench.sh
	@mkdir -p benchmarks/results
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --out benchmarks/results; done

clean:
	rm -rf $(VENV) demo-home benchmarks/results .pytest_cache .mypy_cache .ruff_cache
