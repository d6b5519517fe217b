"""Training speed: each model's classic PyTorch loop vs the pipeline's trainer.

Usage (from the repo root; MNIST from $PIPELINE_MNIST_MIRROR or ../shared/data/mnist):

    python benchmarks/train_speed.py [--device auto] [--variants gan,...] [--limit SECONDS]

Per model, in a process of its own (a failed CUDA graph capture costs that model's graphs
cell only), its verdict first: the classic loop (100 steps), the trainer with CUDA graphs,
the trainer's fast path; then, on a few representative models (--slope-variants), the eager
trainer and the fast path with plain LeakyReLUs. The classic loops are written in the style
of each model's reference code (benchmarks/classic_loops.py; the GAN loop here): torchvision
MNIST + ToTensor/Normalize, a DataLoader, ``.to(device)`` per batch, ``.item()`` per step.
Numerics: the trainer runs with train.tf32 off (float32 matmuls and convolutions); the classic
loop keeps torch's defaults (cuDNN convolutions may use TF32 on Ampere and later), a bias in
the classic loop's favour for conv models, so a ratio is conservative there.
Writes ``train_speed_<device>.json`` and ``.md`` under --out after every model, with a
"≥ 25×: yes/no" line per model and the models not reached within --limit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from classic_loops import STEPS  # noqa: E402
from speed_report import (  # noqa: E402
    NUMERICS,
    TARGET_RATIO,
    _round,
    device_name,
    verdict_of,
    write_report,
)

from pipeline.core.algorithms import Adversarial  # noqa: E402
from pipeline.core.losses import Scores  # noqa: E402
from pipeline.core.variants.base import registry  # noqa: E402
from pipeline.infra.config import MIRROR_ENV  # noqa: E402
from pipeline.infra.data import IMG_SHAPE, RESOURCES, prepare  # noqa: E402
from pipeline.infra.devices import resolve_device  # noqa: E402
from pipeline.infra.errors import first_line  # noqa: E402
from pipeline.infra.params import load_params, merge_overrides  # noqa: E402
from pipeline.training.graphs import GraphCaptureError  # noqa: E402
from pipeline.training.loop import Trainer, build_nets  # noqa: E402
from pipeline.training.optim import OPTIMIZERS  # noqa: E402
from pipeline.training.setup import run_setup  # noqa: E402
from pipeline.training.spec import run_spec  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classic_loader(root: Path, mirror: Path):
    """torchvision.datasets.MNIST + ToTensor + Normalize(0.5, 0.5) + DataLoader(64, shuffle)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RESOURCES:
        shutil.copy(mirror / name, raw / name)  # download=True then finds them and checks md5
    ds = datasets.MNIST(
        str(root), train=True, download=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]),
    )  # fmt: skip
    return DataLoader(ds, batch_size=64, shuffle=True, drop_last=True)


def g_share(name: str) -> float:
    """The share of steps that update the sampler (generator iterations per step)."""
    variant = registry.get(name)
    alg = variant.algorithm
    sampler_opts = {o for o, nets in alg.owners().items() if alg.sampler in nets}
    cycle = alg.schedule(variant.resolve(None))
    return sum(bool(sampler_opts & set(alg.kinds[k])) for k in cycle) / len(cycle)


