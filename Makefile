# cckl: `make paper` regenerates every figure and table; `make test` runs pytest + nbval.
#   make paper PROFILE=quick DEVICE=cpu     (PROFILE: paper | gpu | quick | smoke; default paper with CUDA, else quick)
#   make paper JOBS=1                       (one run at a time; default: one per CPU core, one on a GPU)
#   make runs evaluations PROFILE=gpu       (train + evaluate only: what a GPU node without Jupyter runs)
#   make paper PROFILE=gpu BUNDLE=gpu.tar.gz (render results made elsewhere: `python -m cckl_core bundle`)
#   make test | make lab | make data | make runs | make evaluations | make clean

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVICE ?= auto
PROFILE ?= $(shell $(PY) -c "import torch; print('paper' if torch.cuda.is_available() else 'quick')" 2>/dev/null || echo quick)
NOTEBOOKS := 01_theorem_check 02_fisher_growth 03_capacity_study 04_appendix_c_table
SHARED_ZIP := ../shared/data/cifar10-jpeg.zip
export PYTHONWARNINGS := ignore::FutureWarning,ignore::DeprecationWarning

.PHONY: help env test pytest nbval paper runs evaluations render lab data clean
.DEFAULT_GOAL := help

help:
	@sed -n '1,8p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- environment
env: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# ---------------------------------------------------------------- tests
# pytest (2 workers, one torch thread each) then the notebooks on the smoke profile under nbval.
test: pytest nbval

pytest: $(STAMP)
	CCKL_THREADS=1 $(PY) -m pytest -n 2 -q -p no:cacheprovider tests

nbval: $(STAMP)
	CCKL_PROFILE=smoke CCKL_DEVICE=cpu CCKL_ARTIFACTS=$(CURDIR)/build/nbval/artifacts CCKL_FIGURES=$(CURDIR)/build/nbval/figures \
	  $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env $(addprefix notebooks/,$(addsuffix .ipynb,$(NOTEBOOKS)))

# ---------------------------------------------------------------- the paper
# runs (training) -> evaluations (attacks, pairs, Fisher: cached in each run's folder) ->
# notebooks (render only). Runs and evaluations are targets of their own (rules generated
# from the profile), so `make -j` trains and evaluates independent runs in parallel and a
# notebook never calls a model. With BUNDLE=file.tar.gz the results are unpacked first and
# nothing is trained or evaluated.
# (BUNDLE_DONE is defined before deps.mk is read: make expands a rule's prerequisites as it reads it.)
ifdef BUNDLE
BUNDLE_DONE := build/$(PROFILE)/bundle.done
$(BUNDLE_DONE): $(BUNDLE) $(STAMP)
	$(PY) -m cckl_core unbundle --profile $(PROFILE) $(BUNDLE)
	@mkdir -p $(@D) && touch $@
endif

ifneq ($(filter paper runs evaluations render,$(MAKECMDGOALS)),)
-include build/$(PROFILE)/deps.mk
endif

build/$(PROFILE)/deps.mk: $(STAMP) cckl_core/profiles/$(PROFILE).toml cckl_core/__main__.py
	@mkdir -p $(@D)
	$(PY) -m cckl_core deps --profile $(PROFILE) > $@

runs: $(addprefix build/$(PROFILE)/runs/,$(addsuffix .done,$(RUNS_$(PROFILE))))
evaluations: $(addprefix build/$(PROFILE)/evals/,$(addsuffix .done,$(RUNS_$(PROFILE))))

# `paper` trains and evaluates JOBS runs side by side, each with THREADS torch threads, as
# `python -m cckl_core jobs` says: on a CPU one job per core (one thread each; on 2 cores
# 1.05-1.23x the training throughput of one 2-thread job: benchmarks/jobs.py), on a GPU one job.
# JOBS=n fixes the number.
# The notebooks only read cached results, so they render RENDER_JOBS at a time, sharing the
# cores (OMP_NUM_THREADS = cores / RENDER_JOBS: oversubscribed threads slow the small tensor ops).
RENDER_JOBS ?= 2
RENDER_THREADS = $(shell n=$$(( $$(nproc 2>/dev/null || echo 1) / $(RENDER_JOBS) )); [ $$n -ge 1 ] && echo $$n || echo 1)
paper: $(STAMP) build/$(PROFILE)/deps.mk
	@$(MAKE) -q evaluations PROFILE=$(PROFILE) DEVICE=$(DEVICE) 2>/dev/null || { \
	  set -- $$($(PY) -m cckl_core jobs --profile $(PROFILE) --device $(DEVICE) $(if $(JOBS),--jobs $(JOBS))) && [ $$# -eq 2 ] && \
	  echo "[cckl] training and evaluating $$1 run(s) at a time, $$2 torch thread(s) each" && \
	  CCKL_THREADS=$$2 $(MAKE) --no-print-directory -Oline -j$$1 evaluations PROFILE=$(PROFILE) DEVICE=$(DEVICE); }
	@$(MAKE) --no-print-directory -j$(RENDER_JOBS) render PROFILE=$(PROFILE) DEVICE=$(DEVICE)
	$(PY) -m cckl_core.report --profile $(PROFILE) --costs
	@echo "figures in figures/$(PROFILE)/, summary in figures/README.md, executed notebooks in build/$(PROFILE)/"

render: $(addprefix build/$(PROFILE)/,$(addsuffix .ipynb,$(NOTEBOOKS)))

build/$(PROFILE)/%.ipynb: notebooks/%.ipynb $(STAMP)
	@mkdir -p $(@D)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$(RENDER_THREADS)} CCKL_PROFILE=$(PROFILE) CCKL_DEVICE=$(DEVICE) $(PY) -m papermill --log-level WARNING --no-progress-bar $< $@ -p profile $(PROFILE) -p device $(DEVICE)

# ---------------------------------------------------------------- helpers
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Unpack the offline CIFAR-10 copy (JPEG q75) where the loader finds it.
data:
	@if [ -d data/cifar10-jpeg/train ]; then echo "data/cifar10-jpeg is already there"; \
	elif [ -f $(SHARED_ZIP) ]; then mkdir -p data && $(PYTHON) -m zipfile -e $(SHARED_ZIP) data/cifar10-jpeg/ && echo "unpacked to data/cifar10-jpeg"; \
	else echo "no $(SHARED_ZIP): CIFAR-10 will be downloaded on first use into data/"; fi

clean:
	rm -rf build .pytest_cache
	@echo "kept artifacts/ (trained runs) and data/; remove them by hand to retrain"
