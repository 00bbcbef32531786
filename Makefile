# `make demo` and `make test` set themselves up on a fresh machine: a virtualenv in .venv
# with the project installed (editable) with its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The modules whose types are checked strictly: the protocol and the policy code.
MYPY_TARGETS := pbx dialer/engine acd crm_bridge

.PHONY: demo test lint typecheck pytest bench clean browser

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/obzvon demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(MYPY_TARGETS)

# The wallboard's browser test drives Debian's Chromium over the DevTools protocol.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

pytest: $(STAMP) browser
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.report
	$(BIN)/python -m benchmarks.ami_throughput
	$(BIN)/python -m benchmarks.speed_to_lead
	$(BIN)/python -m benchmarks.e2e
	$(BIN)/python -m benchmarks.fraud_base
	$(BIN)/python -m benchmarks.crm_sync
	$(BIN)/python -m benchmarks.outcome_latency
	$(BIN)/python -m benchmarks.routing_decision

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
