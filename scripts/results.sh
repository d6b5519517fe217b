#!/usr/bin/env bash
# `make results`: the whole chain with profiles/lucic.yaml (every model at 20 epochs) in a copy
# of this working tree (default ./results-run/, or $1; see scripts/copy_project.sh), then the
# snapshot in reports/results/ (score table, one grid per model, machine, wall time, commit,
# command; pipeline/results.py). Hours on a CPU. Interrupted (Ctrl-C), the same command resumes
# in the copy, training from its checkpoints, as long as the working tree is the same (commit
# and uncommitted changes); the wall time adds up the attempts. FRESH=1 starts over.
# RESULTS_PROFILE=profiles/smoke.yaml tries the script out in minutes (the snapshot says so).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/results-run}")
profile=${RESULTS_PROFILE:-profiles/lucic.yaml}
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # the run's MLflow store stays in the copy
commit=$(git -C "$repo" rev-parse --short HEAD)
# What the copy is made of: the commit, plus a digest of uncommitted and untracked files.
changes=$(cd "$repo" && { git diff HEAD; git ls-files -z --others --exclude-standard \
  | xargs -0 -r sha1sum; } | sha1sum | cut -c1-10)
[ -z "$(cd "$repo" && git status --porcelain)" ] || commit="$commit (with uncommitted changes)"
source_id="$commit $changes $profile"
if [ "${FRESH:-0}" != 1 ] && [ -f "$dest/.results-source" ] \
    && [ "$(cat "$dest/.results-source")" = "$source_id" ]; then
  echo "results: resuming in $dest ($commit, $profile)"
else
  bash "$repo/scripts/copy_project.sh" "$dest" "$repo/$profile"
  printf '%s' "$source_id" > "$dest/.results-source"
  : > "$dest/.results-wall"
fi
cd "$dest"
# The stages run the copy's code, not the one an editable install of the venv points at.
export PYTHONPATH="$dest${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
# Every attempt's time counts, an interrupted one too (not after a kill -9).
trap 'echo "$(( $(date +%s) - start ))" >> "$dest/.results-wall"' EXIT
pipeline grid   # the (variant, seed) chains at once, recorded in dvc.lock
dvc repro       # what is left: floor, noise, toy, report
trap - EXIT
echo "$(( $(date +%s) - start ))" >> .results-wall
wall=$(awk '{s += $1} END {print s}' .results-wall)
attempts=$(wc -l < .results-wall)
echo "results: pipeline grid + dvc repro took ${wall} s in all (${attempts} attempt(s))"
python -m pipeline.cli results --params params.yaml --out "$repo/reports/results" \
  --command "make results" --commit "$commit" --profile "$profile" \
  --wall-time "$wall" --attempts "$attempts"
