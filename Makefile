# One command to set up and run, one to test. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

EDGE := .venv-edge
TVM := .venv-tvm

.PHONY: install run demo docs test test-fast screenshots fuzz bench clean chromium nginx redis edge tvm npm protos

# What running needs: pallet with pallet[torch] for the digits-torch and minilm demos (make run).
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[torch]'
	touch $@

# The dev tools on top (pytest, the browser driver, Ray, MLflow, fuzzers): make install and make test.
$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The export toolchains, each in an environment of its own (pallet finds them through
# PALLET_EDGE_PYTHON and PALLET_TVM_PYTHON, or in the environment it runs in).
$(EDGE)/.installed: pyproject.toml
	test -x $(EDGE)/bin/python || $(PYTHON) -m venv $(EDGE)
	$(EDGE)/bin/python -m pip install --quiet --upgrade pip
	$(EDGE)/bin/python -m pip install --quiet -e '.[edge]'
	touch $@

$(TVM)/.installed: pyproject.toml
	test -x $(TVM)/bin/python || $(PYTHON) -m venv $(TVM)
	$(TVM)/bin/python -m pip install --quiet --upgrade pip
	$(TVM)/bin/python -m pip install --quiet -e '.[tvm]'
	touch $@

edge: $(EDGE)/.installed
tvm: $(TVM)/.installed

# The Open Inference Protocol's gRPC modules, generated from Triton's official grpc_service.proto and
# model_config.proto (github.com/triton-inference-server/common, protobuf/) and committed.
PROTOS := src/pallet/serve/protocols/proto
protos: install
	$(BIN)/python -m grpc_tools.protoc -I $(PROTOS) --python_out=$(PROTOS) --grpc_python_out=$(PROTOS) \
		$(PROTOS)/grpc_service.proto $(PROTOS)/model_config.proto
	rm -f $(PROTOS)/model_config_pb2_grpc.py
	sed -i 's/^import \(\w*_pb2\) as /from pallet.serve.protocols.proto import \1 as /' $(PROTOS)/*_pb2*.py

# The web export installs onnxruntime-web from the npm registry.
npm:
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)

# Reuses the demo models the store has (made the same way): a second make run trains nothing.
demo: $(RUN_STAMP)
	$(BIN)/pallet demo

run: demo
	$(BIN)/pallet serve digits@production iris@production digits-onnx@production digits-torch@production minilm@production --port 8000

# The browser tests drive Debian's Chromium (no browser download); install it when missing.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# nginx for the scale-out tests (it runs as a plain process: nginx -p PREFIX -c CONF).
nginx:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && apt-get install -y -qq nginx)

# redis-server for the cache fault tests (each starts a private one on a free port).
redis:
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# The documentation site (mkdocs.yml, sources in docs/), built into site/; warnings fail it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The whole suite: browsers, edge toolchains, scale-out, faults and fuzzing included.
test: install docs edge tvm chromium nginx npm redis
	PALLET_EDGE_PYTHON=$(CURDIR)/$(EDGE)/bin/python PALLET_TVM_PYTHON=$(CURDIR)/$(TVM)/bin/python $(BIN)/python -m pytest

# Unit and in-process tests, under 3 minutes on 2 cores: no browser, no edge toolchains, nothing marked slow.
# Two pytest-xdist workers, each taking whole files in the order they are collected (module fixtures run once).
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not e2e and not edge" -n 2 --dist loadfile --no-loadscope-reorder

# The browser tests, saving their screenshots over the documentation's pictures in docs/screenshots/.
screenshots: install chromium npm
	PALLET_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/e2e

# Longer fuzzing than make test runs: each atheris target for --runs inputs, schemathesis with many
# more examples (with and without the API key); figures in benchmarks/results/fuzz.json.
fuzz: install
	$(BIN)/python benchmarks/fuzz.py

# Benchmarks: wrk from Debian, each peer in its own venv, results in benchmarks/results/.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	PYTHON=$(PYTHON) bash benchmarks/peers.sh
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/chart.py

clean:
	rm -rf $(VENV) $(EDGE) $(TVM) .pallet .pytest_cache
