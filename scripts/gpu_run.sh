#!/usr/bin/env bash
# Run THERE (the GPU machine, via the device tool, carrying .whl and .device made by
# scripts/gpu_bundle.sh), from the repo root:  bash scripts/gpu_run.sh PART...
#   test   the CUDA tests (graph replay vs eager) and the fast-vs-classic tests
#   bench  benchmarks/train_speed.py on CUDA -> $OUT/train_speed_cuda.{json,md}
#   chain  the full-params DVC chain on CUDA, timed; resumable: run it again in the next call
#          while the machine is warm (checkpoints persist) and add the wall times. It resets
#          .dvc/cache and params.yaml: run it in a copy (the device's is one; for a dry run
#          here, make one as scripts/smoke.sh does), never in your checkout
#   tune   a 20-trial wgan_gp study (3 epochs per trial: pruning starts at epoch 3), timed -> $OUT/tuning_*.{json,png}
# Each part prints its wall time. Keep each call under the 10-minute limit.
#
# Knobs (for a dry run of the script's logic on a CPU: GPU_PROFILE=profiles/smoke.yaml
# DEVICE=cpu TUNE_TRIALS=2 TUNE_EPOCHS=1, with the venv's python3 first on PATH):
#   GPU_PROFILE (profiles/gpu.yaml), DEVICE (cuda), TUNE_TRIALS (20), TUNE_EPOCHS (3),
#   CHAIN_LIMIT (540 s per call), TUNE_LIMIT (500 s per call; the study resumes next call)
set -euo pipefail
export PIPELINE_MNIST_MIRROR=${PIPELINE_MNIST_MIRROR:-$PWD/.device/mnist}
export PYTHONUNBUFFERED=1 PIPELINE_DEBUG=1
profile=${GPU_PROFILE:-profiles/gpu.yaml} device=${DEVICE:-cuda}
# a warm machine keeps /tmp/site from the previous call
[ ! -d /tmp/site ] || export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
if ! python3 -c "import mlflow, optuna, dvc, torch_fidelity" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m pipeline "$@"\n' >/tmp/bin/pipeline
chmod +x /tmp/bin/pipeline && export PATH=/tmp/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ "$device" = cpu ] || nvidia-smi -L
python3 -c "import torch, mlflow, optuna, dvc; print('torch', torch.__version__)"

# timed CMD...: run it, print its wall time, return its status (124: stopped by timeout)
timed() {
  local t0 rc=0; t0=$(date +%s); "$@" || rc=$?
  echo "[$*] wall $(( $(date +%s) - t0 )) s, exit $rc"; return $rc
}

for part in "$@"; do
  case $part in
    test)
      timed python3 -m pytest -q -x -rs tests/test_train.py -k "cuda or static or fast_path" \
        2>&1 | tee "$OUT/test.log" ;;
    bench)
      timed python3 benchmarks/train_speed.py --device "$device" --steps 300 --repeats 3 \
        2>&1 | tee "$OUT/bench.log"
      cp reports/benchmarks/train_speed_"${device%%:*}".* "$OUT/" ;;
    chain)
      # every call: tracked files (params.yaml) are re-sent fresh; the merge is idempotent
      python3 -m pipeline.config merge params.yaml "$profile"
      if [ ! -f .gpu-chain ]; then  # first call only: a fresh DVC state (outputs persist)
        rm -rf .dvc/tmp .dvc/cache
        if [ -e .git ]; then dvc init -q -f; else
          dvc init -q --no-scm -f
          # .dvc/config is tracked, so the next call re-sends it without init's core.no_scm:
          # keep it in the ignored config.local, which stays on the machine
          dvc config --local core.no_scm true
        fi
        dvc config --local core.analytics false
        touch .gpu-chain
      fi
      if timed timeout "${CHAIN_LIMIT:-540}" dvc repro >"$OUT/chain_repro.log" 2>&1; then
        tail -5 "$OUT/chain_repro.log"
        echo "second repro (must be a no-op):"; dvc repro 2>&1 | tail -2
        dvc metrics show 2>&1 | tee "$OUT/metrics.txt"
      else
        tail -5 "$OUT/chain_repro.log"; echo "chain not finished: run the chain part again now"
      fi
      [ -f reports/comparison.md ] && cp reports/comparison.md reports/index.html "$OUT/" || true ;;
    tune)  # after `chain` (it needs data/ and the classifier; trains them if missing)
      python3 -m pipeline.config merge params.yaml "$profile"
      [ -f models/classifier/classifier.pt ] || { pipeline prepare && pipeline classifier; }
      # the whole log goes to $OUT as it is written (it survives a call stopped at its limit)
      timed timeout "${TUNE_LIMIT:-500}" pipeline tune wgan_gp --trials "${TUNE_TRIALS:-20}" \
        --epochs "${TUNE_EPOCHS:-3}" --device "$device" 2>&1 | tee "$OUT/tune.log" | tail -30
      pipeline tune wgan_gp --apply | tee -a "$OUT/tune.log"
      [ ! -f .gpu-chain ] || dvc status train@wgan_gp 2>&1 | tee -a "$OUT/tune.log"
      cp reports/tuning/wgan_gp/best.json "$OUT/tuning_best.json" || true
      cp reports/tuning/wgan_gp/*.png "$OUT/" 2>/dev/null || true ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done
