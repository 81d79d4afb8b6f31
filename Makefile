# lmsleep: `make run` (one day and night on the embedded default) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline and quiet: no model hub, no telemetry.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TRL_EXPERIMENTAL_SILENCE := 1
# Prefect's ephemeral server waits 20 s for itself by default; on a busy 2-core machine it can
# take longer (`make run` timed out at 20 s once, measured), so it gets two minutes.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
# One Prefect home for every command, so `make ui` shows the nights `make run` ran (tests use
# their own, tests/conftest.py). The venv first on PATH: dvc.yaml's stages call `python`.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PREFECT_UI_API := http://127.0.0.1:4200/api

.PHONY: help install run birth birth-check bench bench-queue bench-seeding bench-scale bench-rehearsal bench-dream-facts day ui serve repro replay metrics plots test clean
help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

install: $(STAMP)  ## the venv: torch (CPU) first, then lmsleep and its tests' needs

# torch first, pinned to the local CPU wheel: an unpinned torch would pull GBs of CUDA.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lmsleep needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch 2.13.0 (CPU) and lmsleep into $(VENV) ..."
	@$(PY) -m pip install -q torch==2.13.0 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	@$(PY) -m pip install -q -e '.[test]' 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	@touch $@

models/base/config.json: | $(STAMP)
	$(PY) -m lmsleep.birth

birth: models/base/config.json  ## the embedded default's birth (~13-18 min on 2 cores)

# Does this machine make the model reports/birth.json describes? Births to its canary step (40)
# in a scratch directory and compares the weights' hash; exit 1 if not (README, Birth).
birth-check: $(STAMP)  ## does this machine make the recorded born model? (1-3 min)
	$(PY) -m lmsleep.birth --check

# One night as the Prefect flow (ephemeral Prefect server, SQLite MLflow under mlflow/), after
# birth on the first run. Each run is the next night.
# With `make ui` up, the night runs on its Prefect server (one history, one concurrency limit).
run: models/base/config.json  ## one night as the Prefect flow (the next day of the world)
	@if $(PY) -c "import urllib.request as u; u.urlopen('$(PREFECT_UI_API)/health', timeout=2)" 2>/dev/null; then \
	  echo "make ui is up: this night runs on its Prefect server ($(PREFECT_UI_API))"; \
	  PREFECT_API_URL=$(PREFECT_UI_API) $(PY) -m flows.sleep_cycle; \
	else $(PY) -m flows.sleep_cycle; fi

bench: models/base/config.json  ## the continual-learning benchmark (bench: in params.yaml; <= 30 min)
	$(PY) -m lmsleep.bench

# The full table: one queued DVC experiment per method (bench/dvc.yaml), JOBS at a time, each
# over bench.seeds x bench.days; hours on 2 cores. Follow with `dvc queue status`, compare with
# `dvc exp show --only-changed` (README, "The full table as DVC experiments").
QUEUE ?= sleep knowledge_seeding dreams_only sleep_no_selection sleep_no_random_expert sft_text none
JOBS ?= 2
QUEUED ?= $(shell date +%Y%m%d-%H%M%S)
bench-queue: models/base/config.json  ## the full table as queued DVC experiments (QUEUE=..., JOBS=2)
	@# The born model into dvc.lock and the DVC cache: each experiment checks it out from there
	@# (-C dvc.lock: a lock git does not track yet goes with the experiment all the same).
	dvc commit --force --quiet birth
	@for m in $(QUEUE); do \
	  dvc exp run --queue -s bench/dvc.yaml:bench -C dvc.lock -n bench-$$m-$(QUEUED) \
	    -S "bench.methods=[$$m]" -S bench.workers=1 -S bench.threads=1 || exit 1; \
	done
	dvc queue start -j $(JOBS)
	@echo "follow: dvc queue status (dvc queue logs <name>); compare: dvc exp show --only-changed"

# Knowledge Seeding's step against TRL's GKD step, a default night by stage, and its memory after 100 nights.
bench-seeding: models/base/config.json  ## a seeding step vs GKD's; a default night by stage; memory after 100 nights
	$(PY) -m lmsleep.bench_seeding

# One default night (seeding, then dreaming) on a random ~1B Llama (a GPU's job; --size tiny
# smoke-runs on a CPU). The born model writes each day's lessons and dreams once
# (reports/day{day}_lessons.json, reports/day{day}_dreams.json): random weights cannot.
# NIGHTS=2 times the second night, after a first shortened to what it leaves (an expert, the dreamer).
NIGHTS ?= 1
bench-scale: models/base/config.json  ## a sleep night on a random ~1B Llama (GPU): seconds by stage, tokens/s, MFU
	$(PY) -m lmsleep.bench_scale --lessons 'reports/day{day}_lessons.json' --dreaming \
		--dreams 'reports/day{day}_dreams.json' --nights $(NIGHTS) \
		$(if $(filter-out 1,$(NIGHTS)),--warmup seeding.epochs=1 dreaming.rehearse_epochs=1)

# Where a sleep night's answers come from: day 0 as Knowledge Seeding alone, as sleep's seeding (tau
# set aside) and after its rehearsal, probe by probe (METHOD=..., SEEDS="0 1 2").
METHOD ?= sleep
SEEDS ?= 0
bench-rehearsal: models/base/config.json  ## what a night's rehearsal costs the facts seeding taught, probe by probe
	$(PY) -m lmsleep.bench_rehearsal --method $(METHOD) --seeds $(SEEDS) --threads 1

# Could a dream teach a fact no lesson holds? Day 0 and 1's lessons and the born model's dreams,
# each probe's fact sorted by them (SEEDS="0 1 2").
bench-dream-facts: models/base/config.json  ## the day's facts no lesson holds, and how many a dream states
	$(PY) -m lmsleep.bench_dream_facts --seeds $(SEEDS) --days 0 1 --dreams 4 16 --threads 1

# The baselines' single day and night, without the pipeline (what `make run` was before it).
day: models/base/config.json  ## a baseline's single day and night, no pipeline
	$(PY) -m lmsleep.night

# Prefect UI (127.0.0.1:4200) + MLflow UI (127.0.0.1:5000) + the served night deployments.
ui: models/base/config.json  ## Prefect UI :4200 + MLflow UI :5000 + the deployments
	$(PY) -m flows.ui

serve: $(STAMP)  ## the champion over HTTP on 127.0.0.1:5001 (mlflow models serve)
	$(PY) -m flows.serve

# Runs the pipeline's stages that are out of date (dvc.yaml), and shows what they measured.
repro: $(STAMP)  ## dvc repro
	dvc repro

# Rebuilds a past night from the dvc.lock its commit recorded, compares, comes back (README, Lineage).
replay: $(STAMP)  ## rebuild a past night: make replay REV=<git commit of that night>
	@test -n "$(REV)" || { echo "usage: make replay REV=<git commit whose dvc.lock recorded the night>"; exit 2; }
	$(PY) -m flows.replay $(REV)

metrics: $(STAMP)  ## dvc metrics show (the night's and birth's; the bench's: dvc exp show)
	dvc metrics show reports/metrics.json reports/birth.json

plots: $(STAMP)  ## dvc plots show (reports/nights.json -> dvc_plots/index.html)
	dvc plots show

test: $(STAMP)  ## the suite
	$(PY) -m pytest -q

clean:  ## remove models and reports
	rm -rf models reports/*.json reports/*.png
