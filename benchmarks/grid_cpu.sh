#!/usr/bin/env bash
# The (variant, seed) chains of a small project by serial `dvc repro` and by `pipeline grid`
# (reports/benchmarks/grid_cpu.md). Two identical copies of this working tree with the smoke
# profile's budgets, VARIANTS x SEEDS chains; prepare and classifier are run first in each
# (not timed), then the chain stages are timed: serially through DVC in one copy, on the grid's
# embedded cluster (one worker per core) in the other. Usage:
#   bash benchmarks/grid_cpu.sh [DEST] [VARIANTS] [SEEDS]    (default /tmp/grid-bench gan,wgan 0,1)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-/tmp/grid-bench}")
variants=${2:-gan,wgan}
seeds=${3:-0,1}
export OMP_NUM_THREADS=1 DVC_NO_ANALYTICS=1
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI
rm -rf "$dest"
for mode in serial grid; do
  bash "$repo/scripts/copy_project.sh" "$dest/$mode" "$repo/profiles/smoke.yaml" >/dev/null
  python - "$dest/$mode/params.yaml" "$variants" "$seeds" <<'PY'
import sys, yaml
path, variants, seeds = sys.argv[1], sys.argv[2].split(","), [int(s) for s in sys.argv[3].split(",")]
p = yaml.safe_load(open(path))
p["variants"] = {k: v for k, v in p["variants"].items() if k in variants}
p["train"]["seeds"] = seeds
p["classifier"]["subset"] = 5000  # not timed; its quality is not under test
open(path, "w").write(yaml.safe_dump(p, sort_keys=False))
PY
  (cd "$dest/$mode" && PYTHONPATH="$dest/$mode" dvc repro -q classifier)
done
targets=$(python -c "print(' '.join(f'evaluate@{v}-{s}' for v in '$variants'.split(',') for s in '$seeds'.split(',')))")
cd "$dest/serial"
start=$(date +%s.%N)
PYTHONPATH="$PWD" dvc repro $targets >/dev/null   # train and sample come with them (upstream)
serial=$(python -c "print(f'{$(date +%s.%N) - $start:.1f}')")
cd "$dest/grid"
start=$(date +%s.%N)
PYTHONPATH="$PWD" pipeline grid >"$dest/grid.log" 2>&1
grid=$(python -c "print(f'{$(date +%s.%N) - $start:.1f}')")
echo "chains: $variants x $seeds; serial dvc repro: $serial s; pipeline grid: $grid s; ratio $(python -c "print(f'{$serial / $grid:.2f}')")"
