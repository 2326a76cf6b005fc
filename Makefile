# Two commands set everything up on a fresh machine (Python 3.11 and make):
#   make demo   train a ResNet on the offline digits data and report it
#   make test   lint and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# --durations: the slowest tests, in every run's log (to keep the suite under its budget).
PYTEST_ARGS ?= --durations=15
# Test processes (pytest-xdist): two keep both cores of a 2-core machine busy.
PYTEST_WORKERS ?= 2

.PHONY: demo test test-fast lint bench bench-gpu reference-export clean

# Reinstall only when the package metadata changed.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,onnx]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/keras-resnet demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) && $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --backend jax $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

# The CPU suite: every ratio against its goal, results in benchmarks/results/ (about 20 min).
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The GPU suite on TensorFlow and JAX (an NVIDIA GPU; without one it refuses with exit status 2).
# It first installs both backends' CUDA wheels (the gpu extra, about 3 GB).
bench-gpu: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,onnx,gpu]"
	$(BIN)/python benchmarks/bench_gpu.py

# Rebuilds the committed reference export in saved_models/digits_resnet/ (version 1).
reference-export: $(STAMP)
	rm -rf saved_models/digits_resnet runs/reference
	$(BIN)/keras-resnet demo --out runs/reference

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
