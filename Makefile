# One-command set-up and runs. Every target first creates or refreshes the project's
# virtualenv (.venv) from setup.py; the refresh is skipped while setup.py is unchanged.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum setup.py | cut -c1-12)
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
OUT ?= runs/demo
BENCH ?= runs/benchmark
SEEDS ?= 3
SIM_USERS ?= 30000
PYTEST_ARGS ?=

.PHONY: venv demo test dataset benchmark benchmark-pipeline clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,benchmark]'
	rm -f $(VENV)/.installed-*
	touch $@

## The main job, end to end on the CDNOW log the product ships with.
demo: venv
	$(BIN)/python -m htgnn_tf.demo --out $(OUT)

## The test suite.
test: venv
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

## Only the Beam dataset job on CDNOW.
dataset: venv
	$(BIN)/htgnn build-dataset --spec cdnow --out $(OUT)/data

## The paper's Tables I-IV, every model x $(SEEDS) seeds, on CDNOW and on a simulated log
## of $(SIM_USERS) users (hours; see BENCHMARKS.md). Datasets are built once; finished runs
## are cached, so an interrupted run picks up where it stopped.
benchmark: venv $(BENCH)/cdnow/data/run_report.json $(BENCH)/sim/data/run_report.json
	$(BIN)/htgnn benchmark --data $(BENCH)/cdnow/data --out $(BENCH)/cdnow --seeds $(SEEDS)
	$(BIN)/htgnn benchmark --data $(BENCH)/sim/data --out $(BENCH)/sim --seeds $(SEEDS)

$(BENCH)/cdnow/data/run_report.json: | venv
	$(BIN)/htgnn build-dataset --spec cdnow --out $(BENCH)/cdnow/data

$(BENCH)/sim/data/run_report.json: | venv
	$(BIN)/htgnn simulate --out $(BENCH)/sim/raw --users $(SIM_USERS) --seed 0
	$(BIN)/htgnn build-dataset --spec $(BENCH)/sim/raw/spec.yaml --out $(BENCH)/sim/data

## Pipeline throughput on a simulated log (figures go to BENCHMARKS.md).
benchmark-pipeline: venv
	$(BIN)/python -m beam_pipelines.benchmark --users 100000 --out runs/bench

clean:
	rm -rf $(VENV) .cache runs
