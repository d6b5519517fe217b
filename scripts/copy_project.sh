#!/usr/bin/env bash
# scripts/copy_project.sh DEST PROFILE: a copy of this working tree in DEST with PROFILE merged
# into its params.yaml, as a git repository of its own (one local commit of the copied tree),
# so `dvc repro` there leaves the real outputs, MLflow store and params untouched, and the
# comparison commands a user tries next (`dvc params diff`, `dvc metrics diff`, `dvc exp show`)
# work. Used by scripts/smoke.sh and scripts/results.sh. DEST is replaced only if it is empty
# or an earlier copy (it holds a dvc.yaml).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DEST PROFILE.yaml"; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "$1")
profile=$(realpath -m "$2")
[ -f "$profile" ] || { echo "copy: profile $2 not found"; exit 2; }
case "$repo/" in "$dest"/*) echo "copy: refusing to use $dest (it holds the repo)"; exit 2 ;; esac
[ ! -e "$dest" ] || [ -f "$dest/dvc.yaml" ] || [ -z "$(ls -A "$dest")" ] \
  || { echo "copy: $dest exists and is not an earlier copy; refusing to delete it"; exit 2; }
rm -rf "$dest" && mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | xargs -0 cp --parents -t "$dest")
cd "$dest"
python -m pipeline.cli config merge params.yaml "$profile" >/dev/null
rm -rf .git .dvc/tmp .dvc/cache
[ -f .dvc/config ] || dvc init -q
dvc config core.analytics false
# A repository of its own: nothing here can reach the original's history or remotes.
export GIT_AUTHOR_NAME=pipeline GIT_AUTHOR_EMAIL=pipeline@localhost
export GIT_COMMITTER_NAME=pipeline GIT_COMMITTER_EMAIL=pipeline@localhost
git init -q
git add -A
git -c commit.gpgsign=false commit -q -m "copy of the working tree at $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown), params with $(basename "$profile")"
echo "copy: $dest (git commit $(git rev-parse --short HEAD), params with $(basename "$profile"))"
