# One command to set up and run, one to test. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pallet demo

run: demo
	$(BIN)/pallet serve digits@production iris@production digits-onnx@production --port 8000

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pallet .pytest_cache
