# The two commands a user types: `make repro` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: repro test test-fast bench lint pipeline clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Regenerate dvc.yaml from the method registry and params.yaml, then run the pipeline.
repro: $(STAMP)
	$(BIN)/rlcv pipeline
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q benchmarks --benchmark-columns=min,mean,rounds

lint: $(STAMP)
	$(BIN)/ruff check rlcv datasets methods tests benchmarks

pipeline: $(STAMP)
	$(BIN)/rlcv pipeline

clean-venv:
	rm -rf $(VENV)
