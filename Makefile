# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make repro   -> the full comparison (pipeline grid, then dvc repro)
#   make test    -> the test suite
# Both create .venv on first use. MNIST comes from $PIPELINE_MNIST_MIRROR when set.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro grid test smoke results lint imports bench mlflow-ui optuna-dashboard clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The (variant, seed) chains at once on Dask (one worker per core, or grid.per_device per GPU),
# each recorded in dvc.lock; then dvc repro runs what is left (floor, noise, toy, report).
# `dvc repro` alone gives the same result, one stage at a time.
repro: $(BIN)/.installed
	pipeline grid
	dvc repro

grid: repro

test: $(BIN)/.installed
	pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

smoke: $(BIN)/.installed
	bash scripts/smoke.sh

# every model at 20 epochs in ./results-run/ (hours on a CPU) -> reports/results/ (committed)
results: $(BIN)/.installed
	bash scripts/results.sh

lint: $(BIN)/.installed
	ruff check .
	ruff format --check .
	lint-imports

# The import-linter contract in pyproject.toml: imports run cli -> stages -> training -> core,
# infra below them all (CI runs it before the tests).
imports: $(BIN)/.installed
	lint-imports

bench: $(BIN)/.installed
	python benchmarks/train_speed.py

# One worker: MLflow's default of 4 uvicorn workers is a lot for a 2-core machine.
MLFLOW_PORT ?= 5000
mlflow-ui: $(BIN)/.installed
	-python -m pipeline.cli mlflow-links --base http://127.0.0.1:$(MLFLOW_PORT)
	mlflow ui --backend-store-uri sqlite:///mlflow.db --port $(MLFLOW_PORT) --workers 1

# The tuning studies, live, on 127.0.0.1: the storage of `pipeline tune` (tune.storage of
# PARAMS, or STORAGE=journal://optuna.journal / sqlite:///optuna.db / postgresql://...).
OPTUNA_PORT ?= 8080
PARAMS ?= params.yaml
optuna-dashboard: $(BIN)/.installed
	python -m pipeline.stages.tune.dashboard --params $(PARAMS) --port $(OPTUNA_PORT) $(if $(STORAGE),--storage '$(STORAGE)')
