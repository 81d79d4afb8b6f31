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

.PHONY: install run birth bench bench-seeding bench-scale day ui test clean
install: $(STAMP)

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

birth: models/base/config.json

# One night as the Prefect flow (ephemeral Prefect server, SQLite MLflow under mlflow/), after
# birth on the first run. Each run is the next night.
run: models/base/config.json
	$(PY) -m flows.sleep_cycle

bench: models/base/config.json
	$(PY) -m lmsleep.bench

# Knowledge Seeding's step against TRL's GKD step, and its memory after 100 nights.
bench-seeding: models/base/config.json
	$(PY) -m lmsleep.bench_seeding

# One default night on a random ~1B Llama (a GPU's job; --size tiny smoke-runs on a CPU).
# The born model writes day 0's lessons once (reports/day0_lessons.json): random weights cannot.
bench-scale: models/base/config.json
	$(PY) -m lmsleep.bench_scale --lessons reports/day0_lessons.json

# The baselines' single day and night, without the pipeline (what `make run` was before it).
day: models/base/config.json
	$(PY) -m lmsleep.night

# Prefect UI (127.0.0.1:4200) + MLflow UI (127.0.0.1:5000) + the served night deployments.
ui: models/base/config.json
	$(PY) -m flows.ui

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf models reports/*.json reports/*.png
