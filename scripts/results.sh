#!/usr/bin/env bash
# `make results`: the whole chain at Lucic et al.'s 20-epoch budget in a copy of this working
# tree (default ./results-run/, or $1; see scripts/copy_project.sh), in two passes:
#   1. profiles/lucic.yaml: every model at one seed        -> reports/results/
#   2. + profiles/lucic_seeds.yaml: gan and wgan_gp at seeds 0-2 (seed 0 is pass 1's run)
#                                                          -> reports/results/seeds/
# Each snapshot holds the score table, one grid per model, machine, wall time, commit and
# command (pipeline/stages/results.py); the models a profile leaves out (null) get a row with their
# step rate measured here (benchmarks/step_rate.py). Hours on a CPU. Interrupted (Ctrl-C, a
# kill, a closed session), the same command resumes in the copy it made, training from the
# checkpoints: the copy keeps the code it was made from (its commit is what the snapshot
# names), so you can go on working here meanwhile. Run again after it finished, it only
# renders the snapshots again. FRESH=1 starts over from this working tree.
# RESULTS_PROFILE=profiles/smoke.yaml tries pass 1 out in minutes (the snapshot says so).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/results-run}")
seeds_profile=profiles/lucic_seeds.yaml
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # the run's MLflow store stays in the copy
if [ "${FRESH:-0}" != 1 ] && [ -f "$dest/.results-source" ]; then
  read -r commit < "$dest/.results-source"
  echo "results: resuming in $dest (the copy of $commit; FRESH=1 starts over)"
else
  profile=${RESULTS_PROFILE:-profiles/lucic.yaml}
  commit=$(git -C "$repo" rev-parse --short HEAD)
  [ -z "$(cd "$repo" && git status --porcelain)" ] || commit="$commit (with uncommitted changes)"
  bash "$repo/scripts/copy_project.sh" "$dest" "$repo/$profile"
  cp "$repo/params.yaml" "$dest/.results-base.yaml"   # the models the profile leaves out
  cp "$repo/$seeds_profile" "$dest/.results-seeds.yaml"
  rm -f "$dest"/.results-wall* "$dest"/.results-done* "$dest"/.results-start* \
    "$dest"/.results-beat* "$dest/.results-pass2" \
    "$dest/.results-left-out.json" "$dest/.results-params1.yaml"
  printf '%s\n%s\n' "$commit" "$profile" > "$dest/.results-source"
fi
profile=$(sed -n 2p "$dest/.results-source")
cd "$dest"
# The stages run the copy's code, not the one an editable install of the venv points at; the
# snapshot is rendered, and a left-out model timed, by this working tree's code (`here`), so a
# run resumed after the code moved on still renders.
outer=${PYTHONPATH:-}
export PYTHONPATH="$dest${outer:+:$outer}"
# PYTHONSAFEPATH: `python -m` would otherwise put the current folder (the copy) first on
# sys.path, ahead of PYTHONPATH, and render with the copy's code after all.
here() { PYTHONSAFEPATH=1 PYTHONPATH="$repo${outer:+:$outer}" "$@"; }

# train_pass N: pipeline grid + dvc repro, timed, once: a finished pass is only rendered
# again. Every attempt's time counts, a killed one too: a heartbeat file, touched every 30 s,
# closes the books of an attempt that ended without its EXIT trap (kill -9, a lost machine).
train_pass() {
  local n=$1 start beat
  [ ! -f ".results-done$n" ] || return 0
  if [ -f ".results-start$n" ] && [ -f ".results-beat$n" ]; then
    echo "$(( $(stat -c %Y ".results-beat$n") - $(cat ".results-start$n") ))" >> ".results-wall$n"
  fi
  start=$(date +%s)
  echo "$start" > ".results-start$n" && touch ".results-beat$n"
  (while sleep 30 && kill -0 $$ 2>/dev/null; do touch "$dest/.results-beat$n"; done) & beat=$!
  trap 'kill $beat; echo "$(( $(date +%s) - start ))" >> "$dest/.results-wall$n";
        rm -f "$dest/.results-start$n" "$dest/.results-beat$n"' EXIT
  pipeline grid   # the (variant, seed) chains at once, recorded in dvc.lock
  dvc repro       # what is left: floor, noise, toy, report
  trap - EXIT
  kill "$beat"
  echo "$(( $(date +%s) - start ))" >> ".results-wall$n"
  rm -f ".results-start$n" ".results-beat$n"
  touch ".results-done$n"
}

# render N PARAMS OUT PROFILE [ARGS...]: the snapshot of pass N's chain in OUT.
render() {
  local n=$1 params=$2 out=$3 prof=$4 wall attempts
  shift 4
  wall=$(awk '{s += $1} END {print s}' ".results-wall$n")
  attempts=$(wc -l < ".results-wall$n")
  echo "results: pass $n (pipeline grid + dvc repro) took ${wall} s in all (${attempts} attempt(s))"
  here python -m pipeline.cli results --params "$params" --out "$out" --command "make results" \
    --commit "$commit" --profile "$prof" --wall-time "$wall" --attempts "$attempts" "$@"
}

[ -f .results-pass2 ] || train_pass 1
# The models the profile leaves out (null), timed at their published configuration.
left_out=$(python -c 'import sys, yaml
v = (yaml.safe_load(open(sys.argv[1])) or {}).get("variants") or {}
print(" ".join(k for k, x in v.items() if x is None))' "$repo/$profile" 2>/dev/null || true)
args=()
if [ -n "$left_out" ] && [ -f .results-base.yaml ]; then
  [ -f .results-left-out.json ] || here python "$repo/benchmarks/step_rate.py" $left_out \
    --params .results-base.yaml --epochs 20 --steps 3 --out .results-left-out.json
  args=(--left-out .results-left-out.json)
fi
params1=params.yaml
[ ! -f .results-params1.yaml ] || params1=.results-params1.yaml
render 1 "$params1" "$repo/reports/results" "$profile" "${args[@]}"
[ "$profile" = profiles/lucic.yaml ] || exit 0   # a trial profile runs pass 1 only
if [ ! -f .results-pass2 ]; then
  cp params.yaml .results-params1.yaml   # pass 1's params: its snapshot can be rendered again
  python -m pipeline.cli config merge params.yaml .results-seeds.yaml >/dev/null
  touch .results-pass2
fi
train_pass 2
render 2 params.yaml "$repo/reports/results/seeds" "$profile + $seeds_profile"
