#!/usr/bin/env bash
# `make results`: the whole chain at Lucic et al.'s 20-epoch budget in a copy of this working
# tree (default ./results-run/, or $1; see scripts/copy_project.sh), in two passes:
#   1. profiles/lucic.yaml: every model at one seed        -> reports/results/
#   2. + profiles/lucic_seeds.yaml: gan and wgan_gp at seeds 0-2 (seed 0 is pass 1's run)
#                                                          -> reports/results/seeds/
# Each snapshot holds the score table, one grid per model, machine, wall time, commit and
# command (pipeline/stages/results.py). Hours on a CPU. Interrupted (Ctrl-C, a kill, a closed
# session), the same command resumes in the copy it made, training from the checkpoints: the
# copy keeps the code it was made from (its commit is what the snapshot names), so you can
# go on working here meanwhile. FRESH=1 starts over from this working tree.
# RESULTS_PROFILE=profiles/smoke.yaml tries pass 1 out in minutes (the snapshot says so).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/results-run}")
profile=${RESULTS_PROFILE:-profiles/lucic.yaml}
seeds_profile=profiles/lucic_seeds.yaml
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # the run's MLflow store stays in the copy
if [ "${FRESH:-0}" != 1 ] && [ -f "$dest/.results-source" ]; then
  read -r commit < "$dest/.results-source"
  echo "results: resuming in $dest (the copy of $commit; FRESH=1 starts over)"
else
  commit=$(git -C "$repo" rev-parse --short HEAD)
  [ -z "$(cd "$repo" && git status --porcelain)" ] || commit="$commit (with uncommitted changes)"
  bash "$repo/scripts/copy_project.sh" "$dest" "$repo/$profile"
  cp "$repo/$seeds_profile" "$dest/.results-seeds.yaml"
  printf '%s\n%s\n' "$commit" "$profile" > "$dest/.results-source"
  rm -f "$dest"/.results-wall* "$dest/.results-pass2"
fi
profile=$(sed -n 2p "$dest/.results-source")
cd "$dest"
# The stages run the copy's code, not the one an editable install of the venv points at.
export PYTHONPATH="$dest${PYTHONPATH:+:$PYTHONPATH}"

# run_pass N OUT: pipeline grid + dvc repro, timed (every attempt counts, an interrupted one
# too, not after a kill -9), then the snapshot in OUT.
run_pass() {
  local n=$1 out=$2 start wall attempts
  start=$(date +%s)
  trap 'echo "$(( $(date +%s) - start ))" >> "$dest/.results-wall$n"' EXIT
  pipeline grid   # the (variant, seed) chains at once, recorded in dvc.lock
  dvc repro       # what is left: floor, noise, toy, report
  trap - EXIT
  echo "$(( $(date +%s) - start ))" >> ".results-wall$n"
  wall=$(awk '{s += $1} END {print s}' ".results-wall$n")
  attempts=$(wc -l < ".results-wall$n")
  echo "results: pass $n (pipeline grid + dvc repro) took ${wall} s in all (${attempts} attempt(s))"
  python -m pipeline.cli results --params params.yaml --out "$out" \
    --command "make results" --commit "$commit" --profile "$3" \
    --wall-time "$wall" --attempts "$attempts"
}

if [ ! -f .results-pass2 ]; then
  run_pass 1 "$repo/reports/results" "$profile"
fi
[ "$profile" = profiles/lucic.yaml ] || exit 0   # a trial profile runs pass 1 only
if [ ! -f .results-pass2 ]; then
  cp params.yaml .results-params1.yaml   # pass 1's params: its snapshot can be re-rendered
  python -m pipeline.cli config merge params.yaml .results-seeds.yaml >/dev/null
  touch .results-pass2
fi
run_pass 2 "$repo/reports/results/seeds" "$profile + $seeds_profile"
