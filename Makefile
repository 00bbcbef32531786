# `make demo` and `make test` set themselves up on a fresh machine: a virtualenv in .venv
# with the project installed (editable) with its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The modules whose types are checked strictly: the protocol and the policy code.
MYPY_TARGETS := pbx dialer/engine acd

.PHONY: demo test lint typecheck pytest bench clean

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

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ami_throughput
	$(BIN)/python -m benchmarks.speed_to_lead

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
