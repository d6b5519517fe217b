"""What a training run spends writing, per epoch and per run (issue #24 item 6): a real
``train_variant`` (MLflow into a SQLite store in a temp folder, MNIST prepared from
$PIPELINE_MNIST_MIRROR) for a few epochs on a subset, with the writers wrapped in timers:
the checkpoint save, the sample grid (render + PNG), the curves CSV, MLflow metrics and
MLflow artifact uploads during the epochs (the final uploads and the model log at the end
are once per run either way, so they are left out).

Usage: python benchmarks/write_cost.py [VARIANT ...] [--epochs E] [--subset N]
       [--set train.KEY=VALUE ...]
Prints one Markdown table row per variant: the count and mean seconds of each writer, the
total write time per epoch, and the training seconds per epoch beside it.
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

    import pipeline.checkpoint as ckpt
    import pipeline.tracking as tracking
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
    from pipeline.config import load_params
    from pipeline.data import prepare
    from pipeline.training import train_variant

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
        "train_s_per_epoch": result.train_time_s / epochs,
        "write_s_per_epoch": writes / epochs,
        "writers": {k: (len(v), statistics.fmean(v) if v else 0.0) for k, v in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="*", default=["gan", "dcgan"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--subset", type=int, default=64 * 40)
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
    for variant in args.variants:
        r = measure(variant, args.epochs, args.subset, sets)
        cells = []
        for n in names:
            count, mean = r["writers"].get(n, (0, 0.0))
            cells.append(f"{count} x {mean:.3f}")
        print(f"| {variant} | " + " | ".join(cells)
              + f" | {r['write_s_per_epoch']:.3f} | {r['train_s_per_epoch']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
