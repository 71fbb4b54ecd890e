# The two commands a user types: `make repro` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

# `rlcv pipeline` (~6 s, torch's import most of it) only when what dvc.yaml is written
# from changed since it last ran: a no-op `make repro` is then DVC's status check alone.
PIPELINE := .dvc/tmp/pipeline.stamp
PIPELINE_SRC := params.yaml dvc.yaml $(wildcard methods/*.py methods/*/*.py datasets/*.py) \
                rlcv/pipeline.py rlcv/params.py rlcv/registry.py rlcv/cli.py $(wildcard rlcv/report/*.py)

.PHONY: repro repro-timed test test-fast test-paper bench lint pipeline gpu-check clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Regenerate dvc.yaml from the method registry and params.yaml, then run the pipeline:
# `dvc repro` with its YAML parsing memoized (rlcv/dvcrun.py; plain `dvc repro` works too).
repro: $(STAMP) $(PIPELINE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m rlcv.dvcrun repro

$(PIPELINE): $(STAMP) $(PIPELINE_SRC)
	$(BIN)/rlcv pipeline
	mkdir -p $(dir $@) && touch $@

# The same, with every stage timed (DVC bookkeeping, start-up, work) into
# results/stage-times.csv; `python -m rlcv.stagetimes table` prints README's per-stage table.
repro-timed: $(STAMP) $(PIPELINE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m rlcv.stagetimes run

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not paper" tests

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow and not paper" tests

# the paper profile's dry runs of the heaviest rows (ResNet-101 detectors, SSD300, the
# 8-stack hourglass; tests/test_dryrun.py), minutes on a CPU, seconds on a GPU
test-paper: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m paper tests

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q benchmarks --benchmark-columns=min,mean,rounds

lint: $(STAMP)
	$(BIN)/ruff check rlcv datasets methods tests benchmarks

# On a CUDA machine: the fast tests and the whole smoke pipeline on the GPU, recorded in
# results/gpu/ (README.md, times.csv, tables/); see rlcv/gpucheck.py.
gpu-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m rlcv.gpucheck

pipeline: $(STAMP)
	$(BIN)/rlcv pipeline
	mkdir -p $(dir $(PIPELINE)) && touch $(PIPELINE)

clean-venv:
	rm -rf $(VENV)
