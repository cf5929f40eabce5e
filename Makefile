# Set-up and day-to-day commands. Each target creates the virtual environment it
# needs in $(VENV) and installs Kaflow into it, so `make run` and `make test`
# work on a fresh clone.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./kaflow-data
PYTEST_ARGS ?=

.PHONY: run run-single test lint bench clean venv image compose-test chaos bench-compare

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@scripts/ensure-python.sh "$(PYTHON)"
	"$(PYTHON)" -m venv "$(VENV)"
	"$(BIN)/pip" install --quiet --upgrade pip
	"$(BIN)/pip" install --quiet -e '.[dev]'
	touch "$@"

## run: start a local 3-node Kaflow cluster on 127.0.0.1 (HTTP 8092/8094/8096, data in ./kaflow-data/node-N)
# `exec` replaces the recipe's shell, so a SIGTERM sent to make reaches Kaflow.
run: venv
	exec "$(BIN)/kaflow" cluster up --data-dir "$(DATA_DIR)"

## run-single: start one Kaflow node on 127.0.0.1:8092 with data in ./kaflow-data/single-node
run-single: venv
	exec "$(BIN)/kaflow" serve --data-dir "$(DATA_DIR)/single-node"

## test: run the whole test suite
test: venv
	"$(BIN)/python" -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy on the package
lint: venv
	"$(BIN)/ruff" check kaflow tests chaos
	"$(BIN)/ruff" format --check kaflow chaos
	"$(BIN)/mypy" kaflow chaos

## chaos: the chaos smoke set: a real 3-node cluster under load, faults, then the checker (root; see docs/chaos.md)
chaos: venv
	"$(BIN)/python" -m chaos smoke $(CHAOS_ARGS)

## bench: single-node produce and fetch benchmark (see docs/benchmarks.md)
bench: venv
	"$(BIN)/python" benchmarks/single_node.py

## bench-compare: 3-node Kaflow against NATS JetStream R3 and Redis Streams, table in docs/benchmarks.md (needs nats-server, redis-server)
bench-compare: venv
	"$(BIN)/pip" install --quiet -r benchmarks/requirements.txt
	"$(BIN)/python" -m benchmarks.compare $(BENCH_ARGS)

## image: build the Kaflow container image without a registry (see docs/docker.md)
image:
	cluster/docker/build-image.sh

## compose-test: build the image and run the container tests (needs root or Docker)
compose-test: venv
	KAFLOW_COMPOSE_TESTS=1 "$(BIN)/python" -m pytest tests/compose $(PYTEST_ARGS)

clean:
	rm -rf "$(VENV)" .mypy_cache .ruff_cache .pytest_cache
