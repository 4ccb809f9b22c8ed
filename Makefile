# Set-up and entry points.  `make run` and `make test` work on a fresh machine with
# Python >= 3.11: they create .venv, install torch only if the venv has none
# (TORCH=... picks the spec; the default is the CPU wheel this project is tested
# with), install stgnn, then run.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Data root: $STGNN_DATA, else the shared benchmark files beside the checkout, else ./datasets.
DATA ?= $(or $(STGNN_DATA),$(if $(wildcard ../shared/data/los-loop),../shared/data,datasets))

.PHONY: install run test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/stgnn train --data-dir "$(DATA)" --output runs/main

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check stgnn tests experiments
	$(BIN)/mypy stgnn
