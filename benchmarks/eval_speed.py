"""Evaluation throughput: seconds per 10k images of each feature extractor (issue 27 item 7).

Usage (from the repo root):

    python benchmarks/eval_speed.py [--device auto] [--images 10000] [--out reports/benchmarks]

Times, on random uint8 images (throughput does not depend on content, and no weights are
needed: both nets keep their random initialisation), the two passes an evaluate stage makes
over its generated images: the MNIST classifier's features (pipeline.core.features.extract,
float32 as evaluate.tf32's default) and torch-fidelity's Inception-v3 features (2048-d and
logits, batch evaluate.batch_size = 500) at float32 and, on CUDA, at TF32. Writes
``eval_speed_<device>.json`` and prints one line per figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from speed_report import device_name  # noqa: E402

from pipeline.infra.devices import numerics, resolve_device  # noqa: E402

PER = 10_000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def random_inception(device: torch.device):  # type: ignore[no-untyped-def]
    """torch-fidelity's Inception-v3 extractor with its random initialisation (its
    constructor loads a weights file: an empty one, and loading is skipped)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class RandomInception(FeatureExtractorInceptionV3):
        def load_state_dict(self, *_args: object, **_kwargs: object) -> None:  # type: ignore[override]
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        net = RandomInception("inception-random", ["2048", "logits_unbiased"], str(empty))
    return net.to(device)


def classifier_seconds(images: torch.Tensor, device: torch.device) -> float:
    from pipeline.core.classifier import MnistCNN, for_inference
    from pipeline.core.features import extract

    model = for_inference(MnistCNN().to(device))  # as the evaluator loads it
    extract(model, images[:1000])  # warm-up (cuDNN's choices, allocator)
    with numerics(False):
        return _timed(lambda: extract(model, images), device)


@torch.no_grad()
def inception_seconds(
    net: torch.nn.Module, images: torch.Tensor, device: torch.device, tf32: bool, batch: int
) -> float:
    rgb = images.expand(-1, 3, -1, -1)

    def run() -> None:
        for i in range(0, len(rgb), batch):
            net(rgb[i : i + batch].to(device))

    net(rgb[:batch].to(device))  # warm-up
    with numerics(tf32):
        return _timed(run, device)


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=PER, help="Images timed per extractor.")
    ap.add_argument("--inception-images", type=int, default=None,
                    help="Images for Inception (default --images; ~6 images/s on 2 CPU cores).")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 1, 28, 28), dtype=torch.uint8, generator=gen)
    doc: dict[str, object] = {"device": device_name(device), "torch": torch.__version__,
                              "images": args.images, "batch_size": args.batch_size}  # fmt: skip

    def record(key: str, n: int, seconds: float) -> None:
        doc[key] = {"images": n, "seconds": round(seconds, 3),
                    "s_per_10k": round(seconds * PER / n, 2),
                    "images_per_s": round(n / seconds, 1)}  # fmt: skip
        print(f"{key}: {doc[key]['s_per_10k']} s per 10k images "
              f"({doc[key]['images_per_s']} images/s, {n} timed)", flush=True)  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"eval_speed_{device.type}.json").write_text(json.dumps(doc, indent=2) + "\n")

    record("classifier_features", args.images, classifier_seconds(images, device))
    n_inc = args.inception_images or args.images
    net = random_inception(device)
    for tf32 in (False, True) if device.type == "cuda" else (False,):
        key = f"inception_{'tf32' if tf32 else 'fp32'}"
        record(key, n_inc, inception_seconds(net, images[:n_inc], device, tf32, args.batch_size))
    return doc


if __name__ == "__main__":
    main()
