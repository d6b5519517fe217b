"""The MNIST CNN behind the classifier evaluator: training, checkpoint, loading.

A small CNN (two conv blocks, a 128-d penultimate layer, 10 logits) trained on MNIST train and
checked on the full test set. Its penultimate features are the embedding for FID/KID/precision/
recall and its softmax the class posterior for IS and class coverage (pipeline/stages/evaluate/).

Checkpoint: ``<classifier.out_dir>/classifier.pt``, a dict ``{"state_dict": {...}, "meta":
{...}}`` of tensors and primitives only, so ``torch.load(weights_only=True)`` reads it; beside it
``metrics.json`` with the measured test accuracy, and while training runs ``resume.pt`` (its
state after the last finished epoch: an interrupted run resumes from it exactly).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.core.classifier import ARCH, FEATURE_DIM, MnistCNN, accuracy
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.data import N_CLASSES, load_split, to_model_range
from pipeline.infra.devices import numerics, precision_tag, resolve_device
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import save_torch, write_json

CHECKPOINT_NAME = layout.CLASSIFIER_CHECKPOINT_FILE
METRICS_NAME = layout.CLASSIFIER_METRICS_FILE
RESUME_NAME = layout.CLASSIFIER_RESUME_FILE  # the unfinished run, after each epoch


@dataclass(frozen=True)
class ClassifierResult:
    path: Path
    test_accuracy: float
    seconds: float = 0.0


def _resume_state(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The unfinished run in ``path`` if it was started with ``identity``; else None (and a
    line on stderr when a partial run of another config is discarded)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        old = state["identity"]
    except Exception as err:  # truncated or foreign: it is only a cache of finished epochs
        print(f"classifier: ignoring unreadable {path} ({first_line(err)})", file=sys.stderr)
        return None
    diff = [f"{k}: {old.get(k)} -> {v}" for k, v in identity.items() if old.get(k) != v]
    if diff:
        print(
            f"classifier: {path} holds an unfinished run with another config "
            f"({'; '.join(diff)}); starting over",
            file=sys.stderr,
        )
        return None
    return state


def _fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    epochs: int,
    done: int,
    steps_per_epoch: int,
    identity: dict[str, Any],
    resume_path: Path,
    start: float,
    dev: torch.device,
) -> None:
    """Epochs ``done`` .. ``epochs`` of train_classifier, saving the resume state after each."""
    n = len(images)
    model.train()
    # Redraw at most every 10 s when stderr is a log (dvc repro), not a terminal.
    every = 0.5 if sys.stderr.isatty() else 10.0
    with tqdm(
        total=epochs * steps_per_epoch,
        initial=done * steps_per_epoch,
        desc="classifier",
        unit="step",
        mininterval=every,
    ) as bar:
        for epoch in range(done, epochs):
            perm = torch.randperm(n, generator=gen).to(dev)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                x, y = to_model_range(images[idx]), labels[idx]
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
            # One host sync per epoch only; the loss shown is the last batch's.
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
            if epoch + 1 < epochs:
                rng = {"shuffle": gen.get_state(), "torch": torch.get_rng_state()}
                if dev.type == "cuda":
                    rng["cuda"] = torch.cuda.get_rng_state(dev)
                save_torch({"identity": identity, "epoch": epoch + 1,
                            "train_seconds": time.perf_counter() - start,
                            "model": model.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "rng": rng}, resume_path)  # fmt: skip


def train_classifier(
    params: Params, epochs: int | None = None, device: str | None = None
) -> ClassifierResult:
    """Train the evaluator CNN on MNIST train (first ``classifier.subset`` images if set).

    Seeded by ``classifier.seed`` (init, dropout and the per-epoch permutation); data stays
    resident on the device as one uint8 tensor. Writes ``classifier.pt`` and ``metrics.json``
    (full 10k test-set accuracy) atomically under ``classifier.out_dir``. After every epoch
    the whole training state (weights, Adam, schedule, RNGs) goes to ``resume.pt`` there, so
    an interrupted run resumes where it stopped and ends with the same weights as one that
    was not interrupted; it is deleted when the run finishes.
    """
    cfg = params.classifier
    epochs = cfg.epochs if epochs is None else epochs
    if epochs < 1:
        raise PipelineError(f"classifier epochs must be >= 1 (got {epochs})")
    dev = resolve_device(device or cfg.device)

    images, labels = load_split(params, "train", dev)
    if cfg.subset is not None:
        images, labels = images[: cfg.subset], labels[: cfg.subset]
    test_images, test_labels = load_split(params, "test", dev)
    n = len(images)

    torch.manual_seed(cfg.seed)
    model = MnistCNN().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    # Cosine decay to zero over the run: the last epochs refine instead of bouncing around,
    # worth ~0.2-0.3 points of test accuracy at this small budget.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    # Own generator for the shuffling: the order does not depend on what else drew numbers.
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    out_dir = params.path(cfg.out_dir)
    resume_path = layout.classifier_resume(params)
    # What the result depends on; the device type too, since dropout draws from its RNG.
    identity = {"arch": ARCH, "epochs": epochs, "train_images": n, "seed": cfg.seed,
                "lr": cfg.lr, "batch_size": cfg.batch_size, "device": dev.type}  # fmt: skip
    done, seconds = 0, 0.0
    state = _resume_state(resume_path, identity)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["rng"]["shuffle"])
        torch.set_rng_state(state["rng"]["torch"])
        if dev.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], dev)
        done, seconds = state["epoch"], state["train_seconds"]
        print(f"classifier: resuming from epoch {done} ({resume_path})", file=sys.stderr)

    start = time.perf_counter() - seconds
    # The evaluator trains at the precision its features are extracted at (evaluate.tf32):
    # one TF32 rule for the classifier, as for the generators (train.tf32).
    with numerics(params.evaluate.tf32):
        _fit(model, opt, sched, gen, images, labels, cfg.batch_size, epochs, done, steps_per_epoch,
             identity, resume_path, start, dev)  # fmt: skip
    seconds = time.perf_counter() - start

    model.eval()
    with numerics(params.evaluate.tf32):
        test_acc = accuracy(model, test_images, test_labels)

    meta: dict[str, Any] = {
        "arch": ARCH,
        "feature_dim": FEATURE_DIM,
        "n_classes": N_CLASSES,
        "epochs": epochs,
        "train_images": n,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "test_accuracy": test_acc,
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = out_dir / CHECKPOINT_NAME
    save_torch({"state_dict": state, "meta": meta}, path)
    write_json(
        out_dir / METRICS_NAME,
        {
            "test_accuracy": test_acc,
            "epochs": epochs,
            "train_images": n,
            "train_seconds": round(seconds, 2),
            "device": str(dev),
            "precision": precision_tag(dev, params.evaluate.tf32),
        },
    )
    resume_path.unlink(missing_ok=True)
    return ClassifierResult(path=path, test_accuracy=test_acc, seconds=seconds)
