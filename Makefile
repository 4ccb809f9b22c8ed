# Set-up and entry points.  `make run` and `make test` work on a fresh machine with
# Python >= 3.11 and internet: they create .venv, install torch only if the venv has none
# (TORCH=... picks the spec, see the README's note on CPU and CUDA builds), install stgnn,
# then run.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build (PyPI's Linux wheel is the CUDA build)
TORCH_INDEX ?=
BIN := $(VENV)/bin

.PHONY: install run test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job: the default model on the default dataset under the data root ($STGNN_DATA,
# else ./datasets; a missing dataset with direct links is downloaded).  Every run writes a
# new folder runs/MODEL-DATASET-TIME, so running it again never touches an earlier run.
run: install
	$(BIN)/stgnn train

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check stgnn tests experiments
	$(BIN)/mypy stgnn
