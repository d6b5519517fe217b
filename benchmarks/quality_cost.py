"""What the quality curve costs: its scoring seconds against the training seconds.

Usage (from the repo root; MNIST from $PIPELINE_MNIST_MIRROR or ../shared/data/mnist):

    OMP_NUM_THREADS=1 python benchmarks/quality_cost.py [--variant gan] [--epochs 5] \\
        [--classifier-dir DIR] [--device cpu]

Trains VARIANT at the default settings of params.yaml (all 60k images, batch 64,
``train.score_every``, ``train.score_n``, ``evaluate.n_real``) for EPOCHS epochs in a temporary
folder, with the quality curve on, and prints the training seconds, the scoring seconds of
each scored epoch, the one-off setup (classifier and the reference features; cold and from
the cache) and their share of the training time.
Without ``--classifier-dir`` it trains the classifier first (1 epoch, a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.infra.data import prepare  # noqa: E402
from pipeline.infra.params import load_params  # noqa: E402
from pipeline.stages.classifier import train_classifier  # noqa: E402
from pipeline.training.loop import Trainer  # noqa: E402
from pipeline.training.quality import QualityCurve  # noqa: E402
from pipeline.training.setup import run_setup  # noqa: E402
from pipeline.training.spec import run_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="gan")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--classifier-dir", type=Path, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="quality-cost-") as tmp:
        work = Path(tmp)
        base = load_params(REPO / "params.yaml")
        params = base.with_section("data", dir=work / "data")
        params = params.with_section("evaluate", cache_dir=work / "cache")
        prepare(params)
        if args.classifier_dir is None:
            params = params.with_section("classifier", out_dir=work / "classifier", epochs=1)
            train_classifier(params, device=args.device)
        else:
            params = params.with_section("classifier", out_dir=args.classifier_dir.resolve())
        dev = torch.device(args.device)
        spec = run_spec(params, args.variant, epochs=args.epochs)
        setup = run_setup(params)
        trainer = Trainer(setup, spec, work / "run", dev, progress=False)
        # The one-off part (classifier, reference features), timed on its own: the first
        # time extracts the reference features, later runs read the evaluate stage's cache.
        setup_s = []
        for _ in range(2):
            start = time.perf_counter()
            QualityCurve(setup.curve, trainer.variant, spec, dev).start()
            setup_s.append(time.perf_counter() - start)
        result = trainer.run()
    scored = [(int(h["epoch"]), h["score_s"]) for h in result.history if "score_s" in h]
    score_s = sum(s for _, s in scored)
    cfg = params.train
    print(f"{args.variant}: {args.epochs} epochs on {dev}, score_every {cfg.score_every}, "
          f"score_n {cfg.score_n}, n_real {params.evaluate.n_real}")  # fmt: skip
    print(f"training: {result.train_time_s:.1f} s ({result.steps_per_s:.1f} steps/s)")
    print("scoring: " + ", ".join(f"epoch {e} {s:.2f} s" for e, s in scored))
    print(f"setup once per run: {setup_s[1]:.1f} s (the first time, extracting the "
          f"reference features: {setup_s[0]:.1f} s)")  # fmt: skip
    share = score_s / result.train_time_s
    print(f"cost: {score_s:.1f} s scoring = {share:.1%} of training; with the setup "
          f"{(score_s + setup_s[1]) / result.train_time_s:.1%} "
          f"(first time {(score_s + setup_s[0]) / result.train_time_s:.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
