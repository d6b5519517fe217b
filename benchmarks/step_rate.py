"""The trainer's step rate of a few models at their published configuration, for the models a
results profile leaves out (scripts/results.sh: ddpm's U-Net on a CPU), so that the snapshot
states what the run would take instead of a number from a smaller model.

Usage (from the repo root; MNIST from $PIPELINE_MNIST_MIRROR or ../shared/data/mnist):

    python benchmarks/step_rate.py ddpm --params params.yaml --epochs 20 --steps 3 --out rate.json

Times ``--steps`` steps after a warm-up epoch of as many (train_speed.pipeline_steps_per_s)
and writes ``{variant: {steps_per_s, steps, device, epochs, steps_per_epoch}}``: ``epochs``
is the budget the rate is quoted for, ``steps_per_epoch`` the full training set's batches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

TRAIN_IMAGES = 60_000  # MNIST's training set, the full-protocol budget (train.subset null)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--epochs", type=int, required=True, help="The budget quoted, in epochs.")
    ap.add_argument("--steps", type=int, default=3, help="Timed steps (after as many warm-up).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import torch
    from train_speed import pipeline_steps_per_s

    from pipeline.infra.data import prepare
    from pipeline.infra.devices import resolve_device
    from pipeline.infra.io import atomic_path
    from pipeline.infra.params import load_params

    params = load_params(args.params)
    prepare(params)  # a no-op where the chain prepared MNIST already
    device = resolve_device(params.train.device)
    rows = {}
    for name in args.variants:
        rate = pipeline_steps_per_s(name, args.params, device, args.steps, epochs=2)
        rows[name] = {
            "steps_per_s": round(rate, 4),
            "steps": args.steps,
            "device": device.type,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "epochs": args.epochs,
            "steps_per_epoch": TRAIN_IMAGES // params.train.batch_size,
        }
        print(f"{name}: {rate:.4g} steps/s on {device.type}")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
