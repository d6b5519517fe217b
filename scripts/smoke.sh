#!/usr/bin/env bash
# `make smoke`: the whole DVC chain with profiles/smoke.yaml, in a copy of this working tree
# (default ./smoke/, or $1; see scripts/copy_project.sh), so the real outputs, MLflow store and
# params stay untouched. MNIST comes from $PIPELINE_MNIST_MIRROR when set. Everything it writes
# stays in the copy, a git repository whose second commit holds the results (dvc.lock and the
# uncached metrics, curves and report), so "change a param, dvc repro, compare" works there:
# `dvc params diff`, `dvc metrics diff`, `dvc plots diff`, `dvc exp show`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/smoke}")
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # keep the smoke run's MLflow store in the copy
bash "$repo/scripts/copy_project.sh" "$dest" "$repo/profiles/smoke.yaml"
cd "$dest"
# The stages run the copy's code, not the one an editable install of the venv points at.
export PYTHONPATH="$dest${PYTHONPATH:+:$PYTHONPATH}"

start=$(date +%s)
# Every (variant, seed) chain at once on Dask, each recorded in dvc.lock as it finishes; then
# DVC runs what is left (floor, noise, toy, report). The no-op check below covers both.
pipeline grid
grid_s=$(( $(date +%s) - start ))
dvc repro
echo "smoke: pipeline grid took ${grid_s} s, then dvc repro $(( $(date +%s) - start - grid_s )) s"

# A second repro must do nothing.
second=$(dvc repro 2>&1)
echo "$second" | grep -q "Data and pipelines are up to date" \
  || { echo "smoke: second dvc repro was not a no-op:"; echo "$second"; exit 1; }
# Every (variant, seed) has its samples and metrics; the report has the seeds' statistics.
runs=$(python -c "import yaml; p = yaml.safe_load(open('params.yaml'))
print(' '.join(f'{v}/seed{s}' for v in p['variants'] for s in p['train']['seeds']))")
for r in $runs; do
  test -s "metrics/$r.json" || { echo "smoke: metrics/$r.json missing"; exit 1; }
  test -s "samples/$r/samples.pt" || { echo "smoke: samples/$r missing"; exit 1; }
done
test -s reports/index.html && test -s reports/comparison.md && test -s mlflow.db
test -s reports/plots/seeds.png
for t in seeds-table paired-table noise-table; do
  grep -q "id=\"$t\"" reports/index.html || { echo "smoke: the report has no $t"; exit 1; }
done
# The report as a reader sees it (headless Chromium): images decode, every model has its row,
# sampling cost and figures, the toy section is there.
python scripts/check_report.py .
dvc metrics show

# The results as the baseline commit: the stages' uncached outputs (metrics, curves, report)
# are git-ignored in the project, so they are added by name.
python - <<'PY' | xargs -0 -r git add -f
import sys
from dvc.repo import Repo
with Repo(".") as r:
    paths = sorted({str(o.fs_path) for s in r.index.stages for o in s.outs if not o.use_cache})
sys.stdout.write("".join(p + "\0" for p in paths))
PY
git add -A
GIT_AUTHOR_NAME=pipeline GIT_AUTHOR_EMAIL=pipeline@localhost \
GIT_COMMITTER_NAME=pipeline GIT_COMMITTER_EMAIL=pipeline@localhost \
  git -c commit.gpgsign=false commit -q -m "smoke: dvc repro results"
echo "smoke: OK (outputs in $dest, a git repository: edit params.yaml, dvc repro, dvc metrics diff)"
