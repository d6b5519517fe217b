#!/usr/bin/env bash
# `make results`: the whole chain with profiles/lucic.yaml (every model at 20 epochs) in a copy
# of this working tree (default ./results-run/, or $1; see scripts/copy_project.sh), then the
# snapshot in reports/results/ (score table, one grid per model, machine, wall time, commit,
# command; pipeline/results.py). Hours on a CPU. Interrupted, the same command resumes in the
# copy (training resumes from its checkpoints) as long as the commit is the same; the wall
# time adds up the attempts. FRESH=1 starts over.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/results-run}")
profile=profiles/lucic.yaml
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # the run's MLflow store stays in the copy
commit=$(git -C "$repo" rev-parse --short HEAD)
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || commit="$commit (with uncommitted changes)"
if [ "${FRESH:-0}" != 1 ] && [ -f "$dest/.results-source" ] \
    && [ "$(cat "$dest/.results-source")" = "$commit" ]; then
  echo "results: resuming in $dest (made from $commit)"
else
  bash "$repo/scripts/copy_project.sh" "$dest" "$repo/$profile"
  printf '%s' "$commit" > "$dest/.results-source"
  : > "$dest/.results-wall"
fi
cd "$dest"
start=$(date +%s)
dvc repro
echo "$(( $(date +%s) - start ))" >> .results-wall
wall=$(awk '{s += $1} END {print s}' .results-wall)
attempts=$(wc -l < .results-wall)
echo "results: dvc repro took ${wall} s in all (${attempts} attempt(s))"
python -m pipeline.results --params params.yaml --out "$repo/reports/results" \
  --command "make results" --commit "$commit" --profile "$profile" \
  --wall-time "$wall" --attempts "$attempts"
