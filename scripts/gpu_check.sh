#!/usr/bin/env bash
# The GPU machine's one command (issues 17, 27): run THERE from the repo root, carrying the .whl
# and .device folders made HERE by scripts/gpu_bundle.sh:   bash scripts/gpu_check.sh
# (run's timeout_s 600: the check ends itself within CHECK_BUDGET = 480 s, setup included).
#
# Parts, in order of what the first window must decide; each has a limit, clipped to what is
# left of the budget (a part with < 10 s left is not started and is listed as not reached).
# Sizing: CPU dry run (tests/test_gpu_check.py, this 2-core VM under load, 2026-12-06) scaled
# by the issue's H100 rates (classic loop 41-83 steps/s for the MLP GANs, trainer with data on
# the GPU 105-298, Inception ~1,600 images/s) and ~3-4 s of imports per process there:
#
#   part          CPU dry run            H100 estimate                             limit
#   setup         0.1 s (wheels there)   ~20 s: 100 wheels, --no-deps --no-compile   60
#   import probe  12.7 s, 118 modules    ~8 s                                        30
#   bench         32.6 s: parent + 1     per model ~10 s: ~4 s start-up, classic    150
#                 model (2 processes)    110 steps ~2 s, graphs and fast 2 x 100
#                                        steps ~2 s each => ~14 models, the probe's
#                                        5 first; the rest and the slope passes are
#                                        listed as not reached
#   tests         26.2 s collecting the  64 CUDA tests: 20 graph-vs-eager pairs,      75
#                 64 (16 s collection)   3 deterministic resumptions, 40 optimiser
#                                        checks => ~45-60 s
#   probe         shim (real on the CPU  one epoch (937 steps) of gan, ddpm, dcgan,  150
#                 before: 92 s for gan   wgan_gp, vae: ~20 s a GAN (train ~10 s,
#                 at 256 images)         sample, classifier evaluate), ddpm ~45 s;
#                                        prepare + 1-epoch classifier ~15 s, floor +
#                                        report ~10 s => ~140 s
#   eval          7.6 s (200 images,     classifier ~1 s/10k; Inception fp32 + TF32   30
#                 Inception 2)           10k each at ~1,600/s ~12 s; imports ~5 s
#   -------------------------------------------------------------------------------------
#   estimates ~410 s of the 480 s budget (limits sum to 495: the budget clips the last)
#   grid          OPTIONAL: 1, 2, 4 chains where `pipeline grid` exists (GRID_LIMIT 60 each)
#   tune          a TUNE_TRIALS-trial wgan_gp study (TUNE_LIMIT 45), trials/hour
#   (grid and tune run only within what is left: usually listed as not reached)
#
# What comes back ($OUT, at most 8 files): summary.md (one line per part and stage group, the
# "≥ 25×" verdicts, the study's extrapolated wall time, what was not reached), stages.tsv
# (part, stage, variant, seconds, exit of every part and probe stage), train_speed_<dev>.json/.md,
# eval_speed_<dev>.json, probe.tgz (curves, run summaries, metrics, comparison.md, estimate.json
# of the probe) and logs.tgz (every part's log). Nothing is written into the checkout.
#
# Knobs (defaults for the GPU machine; tests/test_gpu_check.py's CPU dry run sets tiny ones):
# DEVICE (cuda), CHECK_BUDGET (480), CHECK_VARIANTS (all, bench), PROBE_VARIANTS
# (gan,ddpm,dcgan,wgan_gp,vae), PROBE_EPOCHS (1), CHECK_PROFILE (YAML merged last over the
# probe's params), CHECK_TESTS ("tests -k cuda"), TESTS_COLLECT_ONLY (0), BENCH_STEPS (100),
# BENCH_EPOCHS (2), BENCH_CLASSIC_STEPS (100), BENCH_SLOPES (gan,wgan_gp,dcgan), EVAL_IMAGES
# (10000), EVAL_INCEPTION_IMAGES (EVAL_IMAGES), GRID_CHAINS ("1 2 4"), TUNE_TRIALS (3),
# CHECK_PIPELINE (the pipeline command: "python3 -m pipeline"; the dry run's shim), the limits
# SETUP_LIMIT, BENCH_LIMIT, TEST_LIMIT, PROBE_LIMIT, EVAL_LIMIT, GRID_LIMIT, TUNE_LIMIT, and
# CHECK_WORK (scratch folder; a fresh temp folder by default).
set -euo pipefail
t_start=$(date +%s)
repo=$PWD
# ATen reads CUBLAS_WORKSPACE_CONFIG once per process, at its first cuBLAS call: every process
# below starts with it (the deterministic CUDA tests need it; pipeline.infra.devices.CUBLAS_WORKSPACE).
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export PIPELINE_MNIST_MIRROR=${PIPELINE_MNIST_MIRROR:-$repo/.device/mnist}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
device=${DEVICE:-cuda}
budget=${CHECK_BUDGET:-480}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
work=${CHECK_WORK:-$(mktemp -d)}
mkdir -p "$work/logs" "$work/probe_out"
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI # the probe's MLflow store stays in $work
summary=$OUT/summary.md
stages=$OUT/stages.tsv
printf 'part\tstage\tvariant\tseconds\texit\n' >"$stages"
not_reached=()

