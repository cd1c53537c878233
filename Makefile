# ranklab — every command a person, a hook or CI runs. `make` (or `make help`) lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3.11
# Overridable to run with another venv: make test VENV=/path/to/.venv (the template test does).
VENV   ?= .venv
BIN    := $(VENV)/bin
# Thread pools sized to the machine: more threads than cores only adds contention.
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export PYTHONUNBUFFERED := 1
# Offline machines: no usage telemetry from the libraries.
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export FEAST_USAGE := False
export DO_NOT_TRACK := 1
# Dagster keeps its run history under the state folder, never in ~/.dagster.
export DAGSTER_HOME ?= $(CURDIR)/.state/dagster

.PHONY: help setup run test test-fast lint format ui mlflow-ui evidently-ui serve rollback simulate drift-demo lab clean lock bench
PORT ?= 3001  # the service; Dagster UI keeps 3000
SCENARIO ?= none
DAYS ?= 3
CHANGE_DAY ?= 0
DEMO_SCENARIO ?= silent_degradation

help: ## List the commands
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp makes `make setup` idempotent: it reinstalls only when the dependencies change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $@

# System tools the tests and the benchmark run: promtool (Debian's prometheus package: the
# alert rules' unit tests), wrk (the external load generator of benchmarks/serving.py) and
# Chromium with its driver (the playground's browser test: a browser download does not work
# offline). Installed only when missing, so a second `make setup` touches nothing.
SYSTEM_TOOLS := promtool:prometheus wrk:wrk chromium:chromium chromedriver:chromium-driver
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo )apt-get

setup: $(VENV)/.installed ## Create .venv and install everything, system tools included (idempotent, ~3 min fresh)
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(DAGSTER_HOME) && cp -n pipelines/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@echo "ready: $(VENV) ($$($(BIN)/python -c 'import ranklab; print(ranklab.__version__)'))"

run: setup ## Run the whole lifecycle on the embedded default data (Dagster job; V=1: full log)
	@$(BIN)/ranklab run $(if $(V),-v,)

test: setup ## Run every test, the slow end-to-end ones included (what CI runs)
	$(BIN)/python -m pytest

test-fast: setup ## Run the tests, skipping the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow"

lint: setup ## Lint, check formatting and the import contracts (.importlinter); notebooks carry no outputs
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/nbstripout --verify notebooks/*.ipynb

format: setup ## Fix lint findings and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: setup ## Dagster UI on http://127.0.0.1:3000 (MLflow UI: `make mlflow-ui`)
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: setup ## MLflow UI on http://127.0.0.1:5000 over the local registry
	$(BIN)/ranklab mlflow-ui

evidently-ui: setup ## Evidently UI on http://127.0.0.1:8000 over the monitoring windows
	$(BIN)/evidently ui --host 127.0.0.1 --port 8000 --workspace .state/evidently

serve: setup ## Serve the champion with BentoML on http://127.0.0.1:3001 (PORT=...; after `make run`)
	$(BIN)/ranklab serve --port $(PORT)

rollback: setup ## Point `champion` back at the previous champion (REASON="...")
	$(BIN)/ranklab rollback --reason "$${REASON:?set REASON=\"why\"}"

simulate: setup ## Drift drill: DAYS of traffic with SCENARIO from CHANGE_DAY, monitored daily
	$(BIN)/ranklab simulate --scenario $(SCENARIO) --days $(DAYS) --change-day $(CHANGE_DAY)

drift-demo: setup ## The monitoring loop end to end in .state/drift-demo: drift, alert, sensor, retrain, swap (DEMO_SCENARIO=; V=1: full log)
	@$(BIN)/ranklab drift-demo --scenario $(DEMO_SCENARIO) $(if $(V),-v,)

lab: setup ## Start workshop lab N with its state and clean code (N=3; FORCE=1 discards edits)
	$(BIN)/ranklab lab $${N:?set N=<lab number>} $(if $(FORCE),--force,)

bench: setup ## Run the benchmarks (quality against peers)
	$(BIN)/python -m benchmarks.quality

clean: ## Remove all generated state (.state/) and caches; keeps .venv
	rm -rf .state .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

lock: setup ## Re-pin constraints.txt from the current .venv
	{ echo "# Exact versions that were installed and tested together (pip install -c constraints.txt)."; \
	  echo "# Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt
