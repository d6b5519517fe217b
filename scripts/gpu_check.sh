#!/usr/bin/env bash
# The GPU machine's one command (issue #17): run THERE from the repo root, carrying the .whl
# and .device folders made HERE by scripts/gpu_bundle.sh:   bash scripts/gpu_check.sh
# Under 8 minutes of wall time in all (each part has its own time limit), writing as it goes
# to $OUT, so a part stopped by its limit, or the whole command stopped, still leaves figures:
#   1. tests.log          the CUDA tests (-k cuda; no -x: one failure skips nothing)
#   2. train_speed_*.md   the benchmark for every registered variant: classic loop vs the
#      /.json            trainer eager, fast, fast with plain LeakyReLUs, CUDA graphs
#   3. comparison.md      the whole comparison at a short budget (COMPARE_EPOCHS epochs each,
#                         classifier metrics), stage by stage, with its wall time
#   4. tune.log           a TUNE_TRIALS-trial wgan_gp study, with trials/hour
#   summary.md            one line per part (wall time, exit status, the figure it gives)
# Nothing is written into the checkout: the comparison and the study run in $CHECK_WORK.
#
# Knobs (defaults for the GPU machine; the CPU dry run in tests/test_gpu_check.py sets tiny
# ones): DEVICE (cuda), CHECK_VARIANTS (all), COMPARE_VARIANTS (CHECK_VARIANTS), CHECK_PROFILE (a YAML merged last over
# params.yaml + profiles/gpu.yaml), CHECK_TESTS ("tests -k cuda"), BENCH_STEPS (200),
# BENCH_REPEATS (1), COMPARE_EPOCHS (5), TUNE_TRIALS (10), TUNE_EPOCHS (3), and the limits in
# seconds TEST_LIMIT (60), BENCH_LIMIT (140), COMPARE_LIMIT (180), TUNE_LIMIT (75).
set -uo pipefail  # no -e: every part runs whatever the one before did
repo=$PWD
export PIPELINE_MNIST_MIRROR=${PIPELINE_MNIST_MIRROR:-$repo/.device/mnist}
export PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
work=${CHECK_WORK:-$(mktemp -d)}; mkdir -p "$work"
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # the comparison's MLflow store stays in $work

# Our Python needs, from the carried wheels (a warm machine keeps /tmp/site between calls).
[ ! -d /tmp/site ] || export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
if ! python3 -c "import mlflow, optuna, torch_fidelity, typer" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
py=$(command -v python3)

summary=$OUT/summary.md
{ echo "# GPU check on $device ($(date -u +%FT%TZ))"; echo
  [ "$device" = cpu ] || nvidia-smi -L
  "$py" -c "import torch; print('torch', torch.__version__)"; echo; } >"$summary" 2>&1
# part NAME LIMIT LOG CMD...: run CMD under LIMIT seconds, its output to LOG; its wall time
# and exit status to summary.md
part() {
  local name=$1 limit=$2 log=$3 t0 rc=0; shift 3; t0=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1 || rc=$?
  local wall=$(( $(date +%s) - t0 ))
  echo "- $name: wall $wall s, exit $rc$([ $rc = 124 ] && echo " (stopped at its $limit s limit)")" \
    | tee -a "$summary"
  return $rc
}

variants=${CHECK_VARIANTS:-$("$py" -c "from pipeline.variants import registry; print(','.join(registry.names()))")}

# 1. CUDA tests first, no -x.
read -r -a tests <<<"${CHECK_TESTS:-tests -k cuda}"
part tests "${TEST_LIMIT:-60}" "$OUT/tests.log" \
  "$py" -m pytest -q -rs -p no:cacheprovider "${tests[@]}"
tail -1 "$OUT/tests.log" | sed 's/^/  /' >>"$summary"

# 2. The benchmark: every variant, every trainer mode; its report is rewritten per variant.
part bench "${BENCH_LIMIT:-140}" "$OUT/bench.log" "$py" benchmarks/train_speed.py --device "$device" \
  --variants "$variants" --steps "${BENCH_STEPS:-200}" --warmup 20 \
  --repeats "${BENCH_REPEATS:-1}" --modes eager,fast,plain_slopes,graphs --eval-images 0 \
  --out "$OUT"

# 3. The whole comparison at a short budget, stage by stage as dvc.yaml orders them.
cp "$repo/params.yaml" "$work/params.yaml"
"$py" - "$work/budget.yaml" "${COMPARE_VARIANTS:-$variants}" "${COMPARE_EPOCHS:-5}" <<'EOF'
import sys, yaml
path, variants, epochs = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
doc = {"variants": {v: {"epochs": epochs} for v in variants}, "tracking": {"log_model": False},
       "train": {"seeds": [0]}}  # one seed: the commands below run each stage once
open(path, "w").write(yaml.safe_dump(doc))
EOF
for profile in "$repo/profiles/gpu.yaml" "$work/budget.yaml" ${CHECK_PROFILE:+"$CHECK_PROFILE"}; do
  "$py" -m pipeline.cli config merge "$work/params.yaml" "$profile" >/dev/null || exit 2
done
export CHECK_PARAMS=$work/params.yaml CHECK_PY=$py CHECK_LIST=${COMPARE_VARIANTS:-$variants}
# shellcheck disable=SC2016  # expanded by the inner bash (timeout runs a program, not a function)
part "comparison, ${COMPARE_EPOCHS:-5} epochs each" "${COMPARE_LIMIT:-180}" "$OUT/comparison.log" bash -c '
  p() { "$CHECK_PY" -m pipeline "$@" --params "$CHECK_PARAMS"; }
  p prepare && p classifier || exit 1
  rc=0
  for v in ${CHECK_LIST//,/ }; do  # a variant that fails is reported; the others still run
    { p train "$v" && p sample "$v" && p evaluate "$v"; } || { echo "comparison: $v failed"; rc=1; }
  done
  p floor && p report || exit 1
  exit $rc'
cp "$work"/reports/comparison.md "$OUT/" 2>/dev/null
cp "$work"/metrics/floor.json "$OUT/" 2>/dev/null
for f in "$work"/metrics/*/seed0.json; do  # metrics/V/seed0.json -> $OUT/V.json
  [ -f "$f" ] && cp "$f" "$OUT/$(basename "$(dirname "$f")").json"
done
grep -h "failed" "$OUT/comparison.log" | sed 's/^/  /' >>"$summary"

# 4. A wgan_gp study; trials/hour from the trials it finished in its wall time.
t0=$(date +%s)
part tune "${TUNE_LIMIT:-75}" "$OUT/tune.log" "$py" -m pipeline tune wgan_gp --params "$CHECK_PARAMS" \
  --trials "${TUNE_TRIALS:-10}" --epochs "${TUNE_EPOCHS:-3}" --device "$device"
"$py" - "$work/reports/tuning/wgan_gp/best.json" $(( $(date +%s) - t0 )) <<'EOF' | tee -a "$summary"
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("  tune: no trial finished (see tune.log)")
n, wall = sum(doc["trials"].values()), max(int(sys.argv[2]), 1)
print(f"  tune: {n} trial(s) in {wall} s = {n * 3600 / wall:.0f} trials/hour; best {doc['best_value']}")
EOF
cp "$work/reports/tuning/wgan_gp/best.json" "$OUT/tuning_best.json" 2>/dev/null
echo "gpu_check: done; figures in $OUT (summary.md)"