pack() { tar -czf "$OUT/logs.tgz" -C "$work" logs 2>/dev/null || true; }
trap pack EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
left() { echo $((budget - ($(date +%s) - t_start))); }
# limit NAME LIMIT: LIMIT clipped to what is left of the budget; empty if under 10 s are left.
limit() {
  local l
  l=$(left)
  [ "$2" -le "$l" ] || set -- "$1" "$l"
  if [ "$2" -ge 10 ]; then echo "$2"; fi
}
# part NAME LIMIT LOG CMD...: CMD under LIMIT s (already clipped), output to LOG; wall time and
# exit status to summary.md and stages.tsv. Sets rc. Never fails the script.
part() {
  local name=$1 lim=$2 log=$3 t0 wall
  shift 3
  t0=$(now)
  rc=0
  timeout -k 5 "$lim" "$@" >"$log" 2>&1 || rc=$?
  wall=$(since "$t0")
  echo "- $name: wall $wall s, exit $rc$([ $rc != 124 ] || echo " (stopped at its $lim s limit)")" \
    | tee -a "$summary"
  printf '%s\tall\t-\t%s\t%s\n' "$name" "$wall" "$rc" >>"$stages"
  pack
}
skip() { echo "- $1: not reached ($(left) s of the $budget s budget left)" | tee -a "$summary"; not_reached+=("$1"); }

{
  echo "# GPU check on $device ($(date -u +%FT%TZ))"
  echo
  [ "$device" = cpu ] || nvidia-smi -L || true
} >"$summary" 2>&1