def classic_optimizer(hyper, module: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser as people write it: the library's defaults (foreach on CUDA), no flags."""
    kwargs = {"lr": hyper.lr}
    if hyper.optimizer == "adam":
        kwargs["betas"] = tuple(hyper.betas)
    return OPTIMIZERS[hyper.optimizer](module.parameters(), **kwargs)


def adversarial_step(nets: dict[str, torch.nn.Module], variant: Any, hyper: Any, z_dim: int,
                     device: torch.device, optim: Callable) -> Callable | None:  # fmt: skip
    """The classic GAN loop (PyTorch-GAN's gan.py / wgan.py / wgan_gp.py): one D step per
    batch, a G step every n_critic batches, the variant's loss pair, penalty and clipping.
    None for a D with extra outputs (its family has its loop in classic_loops)."""
    alg = variant.algorithm
    g, d = nets["generator"], nets["discriminator"]
    probe = torch.zeros(2, *IMG_SHAPE, device=device)
    probe_y = torch.zeros(2, dtype=torch.long, device=device) if variant.conditional else None
    if not isinstance(d(probe, probe_y), torch.Tensor):
        return None
    opt_g, opt_d = optim(g), optim(d)
    obj, opts = alg.objective, hyper.options
    w = opts.get("penalty_weight", 0.0)

    def step(real: torch.Tensor, labels: torch.Tensor, i: int) -> dict[str, float]:
        y = labels if variant.conditional else None
        z = torch.randn(real.shape[0], z_dim, device=device)
        fake = g(z, y)
        opt_d.zero_grad()
        out_real = d(real, y)
        s = Scores(out_real, d(fake.detach(), y), labels=y, options=opts)
        loss_d = obj.d_loss(s)
        if alg.penalty is not None:
            loss_d = loss_d + w * alg.penalty(d, real, fake.detach(), y, opts)
        loss_d.backward()
        opt_d.step()
        if alg.after_d_step is not None:
            alg.after_d_step(d, opts)
        log = {"d": loss_d.item()}
        if i % hyper.n_critic == 0:
            opt_g.zero_grad()
            real_g = d(real, y) if obj.g_needs_real else out_real
            loss_g = obj.g_loss(Scores(real_g, d(fake, y), labels=y, options=opts))
            loss_g.backward()
            opt_g.step()
            log["g"] = loss_g.item()
        return log

    return step


def classic_steps_per_s(
    name: str,
    loader,  # noqa: ANN001 -- a DataLoader of (images, labels)
    device: torch.device,
    steps: int,
    warmup: int,
    params_path: Path = REPO / "params.yaml",
) -> float | None:
    """The model's classic loop (classic_loops.STEPS, or the GAN loop above) over the
    DataLoader, ``.to(device)`` per batch; steps/s over ``steps`` after ``warmup`` steps.
    None where no classic loop is written for the model."""
    variant = registry.get(name)
    spec = run_spec(load_params(params_path), name)  # the nets the trainer is timed with
    nets = build_nets(variant, spec, device)
    hyper = spec.hyper

    def optim(module: torch.nn.Module) -> torch.optim.Optimizer:
        return classic_optimizer(hyper, module)

    if name in STEPS:
        step = STEPS[name](nets, hyper, spec.z_dim, device, optim)
    elif type(variant.algorithm) is Adversarial:
        step = adversarial_step(nets, variant, hyper, spec.z_dim, device, optim)
    else:
        step = None
    if step is None:
        return None
    done, t0 = 0, 0.0
    while done < steps + warmup:
        for i, (imgs, labels) in enumerate(loader):
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            if done == steps + warmup:
                break
            step(imgs.to(device), labels.to(device), i)
            done += 1
    _sync(device)
    return steps / (time.perf_counter() - t0)


# The trainer's ways of stepping, as train.* overrides. "plain_slopes": the fast path with the
# critic's ordinary LeakyReLUs (train.detach_slopes off; penalty variants only), to measure
# per device whether detached slopes pay for their extra element-wise ops.
MODES: dict[str, dict[str, bool]] = {
    "eager": {"fast": False},
    "fast": {},
    "plain_slopes": {"detach_slopes": False},
    "graphs": {"cuda_graphs": True},
}


def applies(mode: str, name: str) -> bool:
    return (
        mode != "plain_slopes" or getattr(registry.get(name).algorithm, "penalty", None) is not None
    )


def pipeline_steps_per_s(
    name: str,
    params_path: Path,
    device: torch.device,
    steps: int,
    mode: str = "fast",
    epochs: int = 3,
) -> float:
    """The pipeline's trainer over ``epochs`` epochs of ``steps`` batches; the first is warm-up
    (and, in mode "graphs", where the CUDA graphs are captured). A failed capture raises
    GraphCaptureError: the caller must stop its CUDA work (see pipeline.training.graphs)."""
    params = load_params(params_path)
    params = params.with_section("train", score_every=0, **MODES[mode])  # training alone
    spec = run_spec(params, name, epochs=epochs, subset=steps * 64)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(run_setup(params), spec, Path(out), device, progress=False)
        result = trainer.run()
    return statistics.median(h["steps_per_s"] for h in result.history[1:])


# ---------------------------------------------------------------------------------------------
# One process per model (a failed CUDA graph capture leaves its process's CUDA state unsafe:
# it costs that model's graphs cell, nothing else), the verdict modes first for every model,
# then the slope modes on a few representative ones.

VERDICT_MODES = ("classic", "graphs", "fast")
SLOPE_MODES = ("eager", "plain_slopes")
REPRESENTATIVE = ("gan", "wgan_gp", "dcgan")
FIRST = ("gan", "wgan_gp", "dcgan", "vae", "ddpm")  # the probe's models, measured first
FAIL_CAPTURE_ENV = "TRAIN_SPEED_FAIL_CAPTURE"  # test hook: models whose capture is refused


def _row(path: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"variant": name, "reference_steps_per_s": None}


def run_model(name: str, modes: list[str], args: argparse.Namespace, work: Path) -> int:
    """Child: measure ``modes`` of one model in this process, updating its row file after each
    mode (a time limit keeps what was measured). Exit 3 after a failed capture."""
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True  # the classic loop's usual setting
    if name in os.environ.get(FAIL_CAPTURE_ENV, "").split(","):
        import pipeline.training.loop as loop

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("operation not permitted when stream is capturing (test hook)")

        loop.StepGraphs = refuse  # type: ignore[assignment,misc]
    path = work / f"{name}.json"
    row = _row(path, name)
    params_path = work / "params.yaml"
    for mode in modes:
        if mode == "classic":
            loader = classic_loader(work / "torchvision", Path(os.environ[MIRROR_ENV]))
            cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
            row["classic_numerics"] = (f"torch defaults: cudnn.allow_tf32={cudnn.allow_tf32}, "
                                       f"matmul.allow_tf32={matmul.allow_tf32}")  # fmt: skip
            ref = classic_steps_per_s(
                name, loader, device, args.classic_steps, args.warmup, params_path
            )
            row["reference_steps_per_s"] = _round(ref, 1)
        elif applies(mode, name):
            try:
                f = statistics.median(
                    pipeline_steps_per_s(name, params_path, device, args.steps, mode, args.epochs)
                    for _ in range(args.repeats)
                )
            except GraphCaptureError as exc:
                row["graphs_error"] = first_line(exc)[:300]
                path.write_text(json.dumps(row))
                print(f"train_speed: {name}: {row['graphs_error']}", file=sys.stderr)
                return 3
            r = row.get("reference_steps_per_s")
            row[f"{mode}_steps_per_s"] = round(f, 1)
            row[f"{mode}_ratio"] = _round(r and f / r, 2)
            if mode == "fast":
                row["fast_g_iters_per_s"] = round(f * g_share(name), 1)
        path.write_text(json.dumps(row))
    return 0


def _child(name: str, modes: list[str], args: argparse.Namespace, work: Path,
           limit: float) -> str | None:  # fmt: skip
    """Run ``modes`` of ``name`` in a fresh process under ``limit`` seconds; None or why not."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--work", str(work),
           "--modes", ",".join(modes), "--device", args.device, "--steps", str(args.steps),
           "--classic-steps", str(args.classic_steps), "--warmup", str(args.warmup),
           "--epochs", str(args.epochs),
           "--repeats", str(args.repeats)]  # fmt: skip
    try:
        done = subprocess.run(cmd, timeout=max(limit, 1), stdout=sys.stdout, stderr=sys.stderr)
    except subprocess.TimeoutExpired:
        return f"stopped at its {limit:.0f} s limit"
    return None if done.returncode in (0, 3) else f"exit {done.returncode}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=200, help="Trainer steps per timed epoch.")
    ap.add_argument("--epochs", type=int, default=3,
                    help="Trainer epochs of --steps steps; the first is warm-up (and capture).")  # fmt: skip
    ap.add_argument("--classic-steps", type=int, default=100, help="Timed classic-loop steps.")
    ap.add_argument("--warmup", type=int, default=10, help="Classic-loop steps before timing.")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", default=",".join(registry.names()))
    ap.add_argument("--slope-variants", default=",".join(REPRESENTATIVE),
                    help="Models also timed eager and with plain LeakyReLUs.")  # fmt: skip
    ap.add_argument("--modes", default="auto", help="Comma-separated out of classic,"
                    f"{','.join(MODES)} (auto: all, graphs on CUDA only).")  # fmt: skip
    ap.add_argument("--model-limit", type=float, default=60.0, help="Seconds per model process.")
    ap.add_argument("--limit", type=float, default=None,
                    help="Seconds in all: no model process starts after them (listed as not "
                    "reached).")  # fmt: skip
    ap.add_argument("--eval-images", type=int, default=0,
                    help="Also benchmarks/eval_speed.py on this many images (0: not).")  # fmt: skip
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one model
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    known = ("classic", *MODES)
    if args.modes == "auto":
        modes = [m for m in known if m != "graphs" or resolve_device(args.device).type == "cuda"]
    else:
        modes = args.modes.split(",")
        if unknown := set(modes) - set(known):
            raise SystemExit(f"train_speed: unknown mode(s) {sorted(unknown)}; known: {known}")
    if args.one:
        raise SystemExit(run_model(args.one, modes, args, args.work))

    device = resolve_device(args.device)
    mirror = Path(os.environ.get(MIRROR_ENV) or REPO.parent / "shared" / "data" / "mnist")
    os.environ[MIRROR_ENV] = str(mirror)
    names = args.variants.split(",")
    names = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    verdict = [m for m in VERDICT_MODES if m in modes]
    slopes = [m for m in SLOPE_MODES if m in modes]
    doc: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__, "steps": args.steps,
        "classic_steps": args.classic_steps, "repeats": args.repeats, "batch_size": 64,
        "modes": [m for m in modes if m != "classic"], "target_ratio": TARGET_RATIO,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "numerics": NUMERICS, "training": [], "not_reached": [],
    }  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench."))
    try:
        import yaml

        base = yaml.safe_load((REPO / "params.yaml").read_text())
        cfg = merge_overrides(base, {"train": {"device": str(device), "log_every": 10_000}})
        (work / "params.yaml").write_text(yaml.safe_dump(cfg))
        prepare(load_params(work / "params.yaml"))

        def left() -> float:
            return math.inf if args.limit is None else args.limit - (time.monotonic() - t_start)

        def publish() -> None:
            doc["training"] = [verdict_of(_row(work / f"{n}.json", n)) for n in names
                               if (work / f"{n}.json").is_file()]  # fmt: skip
            write_report(doc, args.out, device.type)

        passes = [(n, verdict) for n in names] + [
            (n, slopes) for n in args.slope_variants.split(",") if n in names and slopes
        ]
        for name, these in passes:
            if left() < 5:
                doc["not_reached"].append(f"{name}: {','.join(these)}")
                continue
            why = _child(name, these, args, work, min(args.model_limit, left()))
            row = _row(work / f"{name}.json", name)
            if why is None and "graphs_error" in row and these is verdict:
                rest = [m for m in these if m not in ("classic", "graphs")]
                why = rest and _child(name, rest, args, work, min(args.model_limit, left()))
            if why:
                row.setdefault("errors", []).append(f"{','.join(these)}: {why}")
                (work / f"{name}.json").write_text(json.dumps(row))
            publish()
            print(json.dumps(_row(work / f"{name}.json", name)), flush=True)
        publish()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.eval_images:
        import eval_speed

        eval_speed.main(["--device", args.device, "--images", str(args.eval_images),
                         "--out", str(args.out)])  # fmt: skip
    print(write_report(doc, args.out, device.type))


if __name__ == "__main__":
    main()
