#!/usr/bin/env bash
# Run HERE (the dev machine), from the repo root, before a session's GPU calls: puts what the
# GPU machine lacks into ignored folders that `run` can carry (<= 64 MiB in all):
#   .whl/    wheels of our Python needs for CPython 3.12 (the machine has torch 2.11, numpy,
#            scipy, scikit-learn, typer, ...): pyproject's dependencies minus the machine's
#            preinstalled list, as scripts/device_deps.py requirements prints them (prdc too)
#   .device/mnist/  the four MNIST .gz files (the machine has no internet)
# Then carry [".whl", ".device"] and run `bash scripts/gpu_check.sh` there; its first step is
# an import probe of every module the check imports (scripts/device_deps.py probe).
# Ends by adding up what would travel (the working tree's tracked and untracked-not-ignored
# files plus the two folders) and fails if it is over the carry limit (CARRY_LIMIT_MIB, 64).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
limit_mib=${CARRY_LIMIT_MIB:-64}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mapfile -t reqs < <(python3 scripts/device_deps.py requirements)
# dvc needs hydra-core -> antlr4-python3-runtime 4.9.x, published as an sdist only: build its
# (pure-Python) wheel here so the binary-only download can resolve it.
python3 -m pip wheel -q --no-deps -w "$tmp/links" antlr4-python3-runtime==4.9.3
rm -rf .whl
PIP_FIND_LINKS="$tmp/links" WHEEL_DIR=.whl bash "$shared/tools/device-wheels.sh" "${reqs[@]}"
mkdir -p .device/mnist && cp "$shared"/data/mnist/*.gz .device/mnist/
for r in "${reqs[@]}"; do  # every requirement has its wheel (a silent miss dies there)
  n=$(echo "${r%%=*}" | tr 'A-Z.-' 'a-z__')
  ls .whl | tr "A-Z.-" "a-z__" | grep -q "^${n}_[0-9]" || { echo "gpu_bundle: no wheel for $r" >&2; exit 1; }
done
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
extra=$(du -sb .whl .device | awk '{s += $1} END {print s}')
total=$((tree + extra))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "carry: working tree $(mib "$tree") + .whl/.device $(mib "$extra") = $(mib "$total") (limit $limit_mib MiB)"
[ "$total" -le $((limit_mib * 1048576)) ] || { echo "gpu_bundle: over the carry limit" >&2; exit 1; }