# ---- setup: our Python needs from the carried wheels (a warm machine keeps /tmp/site) -------
t0=$(now)
[ ! -d /tmp/site ] || export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
if ! python3 -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))" mlflow optuna torch_fidelity prdc dvc; then
  timeout "${SETUP_LIMIT:-60}" python3 -m pip install -q --no-index --no-deps --no-compile \
    --target /tmp/site .whl/*.whl >"$work/logs/install.log" 2>&1 || echo "- setup: wheel install failed (logs.tgz: install.log)" >>"$summary"
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
py=$(command -v python3)
echo "- setup (wheels): wall $(since "$t0") s" | tee -a "$summary"
"$py" -c "import torch; print('- torch', torch.__version__, 'TF32 defaults: cudnn', torch.backends.cudnn.allow_tf32, 'matmul', torch.backends.cuda.matmul.allow_tf32)" >>"$summary" 2>&1 || true
if lim=$(limit "import probe" 30) && [ -n "$lim" ]; then
  part "import probe" "$lim" "$work/logs/imports.log" "$py" scripts/device_deps.py probe
  sed 's/^/  /' "$work/logs/imports.log" | tail -20 >>"$summary"
else skip "import probe"; fi
read -r -a pipe <<<"${CHECK_PIPELINE:-$py -m pipeline}"
variants=${CHECK_VARIANTS:-$("$py" -c "from pipeline.core.variants.base import registry; print(','.join(registry.names()))")}

# ---- bench: each model's verdict (classic, graphs, fast) in its own process --------------------
if lim=$(limit bench "${BENCH_LIMIT:-150}") && [ -n "$lim" ]; then
  part bench "$lim" "$work/logs/bench.log" "$py" benchmarks/train_speed.py --device "$device" \
    --variants "$variants" --slope-variants "${BENCH_SLOPES:-gan,wgan_gp,dcgan}" \
    --steps "${BENCH_STEPS:-100}" --epochs "${BENCH_EPOCHS:-2}" \
    --classic-steps "${BENCH_CLASSIC_STEPS:-100}" --warmup 10 --repeats 1 \
    --modes "classic,graphs,fast,eager,plain_slopes" --model-limit 40 --limit $((lim - 8)) \
    --out "$OUT"
  # the "≥ 25×" lines, errors and models not reached, from the benchmark's report
  sed -n '/^## The trainer at/,/^Numerics/p' "$OUT/train_speed_$device.md" 2>/dev/null \
    | grep '^ *- ' | sed 's/^/  /' >>"$summary" || true
  mapfile -t missed < <("$py" -c 'import json, sys
for x in json.load(open(sys.argv[1])).get("not_reached", []): print("bench " + x)' \
    "$OUT/train_speed_$device.json" 2>/dev/null || true)
  not_reached+=("${missed[@]}")
else skip bench; fi

# ---- tests: the CUDA selection, no -x (on the CPU: the same selection, collected) -------------
read -r -a tests <<<"${CHECK_TESTS:-tests -k cuda}"
collect=()
[ "${TESTS_COLLECT_ONLY:-0}" = 0 ] || collect=(--collect-only)
if lim=$(limit tests "${TEST_LIMIT:-75}") && [ -n "$lim" ]; then
  part tests "$lim" "$work/logs/tests.log" "$py" -m pytest -q -rs -p no:cacheprovider \
    "${collect[@]}" "${tests[@]}"
  echo "  selection \`${tests[*]}\`: $(tail -1 "$work/logs/tests.log")" >>"$summary"
  grep -E '^(FAILED|ERROR) ' "$work/logs/tests.log" | head -20 | sed 's/^/  /' >>"$summary" || true
else skip tests; fi

# ---- probe: one epoch of each probe model, every stage timed into stages.tsv --------------------
probe=$work/probe
mkdir -p "$probe"
probe_list=${PROBE_VARIANTS:-gan,ddpm,dcgan,wgan_gp,vae}
# The probe's params (gpu.yaml, then its budget, then CHECK_PROFILE) and the default study's as
# a GPU run would have it (gpu.yaml, Inception included: its cost comes from the eval part),
# merged and validated in one process.
prep_params() {
  "$py" - "$repo" "$work" "$probe_list" "${PROBE_EPOCHS:-1}" "${CHECK_PROFILE:-}" <<'EOF'
import sys
from pathlib import Path
import yaml
from pipeline.infra.params import load_params, merge_overrides, read_yaml
repo, work, variants, epochs, extra = sys.argv[1:]
work = Path(work)
budget = {"variants": {v: {"epochs": int(epochs)} for v in variants.split(",")},
          "tracking": {"log_model": False}, "train": {"seeds": [0]},  # each stage once
          "classifier": {"epochs": 1}}
(work / "probe_budget.yaml").write_text(yaml.safe_dump(budget))
base, gpu = read_yaml(Path(repo, "params.yaml")), read_yaml(Path(repo, "profiles/gpu.yaml"))
probe = merge_overrides(merge_overrides(base, gpu), budget)
if extra:
    probe = merge_overrides(probe, read_yaml(Path(extra)))
study = merge_overrides(merge_overrides(base, gpu),
                        {"evaluate": {"extractors": ["classifier", "inception"]}})
for path, doc in ((work / "probe" / "params.yaml", probe), (work / "study.yaml", study)):
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_params(path)
EOF
}
[ "$(left)" -lt 10 ] || prep_params || echo "- probe: its params failed to merge or validate (see above)" | tee -a "$summary"
# stage STAGE VARIANT ARGS...: one pipeline command within the probe's time, into stages.tsv.
stage() {
  local st=$1 v=$2 t0 wall src=0 l
  shift 2
  l=$((probe_end - $(date +%s)))
  if [ "$l" -lt 3 ]; then
    probe_missed+=("$st $v")
    return 1
  fi
  t0=$(now)
  (cd "$probe" && timeout -k 5 "$l" "${pipe[@]}" "$st" "$@" --params "$probe/params.yaml") \
    >>"$work/logs/probe.log" 2>&1 || src=$?
  wall=$(since "$t0")
  printf 'probe\t%s\t%s\t%s\t%s\n' "$st" "$v" "$wall" "$src" >>"$stages"
  [ "$src" = 0 ] || probe_failed+=("$st $v (exit $src)")
  return "$src"
}
probe_missed=()
probe_failed=()
if lim=$(limit probe "${PROBE_LIMIT:-150}") && [ -n "$lim" ]; then
  t0=$(now)
  probe_end=$(($(date +%s) + lim))
  if stage prepare - && stage classifier -; then
    for v in ${probe_list//,/ }; do # a model that fails is reported; the others still run
      stage train "$v" "$v" && stage sample "$v" "$v" && stage evaluate "$v" "$v" || true
    done
    stage floor - || true
    stage report - || true
  fi
  wall=$(since "$t0")
  echo "- probe (one epoch of ${probe_list//,/, }): wall $wall s" | tee -a "$summary"
  printf 'probe\tall\t-\t%s\t%s\n' "$wall" "${#probe_failed[@]}" >>"$stages"
  for x in "${probe_failed[@]}"; do echo "  - failed: $x" >>"$summary"; done
  for x in "${probe_missed[@]}"; do
    echo "  - not reached: $x" >>"$summary"
    not_reached+=("probe $x")
  done
  awk -F'\t' '$1 == "probe" && $2 != "all" { printf "  - %s %s: %s s%s\n", $2, $3, $4, ($5 == 0 ? "" : " (exit " $5 ")") }' \
    "$stages" >>"$summary"
else skip probe; fi
# The probe's outputs, copied out in one archive (at most 8 files come back).
(
  cd "$probe"
  for v in ${probe_list//,/ }; do
    cp "metrics/curves/$v/seed0.csv" "$work/probe_out/curves_$v.csv" 2>/dev/null || true
    cp "metrics/quality/$v/seed0.csv" "$work/probe_out/quality_$v.csv" 2>/dev/null || true
    cp "metrics/sampling/$v/seed0.json" "$work/probe_out/sampling_$v.json" 2>/dev/null || true
    cp "metrics/$v/seed0.json" "$work/probe_out/metrics_$v.json" 2>/dev/null || true
    cp "models/$v/seed0/summary.json" "$work/probe_out/summary_$v.json" 2>/dev/null || true
  done
  cp models/classifier/metrics.json "$work/probe_out/classifier.json" 2>/dev/null || true
  cp metrics/floor.json reports/comparison.md "$work/probe_out/" 2>/dev/null || true
)
cp "$work/probe/params.yaml" "$work/probe_out/probe_params.yaml" 2>/dev/null || true

# ---- eval: evaluation throughput per 10k images -------------------------------------------------
if lim=$(limit eval "${EVAL_LIMIT:-30}") && [ -n "$lim" ]; then
  n=${EVAL_IMAGES:-10000}
  part eval "$lim" "$work/logs/eval.log" "$py" benchmarks/eval_speed.py --device "$device" \
    --images "$n" --inception-images "${EVAL_INCEPTION_IMAGES:-$n}" --out "$OUT"
  grep -E '^[a-z_0-9]+: ' "$work/logs/eval.log" | sed 's/^/  - /' >>"$summary" || true
else skip eval; fi

# The default study's wall time, from the probe's rates and overheads (and the bench's rates).
[ ! -f "$work/study.yaml" ] || "$py" benchmarks/study_estimate.py "$stages" "$probe/params.yaml" --study "$work/study.yaml" \
  --bench "$OUT/train_speed_$device.json" --eval "$OUT/eval_speed_$device.json" \
  --out "$work/probe_out/estimate.json" >>"$summary" 2>>"$work/logs/estimate.log" \
  || echo "- default study: estimate failed (logs.tgz: estimate.log)" >>"$summary"
tar -czf "$OUT/probe.tgz" -C "$work" probe_out

# ---- OPTIONAL grid (the grid issue): 1, 2, 4 chains, where `pipeline grid` exists (branch grid) -
if "${pipe[@]}" grid --help >/dev/null 2>&1; then
  for n in ${GRID_CHAINS-1 2 4}; do
    if lim=$(limit "grid $n" "${GRID_LIMIT:-60}") && [ -n "$lim" ]; then
      printf 'grid:\n  per_device: %s\n  workers: %s\n' "$n" "$n" >"$work/grid$n.yaml"
      cat "$work/probe_budget.yaml" >>"$work/grid$n.yaml"
      part "grid, $n chains" "$lim" "$work/logs/grid$n.log" bash -c '
        set -euo pipefail
        bash "$1/scripts/copy_project.sh" "$2" "$3" && cd "$2"
        for f in "$1/profiles/gpu.yaml" ${4:+"$4"}; do "$5" -m pipeline.cli config merge params.yaml "$f" >/dev/null; done
        shift 5 && "$@" grid --params params.yaml' _ "$repo" "$work/grid$n" "$work/grid$n.yaml" \
        "${CHECK_PROFILE:-}" "$py" "${pipe[@]}"
      tail -1 "$work/logs/grid$n.log" | sed 's/^/  /' >>"$summary"
    else skip "grid, $n chains"; fi
  done
else
  echo "- grid: skipped (no \`pipeline grid\` in this checkout)" >>"$summary"
fi

# ---- tune: a short wgan_gp study, trials/hour ---------------------------------------------------
if lim=$(limit tune "${TUNE_LIMIT:-45}") && [ -n "$lim" ]; then
  t0=$(date +%s)
  part tune "$lim" "$work/logs/tune.log" bash -c 'cd "$1" && shift && "$@"' _ "$probe" \
    "${pipe[@]}" tune wgan_gp --params "$probe/params.yaml" --trials "${TUNE_TRIALS:-3}" \
    --epochs 1 --device "$device"
  "$py" - "$probe/reports/tuning/wgan_gp/best.json" $(($(date +%s) - t0)) <<'EOF' | tee -a "$summary"
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("  tune: no trial finished (logs.tgz: tune.log)")
n, wall = sum(doc["trials"].values()), max(int(sys.argv[2]), 1)
print(f"  tune: {n} trial(s) in {wall} s = {n * 3600 / wall:.0f} trials/hour; best {doc['best_value']}")
EOF
else skip tune; fi

{
  echo
  echo "## Not reached"
  echo
  if [ ${#not_reached[@]} = 0 ]; then echo "- nothing"; else printf -- '- %s\n' "${not_reached[@]}"; fi
  echo
  echo "check: $(($(date +%s) - t_start)) s of the $budget s budget"
} >>"$summary"
echo "gpu_check: done; figures in $OUT (summary.md)"
