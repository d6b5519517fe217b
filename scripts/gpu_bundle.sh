#!/usr/bin/env bash
# Run HERE (the dev machine), from the repo root, before a session's GPU calls: puts what the
# GPU machine lacks into ignored folders that `run` can carry (<= 64 MiB in all):
#   .whl/    wheels of our Python needs for CPython 3.12 (the machine has torch 2.11, numpy, ...)
#   .device/mnist/  the four MNIST .gz files (the machine has no internet)
# Then carry [".whl", ".device"] and run `bash scripts/gpu_check.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# dvc needs hydra-core -> antlr4-python3-runtime 4.9.x, published as an sdist only: build its
# (pure-Python) wheel here so the binary-only download can resolve it.
python3 -m pip wheel -q --no-deps -w "$tmp/links" antlr4-python3-runtime==4.9.3
rm -rf .whl
PIP_FIND_LINKS="$tmp/links" WHEEL_DIR=.whl bash "$shared/tools/device-wheels.sh" \
  mlflow==3.17.2 optuna==5.0.0 torch-fidelity==0.4.0 pydantic ruamel.yaml dvc==3.67.1
mkdir -p .device/mnist && cp "$shared"/data/mnist/*.gz .device/mnist/
du -sh .whl .device
