"""A stand-in for ``python -m pipeline`` in the GPU check's CPU dry run (tests/test_gpu_check.py).

The check's comparison probe, grid and study are GPU jobs (minutes of training); on the CPU
the dry run tests their glue (stage timing into stages.tsv, outputs copied out, the study
estimate, failures reported, limits) against this shim, which writes what each command
writes, at the paths pipeline.infra.layout gives for the params' out_dir settings, without
importing torch (a tenth of a second a command; the real command's imports take seconds on a
loaded 2-core machine). The commands themselves are tested by their own suites (test_cli,
test_protocol, test_tune, test_dvc); test_gpu_check checks the paths against pipeline.infra.layout.

``GPU_SHIM_FAIL=train:wgan_gp`` makes that command fail (exit 1); ``GPU_SHIM_SLEEP=train:2``
makes it take that many seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _write(path: Path, doc: dict | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


class Paths:
    """pipeline.infra.layout's paths for the first seed, from the params file's out_dir settings."""

    def __init__(self, params_path: Path) -> None:
        doc = yaml.safe_load(params_path.read_text())
        root = params_path.parent

        def out(section: str, default: str) -> Path:
            return root / (doc.get(section, {}).get("out_dir") or default)

        self.doc, self.seed = doc, doc["train"]["seeds"][0]
        self.models, self.metrics = out("train", "models"), out("evaluate", "metrics")
        self.reports, self.tuning = out("report", "reports"), out("tune", "reports/tuning")
        self.classifier = out("classifier", "models/classifier")

    def run(self, v: str) -> Path:
        return self.models / v / f"seed{self.seed}"

    def curves(self, v: str) -> Path:
        return self.metrics / "curves" / v / f"seed{self.seed}.csv"

    def sampling(self, v: str) -> Path:
        return self.metrics / "sampling" / v / f"seed{self.seed}.json"

    def scores(self, v: str) -> Path:
        return self.metrics / v / f"seed{self.seed}.json"


def main(argv: list[str]) -> int:
    cmd = argv[0]
    variant = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else "-"
    if f"{cmd}:{variant}" in os.environ.get("GPU_SHIM_FAIL", "").split(","):
        print(f"shim: {cmd} {variant} failed", file=sys.stderr)
        return 1
    for item in os.environ.get("GPU_SHIM_SLEEP", "").split(","):
        if item.startswith(f"{cmd}:"):
            time.sleep(float(item.split(":")[1]))
    if cmd == "grid" and "--help" in argv:  # as main has it: no grid (GPU_SHIM_GRID=1: one)
        return 0 if os.environ.get("GPU_SHIM_GRID") else 2
    at = Paths(Path(_opt(argv, "--params") or "params.yaml"))
    seed = int(_opt(argv, "--seed") or at.seed)
    if cmd == "classifier":
        _write(at.classifier / "metrics.json", {"test_accuracy": 0.99, "device": "cpu"})
    elif cmd == "train":
        epochs = (at.doc["variants"].get(variant) or {}).get("epochs") or 1
        _write(at.run(variant) / "summary.json", {
            "variant": variant, "epochs": epochs, "steps": 937 * epochs,
            "train_time_s": 0.5 * epochs, "steps_per_s": 1874.0})  # fmt: skip
        _write(at.curves(variant), "epoch,step,steps_per_s\n1,937,1874\n")
    elif cmd == "sample":
        _write(at.sampling(variant), {"n": at.doc["sample"]["n"], "seconds": 0.1})
    elif cmd == "evaluate":
        _write(at.scores(variant), {"variant": variant, "seed": seed, "classifier": {"fid": 1.0}})
    elif cmd == "floor":
        _write(at.metrics / "floor.json", {"classifier": {"fid": 0.1}})
    elif cmd == "report":
        rows = "".join(f"| {p.parent.name} |\n" for p in at.metrics.glob("*/seed*.json"))
        _write(at.reports / "comparison.md", f"| variant |\n|---|\n{rows}")
    elif cmd == "tune":
        trials = int(_opt(argv, "--trials") or 1)
        _write(at.tuning / variant / "best.json",
               {"trials": {"COMPLETE": trials}, "best_value": 1.0})  # fmt: skip
    elif cmd == "grid":
        print("grid: 0/0 chains done and committed in 0.0 s")
    elif cmd != "prepare":
        print(f"shim: unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
