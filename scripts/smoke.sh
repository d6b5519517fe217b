#!/usr/bin/env bash
# `make smoke`: the whole DVC chain with profiles/smoke.yaml, in a copy of this working tree
# (default ./smoke/, or $1), so the real outputs, MLflow store and params stay untouched.
# MNIST comes from $PIPELINE_MNIST_MIRROR when set. Everything it writes stays in the copy.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/smoke}")
case "$repo/" in "$dest"/*) echo "smoke: refusing to use $dest (it holds the repo)"; exit 2 ;; esac
[ ! -e "$dest" ] || [ -f "$dest/dvc.yaml" ] || [ -z "$(ls -A "$dest")" ] \
  || { echo "smoke: $dest exists and is not an earlier smoke copy; refusing to delete it"; exit 2; }
unset PIPELINE_TRACKING_URI MLFLOW_TRACKING_URI  # keep the smoke run's MLflow store in the copy
rm -rf "$dest" && mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | xargs -0 cp --parents -t "$dest")
cd "$dest"
python -m pipeline.config merge params.yaml profiles/smoke.yaml
rm -rf .git .dvc/tmp .dvc/cache
dvc init -q --no-scm -f
dvc config core.analytics false

start=$(date +%s)
dvc repro
echo "smoke: dvc repro took $(( $(date +%s) - start )) s"

# A second repro must do nothing.
second=$(dvc repro 2>&1)
echo "$second" | grep -q "Data and pipelines are up to date" \
  || { echo "smoke: second dvc repro was not a no-op:"; echo "$second"; exit 1; }
for v in $(python -c "import yaml; print(' '.join(yaml.safe_load(open('params.yaml'))['variants']))"); do
  test -s "metrics/$v.json" || { echo "smoke: metrics/$v.json missing"; exit 1; }
  test -s "samples/$v/samples.pt" || { echo "smoke: samples/$v missing"; exit 1; }
done
test -s reports/index.html && test -s reports/comparison.md && test -s mlflow.db
dvc metrics show
echo "smoke: OK (outputs in $dest)"
