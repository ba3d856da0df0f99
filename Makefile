# nmt: make help lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export NMT_DATA_MIRROR ?= $(abspath ../shared/data)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

# TORCH=pip (default): a new venv gets torch $(TORCH_VERSION) from the package index (a CPU build here).
# TORCH=system: a venv over $(PYTHON)'s own site-packages keeps its torch (checked against pyproject.toml; e.g. a
# CUDA build on a GPU node), and nothing installs or replaces torch. WHEELS=<folder>: install from that folder of
# wheels only, without network (make wheels fills one on a machine with the package index).
PYTHON ?= python3
TORCH ?= pip
WHEELS ?=
PIP_SOURCE := $(if $(WHEELS),--no-index --find-links $(abspath $(WHEELS)))

$(VENV)/.installed: pyproject.toml
ifeq ($(TORCH),system)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) scripts/requirements.py check-torch
else
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(WHEELS),,$(PY) -m pip install -q --upgrade pip)
	$(PY) -m pip install -q $(PIP_SOURCE) torch==$(TORCH_VERSION)
endif
	$(PY) -m pip install -q $(PIP_SOURCE) -e '.[dev,fast]'
	touch $@

install: $(VENV)/.installed ## create .venv: torch 2.13.0 (TORCH=system: the interpreter's own), then nmt[dev,fast]

# The opt-in extras the tests exercise too (MLflow is large: not in a plain install).
$(VENV)/.installed-extras: $(VENV)/.installed
	$(PY) -m pip install -q $(PIP_SOURCE) -e '.[mlflow]'
	touch $@

# COMET (the comet extra) pins numpy < 2 and huggingface_hub < 1 (pyproject.toml): a venv of its own, so that .venv
# keeps its versions.
COMET_VENV ?= .venv-comet
$(COMET_VENV)/.installed: pyproject.toml
	test -x $(COMET_VENV)/bin/python || $(PYTHON) -m venv $(COMET_VENV)
	$(COMET_VENV)/bin/python -m pip install -q $(PIP_SOURCE) torch==$(TORCH_VERSION)
	$(COMET_VENV)/bin/python -m pip install -q $(PIP_SOURCE) -e '.[dev,comet]'
	touch $@

WHEELS_PYTHON ?= 3.12
WHEELS_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
wheels: ## download nmt's requirements but torch into wheels/ for an offline machine (WHEELS_PYTHON=3.12, x86_64)
	mkdir -p wheels
	# hydra-core's parser runtime has no wheel on the index: build it here (pure Python, any platform)
	$(PYTHON) -m pip wheel -q --no-deps -w wheels 'antlr4-python3-runtime==4.9.3'
	$(PYTHON) scripts/requirements.py list > wheels/requirements.txt
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version $(WHEELS_PYTHON) --implementation cp \
		$(addprefix --platform ,$(WHEELS_PLATFORMS)) --find-links wheels -d wheels -r wheels/requirements.txt \
		'setuptools>=77' wheel
	@echo "wheels/ ($$(ls wheels/*.whl | wc -l) wheels): on the offline machine, make install TORCH=system WHEELS=wheels"

prepare: install ## download/tokenize Multi30k de-en (data/prepared/)
	$(VENV)/bin/nmt-prepare

train: prepare ## train the default model (Multi30k de-en, RNN attention) into outputs/
	$(VENV)/bin/nmt-train

test: $(VENV)/.installed-extras $(COMET_VENV)/.installed ## the whole test suite (one pytest worker per CPU core), then the COMET tests in .venv-comet
	$(PY) -m pytest -n auto
	$(COMET_VENV)/bin/python -m pytest -q tests/test_comet.py

test-fast: $(VENV)/.installed-extras ## the tests not marked slow, under a minute on 2 CPU cores (pytest -n auto -m "not slow")
	$(PY) -m pytest -n auto -m "not slow"

test-comet: $(COMET_VENV)/.installed ## the COMET tests with a tiny COMET model, in .venv-comet (installs the comet extra there)
	$(COMET_VENV)/bin/python -m pytest tests/test_comet.py

bench: install ## training/decoding speed of the default models on this device (a few minutes on CPU)
	$(VENV)/bin/nmt-bench --threads 1 --compare-threads 1 2

bottleneck: install ## fixed-context vs attention by input length, 3 seeds, both followed over training (PRESET=default|quick|news|gpu; <= 120 min on 2 CPU cores)
	$(VENV)/bin/nmt-bottleneck preset=$(or $(PRESET),default)

capacity: install ## capacity sweep: fixed-context models differing only in the summary vector c (32-512, 2 seeds; <= 45 min on 2 CPU cores)
	$(VENV)/bin/nmt-bottleneck preset=capacity

claims: install ## the side claims: scaling, temperature, hard attention, scorers, heads (PRESET=default|full)
	$(VENV)/bin/nmt-claims preset=$(or $(PRESET),default)

peer-bench: install ## nmt vs JoeyNMT 2.3.0 side by side, same data and minutes, RUNS=3 seeds pooled (~1 h a run; OUT=<dir> continues one)
	$(PY) scripts/peer_bench.py --minutes $(or $(MINUTES),20) --runs $(or $(RUNS),3) \
		$(if $(EVAL_EVERY),--eval-every $(EVAL_EVERY)) $(if $(SENTENCES),--sentences $(SENTENCES)) $(if $(OUT),--out $(OUT))

bench-data: install ## prepare and training start-up, time and peak RSS, on N resampled pairs (N="200000 1000000")
	$(PY) -P scripts/bench_data.py $(or $(N),200000)

bench-against: install ## training tokens/s of this tree against REV, side by side A B A B (e.g. REV=main~3)
	$(PY) scripts/bench_against.py $(or $(REV),$(error set REV, e.g. make bench-against REV=main~3)) --threads 1 \
		--decode-sentences 0

gpu-check: install ## prove the CUDA path (bf16, fused AdamW, TF32, compile, resume, beam, NCCL); one line without CUDA
	$(VENV)/bin/nmt-gpu-check

lint: install ## ruff and the layers contract (tests/test_layers.py)
	$(VENV)/bin/ruff check nmt tests scripts
	$(PY) -m pytest -q tests/test_layers.py

tensorboard: install ## serve TensorBoard on outputs/
	$(VENV)/bin/tensorboard --logdir outputs --bind_all --samples_per_plugin=images=1000

clean: ## remove caches and build artefacts (keeps data/ and outputs/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install wheels prepare train test test-fast bench bench-against bottleneck capacity claims peer-bench gpu-check lint tensorboard clean
