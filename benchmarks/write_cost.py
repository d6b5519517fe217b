"""What a training run spends writing, per epoch and per run (issue #24 item 6): a real
``train_variant`` (MLflow into a SQLite store in a temp folder, MNIST prepared from
$PIPELINE_MNIST_MIRROR) for a few epochs on a subset, with the writers wrapped in timers:
the checkpoint save, the sample grid (render + PNG), the curves CSV, MLflow metrics and
MLflow artifact uploads during the epochs (the final uploads and the model log at the end
are once per run either way, so they are left out).

Usage: python benchmarks/write_cost.py [VARIANT ...] [--epochs E] [--subset N]
       [--epoch-s S ...] [--set train.KEY=VALUE ...]
Prints one Markdown table row per variant: the count and mean seconds of each writer, the
total write time per epoch, and the training seconds per epoch beside it; then, per variant,
the writes of a full run every epoch against the bounded plan (train.checkpoint_every_s,
train.gif_frames as set here or in params.yaml).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TIMES: dict[str, list[float]] = defaultdict(list)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name].append(time.perf_counter() - t0)

    return wrapper


@contextlib.contextmanager
def _instrumented() -> Iterator[None]:
    """Wrap each writer where the trainer and the recorder look it up; undo afterwards."""
    from mlflow import MlflowClient

    import pipeline.infra.checkpoint as ckpt
    import pipeline.infra.tracking as tracking
    import pipeline.training.loop as loop

    targets = [
        (ckpt, "save", "checkpoint"),
        (loop, "render_grid", "grid render"),
        (loop, "save_grid", "grid png"),
        (loop, "write_curves", "curves csv"),
        (tracking, "log_metrics", "mlflow metrics"),
        (MlflowClient, "log_artifact", "mlflow artifact"),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in targets]
    for obj, attr, name in targets:
        setattr(obj, attr, _timed(name, getattr(obj, attr)))
    try:
        yield
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)


def _value(text: str) -> Any:
    return yaml.safe_load(text)


def measure(variant: str, epochs: int, subset: int, sets: dict[str, Any]) -> dict[str, Any]:
    from pipeline.infra.data import prepare
    from pipeline.infra.params import load_params
    from pipeline.stages.train import train_variant

    TIMES.clear()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["train"].update(subset=subset, device="cpu", score_every=0, **sets)
        raw["variants"] = {variant: {}}
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        params = load_params(root / "params.yaml")
        prepare(params)
        with _instrumented():
            result = train_variant(params, variant, epochs=epochs, progress=False)
    per_run_end = 4  # on_end uploads progress.gif, grid.png, config.json, checkpoint.pt
    times = {k: list(v) for k, v in TIMES.items()}
    if "mlflow artifact" in times:
        times["mlflow artifact"] = times["mlflow artifact"][:-per_run_end]
    writes = sum(sum(v) for v in times.values())
    return {
        "variant": variant,
        "epochs": epochs,
        "subset": subset,
        "train_s_per_epoch": result.train_time_s / epochs,
        "write_s_per_epoch": writes / epochs,
        "writers": {k: (len(v), statistics.fmean(v) if v else 0.0) for k, v in times.items()},
    }


def full_run_estimate(r: dict[str, Any], sets: dict[str, Any], epoch_s: float | None) -> str:
    """The writes of one full-MNIST run of the variant's own epochs, from the per-write means
    measured here: the old plan (everything every epoch) against the bounded one, whose
    counts come from pipeline.training.writes with epochs as long as this run's scaled to
    60,000 images (a fake clock ticking that much per epoch), or ``epoch_s`` where given (a
    faster device's epoch, say; the write costs stay this machine's)."""
    from pipeline.core.variants.base import registry
    from pipeline.infra.config import TrainConfig
    from pipeline.training.writes import WritePlan

    epochs = registry.get(r["variant"]).epochs
    if epoch_s is None:
        epoch_s = r["train_s_per_epoch"] * 60_000 / r["subset"]
    cfg = TrainConfig(**{k: v for k, v in sets.items() if k in TrainConfig.model_fields})
    now = [0.0]
    plan = WritePlan(cfg, epochs, lambda: now[0])
    n_ckpt = n_grid = 0
    for e in range(1, epochs + 1):
        now[0] += epoch_s
        n_grid += plan.grid_due(e)
        if plan.checkpoint_due(e):
            n_ckpt += 1
            plan.saved()
    mean = {k: m for k, (_, m) in r["writers"].items()}
    ckpt_s, grid_s = (
        mean.get("checkpoint", 0.0),
        mean.get("grid render", 0.0) + mean.get("grid png", 0.0) + mean.get("mlflow artifact", 0.0),
    )
    every = mean.get("curves csv", 0.0) + mean.get("mlflow metrics", 0.0)
    old = epochs * (ckpt_s + grid_s + every)
    new = n_ckpt * ckpt_s + n_grid * grid_s + epochs * every
    return (f"| {r['variant']} | {epochs} | {epoch_s:.0f} | {old:.1f} | {n_ckpt} | {n_grid} "
            f"| {new:.1f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="*", default=["gan", "dcgan"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--subset", type=int, default=64 * 40)
    ap.add_argument(
        "--epoch-s",
        type=float,
        action="append",
        default=[],
        help="also estimate full runs at this many seconds per epoch",
    )
    ap.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE")
    args = ap.parse_args()
    sets = {}
    for item in args.set:
        key, _, value = item.partition("=")
        sets[key.removeprefix("train.")] = _value(value)
    names = ["checkpoint", "grid render", "grid png", "curves csv", "mlflow metrics",
             "mlflow artifact"]  # fmt: skip
    print(f"settings: {sets or 'params.yaml defaults'}; {args.epochs} epochs, subset {args.subset}")
    print("| variant | " + " | ".join(f"{n} (n x mean s)" for n in names)
          + " | writes s/epoch | train s/epoch |")  # fmt: skip
    print("|---" * (len(names) + 3) + "|")
    results = []
    for variant in args.variants:
        r = measure(variant, args.epochs, args.subset, sets)
        results.append(r)
        cells = []
        for n in names:
            count, mean = r["writers"].get(n, (0, 0.0))
            cells.append(f"{count} x {mean:.3f}")
        print(f"| {variant} | " + " | ".join(cells)
              + f" | {r['write_s_per_epoch']:.3f} | {r['train_s_per_epoch']:.2f} |")  # fmt: skip

    print("\nfull run (60,000 images, the variant's epochs), writes in s:")
    print("| variant | epochs | s/epoch | every epoch | checkpoints | grids | bounded |")
    print("|---" * 7 + "|")
    for r in results:
        for epoch_s in [None, *args.epoch_s]:
            print(full_run_estimate(r, sets, epoch_s))


if __name__ == "__main__":
    main()
