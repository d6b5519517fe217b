"""Training speed: the classic PyTorch GAN loop vs the pipeline's trainer, per variant.

Usage (from the repo root; MNIST from $PIPELINE_MNIST_MIRROR or ../shared/data/mnist):

    python benchmarks/train_speed.py [--device auto] [--steps 300] [--repeats 3] [--variants gan,...]

Both loops run in this process, on the same device, with the same models, optimisers,
batch size (64) and updates. The reference is written here, deliberately in the style of the
classic write-ups (torchvision MNIST + ToTensor/Normalize, a DataLoader, ``.to(device)`` per
batch, ``.item()`` per step for logging). Writes ``reports/benchmarks/train_speed_<device>.json``
and ``.md`` (steps/s, s/epoch at 60k images, ratio) plus evaluation throughput (images/s of
the classifier extractor; Inception too on CUDA when its weights are available).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from speed_report import _round, device_name, write_report  # noqa: E402

from pipeline.algorithms import Adversarial  # noqa: E402
from pipeline.config import MIRROR_ENV, load_params, merge_overrides  # noqa: E402
from pipeline.data import IMG_SHAPE, RESOURCES, prepare  # noqa: E402
from pipeline.devices import resolve_device  # noqa: E402
from pipeline.errors import first_line  # noqa: E402
from pipeline.graphs import GraphCaptureError  # noqa: E402
from pipeline.losses import Scores  # noqa: E402
from pipeline.training import Trainer, build_nets, run_spec  # noqa: E402
from pipeline.training.optim import OPTIMIZERS  # noqa: E402
from pipeline.variants import registry  # noqa: E402


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


def classic_steps_per_s(
    name: str, loader, device: torch.device, steps: int, warmup: int
) -> float | None:
    """The classic loop: one D step per batch, a G step every n_critic batches (the plain GAN
    losses; None for another family or a structured GAN, whose D has extra heads or whose
    step has extra terms: their classic loop is not written here)."""
    variant = registry.get(name)
    alg = variant.algorithm
    if type(alg) is not Adversarial:
        return None
    params = load_params(REPO / "params.yaml")
    spec = run_spec(params, name)
    nets = build_nets(variant, spec, device)
    g, d = nets["generator"], nets["discriminator"]
    probe = torch.zeros(2, *IMG_SHAPE, device=device)
    probe_y = torch.zeros(2, dtype=torch.long, device=device) if variant.conditional else None
    if not isinstance(d(probe, probe_y), torch.Tensor):
        return None  # a D with extra outputs (ACGAN's class head)
    hyper = spec.hyper
    opt_g, opt_d = classic_optimizer(hyper, g), classic_optimizer(hyper, d)
    obj, opts = alg.objective, hyper.options
    w = opts.get("penalty_weight", 0.0)
    done, t0 = 0, 0.0
    while done < steps + warmup:
        for i, (imgs, labels) in enumerate(loader):
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            if done == steps + warmup:
                break
            real = imgs.to(device)
            y = labels.to(device) if variant.conditional else None
            z = torch.randn(imgs.shape[0], spec.z_dim, device=device)
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
    name: str, params_path: Path, device: torch.device, steps: int, mode: str = "fast"
) -> float:
    """The pipeline's trainer over epochs of ``steps`` batches; the first epoch is warm-up
    (and, in mode "graphs", where the CUDA graphs are captured). A failed capture raises
    GraphCaptureError: the caller must stop its CUDA work (see pipeline.graphs)."""
    params = load_params(params_path)
    params = params.with_section("train", score_every=0, **MODES[mode])  # training alone
    spec = run_spec(params, name, epochs=3, subset=steps * 64)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(params, spec, Path(out), device, progress=False)
        result = trainer.run()
    return statistics.median(h["steps_per_s"] for h in result.history[1:])


def eval_throughput(params_path: Path, device: torch.device, n: int) -> dict[str, float]:
    """Images/s of the classifier feature extractor through torch-fidelity (fresh, uncached)."""
    out: dict[str, float] = {}
    try:
        from pipeline.classifier import checkpoint_path, train_classifier
        from pipeline.evaluate import score
    except ImportError:
        return out
    params = load_params(params_path)
    if not checkpoint_path(params).is_file():
        train_classifier(params)
    from pipeline.data import load_split

    images = load_split(params, "train")[0][:n].unsqueeze(1)
    p = params.with_section("evaluate", extractors=["classifier"], n_real=min(n, 10_000))
    t0 = time.perf_counter()
    score(p, "bench", images, None, device=str(device))
    # generated + real features are extracted (the real ones are cached after the first call)
    out["classifier_metrics_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    score(p, "bench", images, None, device=str(device))
    out["classifier_metrics_cached_real_s"] = time.perf_counter() - t0
    out["classifier_images_per_s"] = n / out["classifier_metrics_cached_real_s"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=300, help="Measured steps per repeat.")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(registry.names()))
    ap.add_argument("--eval-images", type=int, default=10_000, help="0: skip evaluation.")
    ap.add_argument(
        "--modes", default="auto",
        help=f"Comma-separated trainer modes out of {','.join(MODES)} (auto: fast and "
        "plain_slopes, plus graphs on CUDA). The classic loop is always timed.",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    if args.modes == "auto":
        modes = ["fast", "plain_slopes"] + (["graphs"] if device.type == "cuda" else [])
    else:
        modes = args.modes.split(",")
        if unknown := set(modes) - set(MODES):
            raise SystemExit(
                f"train_speed: unknown mode(s) {sorted(unknown)}; known: {list(MODES)}"
            )
    torch.backends.cudnn.benchmark = True
    mirror = Path(os.environ.get(MIRROR_ENV) or REPO.parent / "shared" / "data" / "mnist")
    os.environ[MIRROR_ENV] = str(mirror)
    doc = {
        "device": device_name(device), "torch": torch.__version__, "steps": args.steps,
        "repeats": args.repeats, "batch_size": 64, "modes": modes,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "training": [], "evaluation": {},
    }  # fmt: skip
    rows: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="bench."))
    try:
        import yaml

        base = yaml.safe_load((REPO / "params.yaml").read_text())
        cfg = merge_overrides(base, {"train": {"device": str(device), "log_every": 10_000},
                                     "classifier": {"device": str(device), "epochs": 1},
                                     "evaluate": {"device": str(device)}})  # fmt: skip
        params_path = work / "params.yaml"
        params_path.write_text(yaml.safe_dump(cfg))
        prepare(load_params(params_path))
        loader = classic_loader(work / "torchvision", mirror)

        def measure(name: str, mode: str) -> None:
            f = statistics.median(
                pipeline_steps_per_s(name, params_path, device, args.steps, mode)
                for _ in range(args.repeats)
            )
            row, r = rows[name], rows[name]["reference_steps_per_s"]
            row[f"{mode}_steps_per_s"] = round(f, 1)
            row[f"{mode}_ratio"] = _round(r and f / r, 2)
            if mode == "fast":
                row["fast_g_iters_per_s"] = round(f * g_share(name), 1)

        # Every eager figure first, CUDA graphs last: a failed capture ends the CUDA work of
        # this process (its state is not safe to go on in) and loses graph figures only.
        for name in args.variants.split(","):
            ref = [
                classic_steps_per_s(name, loader, device, args.steps, args.warmup)
                for _ in range(args.repeats)
            ]
            rows[name] = {"variant": name, "reference_steps_per_s": _round(
                None if ref[0] is None else statistics.median(ref), 1)}  # fmt: skip
            doc["training"] = list(rows.values())
            for mode in modes:
                if mode != "graphs" and applies(mode, name):
                    measure(name, mode)
            print(json.dumps(rows[name]), flush=True)
            write_report(doc, args.out, device.type)  # as it goes: a timeout keeps the rest
        if "graphs" in modes:
            for name in rows:
                try:
                    measure(name, "graphs")
                except GraphCaptureError as exc:
                    rows[name]["graphs_error"] = first_line(exc)[:300]
                    write_report(doc, args.out, device.type)
                    raise SystemExit(
                        f"train_speed: {exc} -- stopped here (this process's CUDA state is not "
                        f"safe after a failed capture); figures so far in {args.out}; rerun "
                        f"without graphs: --modes {','.join(m for m in modes if m != 'graphs')}"
                    ) from None
                print(json.dumps(rows[name]), flush=True)
                write_report(doc, args.out, device.type)
        if args.eval_images:
            doc["evaluation"] = eval_throughput(params_path, device, args.eval_images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(write_report(doc, args.out, device.type))


if __name__ == "__main__":
    main()
