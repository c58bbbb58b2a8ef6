# cckl: `make paper` regenerates every figure and table; `make test` runs pytest + nbval.
#   make paper                         trains + evaluates what the cache lacks, renders, publishes figures/<profile>/
#   make paper PROFILE=quick           (paper | gpu | quick | smoke; default: paper with CUDA, quick without)
#   make paper DEVICE=cpu JOBS=1       (device; runs side by side: default one per CPU core, on a GPU as many as fit)
#   make paper PROFILE=gpu BUNDLE=f    render results made elsewhere (`cckl bundle`): nothing is trained
#   make paper RERENDER=1              render every notebook again (by default one whose inputs, outputs and code are
#                                      as at its last render is not: cckl_core.render_state)
#   make evaluations PROFILE=gpu       train + evaluate only (what a GPU node without Jupyter runs)
#   make test | make test-slurm | make lab | make docs | make data | make clean | make env
# Variables come from the command line (or CCKL_PROFILE / CCKL_DEVICE); a PROFILE, DEVICE, JOBS, BUNDLE or RERENDER in your
# shell environment is ignored, so that it cannot silently change what is built.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SHARED_ZIP := ../shared/data/cifar10-jpeg.zip
PROFILES := $(basename $(notdir $(wildcard cckl_core/profiles/*.toml)))
NOTEBOOKS := $(basename $(notdir $(wildcard notebooks/[0-9]*.ipynb)))
export PYTHONWARNINGS := ignore::FutureWarning,ignore::DeprecationWarning

# ---------------------------------------------------------------- variables, checked before anything runs
q = '$(subst ','\'',$(1))'
define from_command_line
ifeq ($$(origin $(1)),environment)
$$(info [cckl] ignoring $(1)=$$($(1)) from the shell environment; pass it on the command line: make ... $(1)=...)
undefine $(1)
endif
endef
$(foreach v,PROFILE DEVICE JOBS BUNDLE RERENDER,$(eval $(call from_command_line,$(v))))

DEVICE ?= auto
ifeq ($(filter paper evaluations render lab docs test nbval,$(or $(MAKECMDGOALS),help)),)
else ifeq ($(origin PROFILE),undefined)
PROFILE := $(shell $(PY) -m cckl_core default-profile 2>/dev/null || echo quick)
endif
ifneq ($(origin PROFILE),undefined)
ifeq ($(filter $(PROFILE),$(PROFILES)),)
$(error unknown PROFILE '$(PROFILE)'; valid: $(PROFILES))
endif
endif
ifdef JOBS
ifeq ($(shell printf '%s' $(call q,$(JOBS)) | grep -Ex '[1-9][0-9]{0,3}'),)
$(error JOBS must be a whole number >= 1, got '$(JOBS)')
endif
endif
ifdef BUNDLE
ifeq ($(shell test -f $(call q,$(BUNDLE)) && echo yes),)
$(error BUNDLE=$(BUNDLE): no such file; make one with `python -m cckl_core bundle --profile P --out FILE`)
endif
endif

.PHONY: help env notebook-filter test test-slurm pytest fixture nbval paper evaluations render report lab docs data \
  clean rehearse
.DEFAULT_GOAL := help

help:
	@sed -n '1,9p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- environment
# The tested set of versions (requirements.lock), then the package itself without resolving anything; then the
# notebook filter of this checkout.
env: $(STAMP) notebook-filter
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	PYTHONWARNINGS=ignore $(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Notebooks are committed without outputs: nbstripout is this checkout's git filter for notebooks/*.ipynb
# (.gitattributes), so `git diff`, `git add` and commits see a notebook stripped, whatever wrote it: no outputs or
# execution counts, no language_info (it names the Python version that ran it), cell ids kept; an edit of a cell's
# source shows. The kernelspec stays: the notebooks name `make env`'s kernel (python3, "Python 3 (ipykernel)"), so
# JupyterLab opens them without asking for a kernel; one saved from another kernel shows that change. `git status`
# still lists a notebook saved with outputs (git compares sizes first; `git add` clears it): `make lab` saves
# notebooks/ as this filter leaves them (cckl_core.lab), so it stays clean. Outside a git checkout (an unpacked
# archive) there is nothing to configure.
NBSTRIPOUT = "$(if $(filter /%,$(PY)),$(PY),$(CURDIR)/$(PY))" -m nbstripout --keep-id \
  --extra-keys metadata.language_info
notebook-filter: $(STAMP)
	@if [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = $(call q,$(CURDIR)) ]; then \
	  git config filter.nbstripout.clean $(call q,$(NBSTRIPOUT)) && git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && git config diff.ipynb.textconv $(call q,$(NBSTRIPOUT) -t) && \
	  echo "[cckl] notebooks/*.ipynb: git sees them without outputs (nbstripout filter configured)"; \
	else echo "[cckl] not a git checkout: no notebook filter to configure"; fi

# ---------------------------------------------------------------- tests
# pytest (2 workers, one torch thread each), then the notebooks under nbval, rendering a smoke fixture that the
# test set-up trains once (build/test-fixture/; the notebooks train nothing). Paths from $(CURDIR) are quoted
# ($(call q,...)): a checkout whose path holds a space works.
FIXTURE := $(CURDIR)/build/test-fixture
test: pytest nbval

fixture: $(STAMP)
	@CCKL_THREADS=1 $(PY) tests/fixture.py $(call q,$(FIXTURE))

pytest: fixture
	CCKL_TEST_FIXTURE=$(call q,$(FIXTURE)) CCKL_THREADS=1 $(PY) -m pytest -n 2 -q -p no:cacheprovider --durations=10 \
	  --ignore=tests/slurm tests

# The scale-out test on a real Slurm: scripts/local_slurm.sh starts a single-node cluster from Debian's slurm-wlm and
# munge (installed when missing: needs root), state and logs in build/slurm/; the smoke profile is launched through
# it, killed, timed out and resumed, and compared with the smoke fixture byte for byte. Every daemon is stopped after,
# pass or fail.
test-slurm: fixture
	@trap 'scripts/local_slurm.sh stop' EXIT; trap 'exit 130' INT TERM; scripts/local_slurm.sh start && \
	  CCKL_TEST_SLURM=1 CCKL_TEST_FIXTURE=$(call q,$(FIXTURE)) SLURM_CONF=$(call q,$(CURDIR)/build/slurm/slurm.conf) \
	  $(PY) -m pytest -q -p no:cacheprovider --durations=5 tests/slurm

nbval: fixture
	CCKL_PROFILE=smoke CCKL_ARTIFACTS=$(call q,$(FIXTURE)/artifacts) CCKL_DATA_ROOT=$(call q,$(FIXTURE)/no-data) \
	  CCKL_FIGURES=$(call q,$(CURDIR)/build/nbval/figures) \
	  $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env $(addprefix notebooks/,$(addsuffix .ipynb,$(NOTEBOOKS)))

# ---------------------------------------------------------------- the paper
# evaluate (train what the cache lacks, then its evaluations, runs side by side: cckl_core.schedule) ->
# render (`cckl render`: one process, a kernel per CPU at most; the notebooks read the cache only, each with every
# parameter injected at its published value, cckl_core.paper.PUBLISHED, so nothing saved in a source notebook
# steers a render; executed notebooks in build/<profile>/; a notebook the profile has no runs for, e.g. 01 under
# gpu, is left out; an expected stop is its one line) -> the report, in the same process (figures/<profile>/
# index.html, compute_costs, figures/README.md). A notebook whose inputs (its source, the package, the cache,
# the data, the environment) and outputs are as at its last render is not run again (cckl_core.render_state;
# RERENDER=1 runs every one). With BUNDLE=file the results are unpacked first and nothing needs computing.
# Completion of runs is read from the run cache. For quick it also refreshes results/quick-models.tar, the
# trained models the repository carries (`cckl_core.zoo`; rewritten only when the cached weights changed).
paper: evaluations
	@$(MAKE) --no-print-directory render PROFILE=$(PROFILE) $(if $(filter quick,$(PROFILE)),&& \
	  $(PY) -m cckl_core zoo --profile quick --if-complete)

evaluations: $(STAMP)
ifdef BUNDLE
	$(PY) -m cckl_core unbundle --profile $(PROFILE) $(call q,$(BUNDLE))
endif
	$(PY) -m cckl_core evaluate --profile $(PROFILE) --device $(call q,$(DEVICE)) $(if $(JOBS),--jobs $(call q,$(JOBS)))

render: $(STAMP)
	@CCKL_FIGURES=$(call q,$(CURDIR)/figures) $(PY) -m cckl_core render --profile $(PROFILE) \
	  --out $(call q,$(CURDIR)/build/$(PROFILE))$(if $(RERENDER), --force)

report: $(STAMP)
	@CCKL_FIGURES=$(call q,$(CURDIR)/figures) $(PY) -m cckl_core report --profile $(PROFILE) --notebooks build/$(PROFILE)

# ---------------------------------------------------------------- helpers
# JupyterLab on this folder (notebooks/, build/, figures/), on localhost with a token, as root or not; the kernels
# get PROFILE when given (else each notebook picks a profile whose results are present). A notebook of notebooks/
# is saved as git's filter leaves it (cckl_core.lab: no outputs), so running and saving leaves `git status` clean.
lab: $(STAMP) notebook-filter
	$(if $(filter command line,$(origin PROFILE)),CCKL_PROFILE=$(PROFILE)) $(VENV)/bin/jupyter lab --ip=127.0.0.1 \
	  --no-browser $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=$(call q,$(CURDIR)) \
	  --LabApp.default_url=/lab/tree/notebooks --ContentsManager.pre_save_hook=cckl_core.lab.strip_before_save

# The API reference from the docstrings (pdoc), with what `make paper` published for PROFILE beside it (the executed
# notebooks, the report; said when there is none yet), in build/docs/ (not committed): open build/docs/index.html.
docs: $(STAMP)
	$(PY) -m cckl_core.docs --out build/docs --profile $(PROFILE)

# The gpu profile's exact runs at a few images on this CPU: train, evaluate, bundle, unbundle, render.
rehearse: $(STAMP)
	$(PY) -m cckl_core rehearse --profile gpu

# Unpack the offline CIFAR-10 copy (JPEG q75) where the loader finds it.
data:
	@if [ -d data/cifar10-jpeg/train ]; then echo "data/cifar10-jpeg is already there"; \
	elif [ -f $(SHARED_ZIP) ]; then mkdir -p data && $(PYTHON) -m zipfile -e $(SHARED_ZIP) data/cifar10-jpeg/ && echo "unpacked to data/cifar10-jpeg"; \
	else echo "no $(SHARED_ZIP): CIFAR-10 will be downloaded on first use into data/"; fi

clean:
	rm -rf build .pytest_cache
	@echo "kept artifacts/ (trained runs) and data/; remove them by hand to retrain"
