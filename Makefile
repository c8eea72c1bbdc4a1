# The two commands of the README:
#   make demo   set up a virtual environment and run the demo (sample data -> fine-tune -> evaluate -> predict -> ONNX)
#   make test   install what the tests need and run them (what .ci/run calls)
# Other targets: make test-slow (slow parity / engine checks), make bench (speed vs effdet), make lint.
#
# Variables (make demo VAR=value):
#   TORCH_INDEX  install torch and torchvision from this package index first, e.g. PyTorch's CPU-only builds:
#                make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu   (no NVIDIA libraries: ~4 GB less)
#   VENV_FLAGS   flags of `python -m venv`, e.g. --system-site-packages to use a torch the Python of
#                PYTHON already has (a conda env, a CUDA container): pip then keeps it
#   PYTHON       the Python that creates the environment (default python3; 3.10 or newer)
#   VENV         where the environment goes (default .venv)

PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH_INDEX ?=
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test test-slow test-all setup setup-test bench lint clean

# Before the big install: what is downloaded and how large it gets (pip then shows each download).
ifeq ($(TORCH_INDEX),)
define INSTALL_TORCH
@echo "Installing efficientdet and its dependencies into $(VENV); pip shows each download below."
@echo "The big part is PyTorch: on Linux pip's default torch is the CUDA build, whose NVIDIA libraries make"
@echo "the environment about 6 GB (measured: 6.2 GB, of which 3.2 GB NVIDIA libraries and 0.9 GB triton)."
@echo "No GPU? Stop (Ctrl-C), rm -rf $(VENV), and run: make $(1) TORCH_INDEX=https://download.pytorch.org/whl/cpu"
@echo "Have torch already? make $(1) VENV_FLAGS=--system-site-packages (see the README's Install section)."
endef
else
define INSTALL_TORCH
@echo "Installing torch and torchvision from $(TORCH_INDEX) into $(VENV), then efficientdet and the rest from PyPI."
$(BIN)/pip install --progress-bar on --index-url $(TORCH_INDEX) torch torchvision
endef
endif

$(BIN)/python:
	@echo "Creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(call INSTALL_TORCH,demo)
	$(BIN)/pip install --progress-bar on -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(call INSTALL_TORCH,test)
	$(BIN)/pip install --progress-bar on -e ".[test]"
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
