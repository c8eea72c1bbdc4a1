# The two commands of the README:
#   make demo   set up a virtual environment and run the demo (sample data -> fine-tune -> evaluate -> predict -> ONNX)
#   make test   install what the tests need and run them (what .ci/run calls)
# Other targets: make test-slow (slow parity / engine checks), make bench (speed vs effdet), make lint.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test test-slow test-all setup setup-test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.demo-installed

setup: $(VENV)/.demo-installed
setup-test: $(VENV)/.test-installed

demo: setup
	$(BIN)/efficientdet demo $(DEMO_ARGS)

test: setup-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: setup-test
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

test-all: test test-slow

bench: setup-test
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/compare_effdet.py

lint: setup-test
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf demo_output .pytest_cache
