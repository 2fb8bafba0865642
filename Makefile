# One command to set up and run, one to test. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test bench clean chromium nginx

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

# The browser tests drive Debian's Chromium (no browser download); install it when missing.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# nginx for the scale-out tests (it runs as a plain process: nginx -p PREFIX -c CONF).
nginx:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && apt-get install -y -qq nginx)

test: install chromium nginx
	$(BIN)/python -m pytest

# Benchmarks: wrk from Debian, each peer in its own venv, results in benchmarks/results/.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	PYTHON=$(PYTHON) bash benchmarks/peers.sh
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/chart.py

clean:
	rm -rf $(VENV) .pallet .pytest_cache
