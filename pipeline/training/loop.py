"""The one training loop for every model family.

Over 300 lines: the Trainer is one state machine (resume, epochs, graphs, rollback); split after
the parallel edits of this round are merged.

The loop runs the variant's :class:`~pipeline.core.algorithms.Algorithm` through a
:class:`~pipeline.core.algorithms.StepContext` and never branches on a variant's name.
Fast-path choices, all numerically float32-equivalent to the classic loop:

* the whole training set lives on the device as one float tensor, shuffled once per epoch
  by a seeded generator (no DataLoader, no per-batch host->device copies);
* metrics accumulate on the device and are read once per ``log_every`` steps (no per-step
  ``.item()`` host synchronisation);
* fused optimiser kernels where the optimiser has them (Adam), foreach otherwise;
* channels-last memory format for conv nets and cudnn.benchmark on CUDA;
* during an optimiser's update the nets it does not own are frozen, so their weight
  gradients are not computed for nothing;
* a net that treats samples independently (``nets.couples_batch`` is False) scores the real
  and the fake batch in one pass of twice the rows (float32-equivalent: a larger matrix
  product may round differently in the last bit); a batch-norm net keeps two passes;
* the algorithm's own fast-path changes (``prepare_fast``: e.g. detached activation slopes
  under a gradient penalty, ``train.detach_slopes``);
* with ``train.cuda_graphs``, each kind of step is replayed as a CUDA graph
  (``pipeline.training.graphs``).

Every random draw comes from explicit generators saved in the checkpoint, so a run killed
and resumed ends with exactly the same weights as an uninterrupted one on the CPU. On CUDA
that holds with ``train.deterministic`` (deterministic cuDNN/cuBLAS kernels, no
cudnn.benchmark); without it, conv nets (DCGAN) and atomics-based kernels may round
differently from run to run. ``train.tf32`` (off by default) allows TF32 on CUDA.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from pipeline.infra import checkpoint as ckpt
from pipeline.core.algorithms.base import Algorithm, StepContext
from pipeline.infra.data import IMG_SHAPE, N_CLASSES, read_split, to_model_range
from pipeline.infra.devices import numerics
from pipeline.core.divergence import DivergedError, DivergenceMonitor
from pipeline.infra.errors import PipelineError, first_line
from pipeline.training.graphs import GraphCaptureError, StepGraphs
from pipeline.infra.io import write_json
from pipeline.infra.layout import FIGURES_DIR
from pipeline.core.nets import NetSpec, couples_batch
from pipeline.infra.runlock import folder_lock, remove_stale_temps
from pipeline.training.artifacts import (
    curve_columns,
    grid_inputs,
    make_gif,
    render_grid,
    save_grid,
    write_curves,
    write_figures,
)
from pipeline.training.budget import kinds, updates
from pipeline.training.optim import make_optimizers, portable
from pipeline.training.quality import QualityCurve, write_quality
from pipeline.training.rundir import ResumeRefusedError, RunFolder
from pipeline.training.setup import RunSetup
from pipeline.training.spec import RunSpec
from pipeline.core.hyper import Hyper
from pipeline.core.variants.base import Variant, registry
from pipeline.training.writes import WritePlan, gif_frames


class NonFiniteLossError(DivergedError):
    """A loss became NaN/inf; the run stops (tuning prunes the trial)."""


@dataclass
class EpochEnd:
    """What callbacks see after each epoch."""

    epoch: int
    step: int
    metrics: dict[str, float]
    grid: Path | None
    generator: nn.Module  # the sampler net
    spec: RunSpec
    device: torch.device
    nets: dict[str, nn.Module] = field(default_factory=dict)


class TrainCallback(Protocol):
    def on_start(self, spec: RunSpec, out_dir: Path, resumed_epoch: int) -> None: ...
    def on_epoch_end(self, event: EpochEnd) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...
    def on_failure(self, exc: BaseException) -> None: ...
    # A rerun found the run finished already (nothing trained): a chance to repair records
    # that a kill during the first run's finalisation left incomplete.
    def on_already_complete(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    variant: str
    epochs: int
    steps: int
    train_time_s: float
    steps_per_s: float
    checkpoint: Path
    out_dir: Path
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    g_iters: int = 0
    d_iters: int | None = None  # critic/discriminator updates; None: the model has no critic
    images_seen: int = 0  # real training images consumed (steps x batch size)


def net_spec(variant: Variant, spec: RunSpec) -> NetSpec:
    return NetSpec(spec.z_dim, IMG_SHAPE, N_CLASSES if variant.conditional else 0)


def build_nets(variant: Variant, spec: RunSpec, device: torch.device) -> dict[str, nn.Module]:
    """Seeded construction of every net of the variant's algorithm on ``device``."""
    torch.manual_seed(spec.seed)
    nets = variant.algorithm.build_with(net_spec(variant, spec), spec.hyper.options)
    return {name: net.to(device) for name, net in nets.items()}


def step_context(
    algorithm: Algorithm,
    metrics: Sequence[str],
    hyper: Hyper,
    spec: NetSpec,
    nets: dict[str, nn.Module],
    device: torch.device,
    fast: bool,
    noise_seed: int,
) -> StepContext:
    """The context a run steps in: one optimiser per owner, the algorithm's state, the
    seeded noise generator and the joint real+fake pass where a net allows it (the trainer
    and the toy problems build theirs here, so both take the same step)."""
    owners = algorithm.owners()
    optimizers = make_optimizers(hyper, nets, owners, device, fast)
    state = algorithm.initial_state(hyper, device)
    noise = torch.Generator(device=device).manual_seed(noise_seed)
    joint = {n: fast and not couples_batch(m) for n, m in nets.items()}
    return StepContext(nets, optimizers, owners, metrics, hyper, spec, state, noise, device, joint)


class Trainer:
    """One variant's run: state, the epoch loop, checkpoints. Callbacks observe it."""

    def __init__(
        self,
        setup: RunSetup,
        spec: RunSpec,
        out_dir: Path,
        device: torch.device,
        callbacks: Sequence[TrainCallback] = (),
        curves_path: Path | None = None,
        progress: bool = True,
        quality_path: Path | None = None,
        indices: torch.Tensor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``setup``: what the run reads from the params (:func:`~pipeline.training.setup.
        run_setup`, called at the stage's edge). ``indices``: int64 rows of the training set to
        train on (tuning leaves its held-out reference out, pipeline.stages.tune.holdout); None:
        all of it. Not part of the run's
        identity: only tuning's throw-away scratch runs pass it. ``clock``: the seconds that
        ``train.checkpoint_every_s`` counts (tests pass a fake one)."""
        self.setup, self.spec, self.out_dir, self.device = setup, spec, out_dir, device
        self.clock = clock
        self.indices = indices
        self.callbacks = list(callbacks)
        self.curves_path = curves_path
        self.quality_path = quality_path
        self.progress = progress
        self.variant = registry.get(spec.variant)
        self.algorithm = self.variant.algorithm
        self.cfg = setup.train
        self.folder = RunFolder(out_dir, spec.as_dict(), spec.variant)
        div = setup.train.divergence
        self.divergence = DivergenceMonitor(div.enabled, div.max_loss, div.zero_grad_windows)
        self.quality = QualityCurve(setup.curve, self.variant, spec, device)

    # ---------------------------------------------------------------- state
    def _fresh_state(self) -> None:
        alg, hyper, dev = self.algorithm, self.spec.hyper, self.device
        self.nets = build_nets(self.variant, self.spec, dev)
        if self.cfg.fast:
            # Conv nets run faster in NHWC (oneDNN on the CPU, tensor cores on CUDA); a no-op
            # for MLPs. cudnn.benchmark picks the fastest conv algorithm for our fixed shapes.
            for name, net in self.nets.items():
                self.nets[name] = net.to(memory_format=torch.channels_last)
            if dev.type == "cuda" and not self.cfg.deterministic:
                torch.backends.cudnn.benchmark = True
            alg.prepare_fast(self.nets, detach_slopes=self.cfg.detach_slopes)
        owners = alg.owners()
        self.ctx = step_context(
            alg, alg.metric_names(self.variant), hyper, net_spec(self.variant, self.spec),
            self.nets, dev, self.cfg.fast, self.spec.seed + 1,
        )  # fmt: skip
        self.optimizers, self.state, self.noise_gen = (
            self.ctx.optimizers,
            self.ctx.state,
            self.ctx.noise,
        )
        self.data_gen = torch.Generator().manual_seed(self.spec.seed + 2)
        self.schedule = alg.schedule(hyper)
        sampler_opts = {o for o, owned in owners.items() if alg.sampler in owned}
        self._sampler_opts = sorted(sampler_opts)  # whose gradient norm the divergence check reads
        # Steps that step a non-critic optimiser: generator iterations (WGAN papers' unit),
        # counted as pipeline.training.budget counts them (DDPM's model steps count too).
        self._g_kinds = kinds(alg)[0]
        self.columns = curve_columns(self.ctx.metrics, self.ctx.norm_names, self.quality.columns())
        self._step_graphs: StepGraphs | None = None
        # How this run stepped: "eager", or with train.cuda_graphs "captured" (CUDA graphs)
        # or "static" (the same static-buffer step without capture, off CUDA).
        self.step_mode = "eager"
        self.epoch, self.step, self.g_iters, self.train_time = 0, 0, 0, 0.0
        self.history: list[dict[str, float]] = []
        self.complete = False
        self.trained_on = str(dev)

    @property
    def sampler(self) -> nn.Module:
        return self.nets[self.algorithm.sampler]

    def _load_state(self, state: dict[str, Any]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        self.trained_on = state["device"]
        self.epoch, self.step = state["epoch"], state["step"]
        self.g_iters = state["g_iters"]
        self.train_time = state["train_time_s"]
        self.history = list(state["history"])
        self.complete = state["complete"]
        if self.complete:  # only the weights matter now; RNG states are device-specific
            return
        if torch.device(state["device"]).type != self.device.type:
            # A CUDA generator state (Philox) cannot seed a CPU generator and vice versa.
            raise ResumeRefusedError(
                f"{self.checkpoint_path}: an unfinished run started on {state['device']} cannot "
                f"resume exactly on {self.device}; resume it there (--device), or delete "
                f"{self.out_dir} to start over"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        with torch.no_grad():
            for name, tensor in self.state.items():
                tensor.copy_(state["state"][name])
        self.noise_gen.set_state(state["rng"]["noise"])
        self.data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])

    def _state(self) -> dict[str, Any]:
        return {
            "variant": self.spec.variant,
            "config": json.dumps(self.spec.as_dict(), sort_keys=True),
            "epoch": self.epoch,
            "step": self.step,
            "g_iters": self.g_iters,
            "complete": self.complete,
            "device": self.trained_on,
            "train_time_s": self.train_time,
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {n: portable(o.state_dict()) for n, o in self.optimizers.items()},
            "state": {name: t.detach().clone() for name, t in self.state.items()},
            "rng": {
                "noise": self.noise_gen.get_state(),
                "data": self.data_gen.get_state(),
                "torch": torch.get_rng_state(),
            },
            "history": self.history,
        }

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint_path

    def restore_or_start(self) -> list[str]:
        """Fresh state, then the checkpoint's when it belongs to this config (see
        :meth:`RunFolder.resolve`). Returns the config differences of a finished run that
        must be set aside before training (empty when there is none)."""
        self._fresh_state()
        state, stale = self.folder.resolve()
        if state is not None:
            self._load_state(state)
            if not self.complete and self.progress:
                print(
                    f"{self.spec.variant}: resuming from epoch {self.epoch} "
                    f"({self.checkpoint_path})",
                    file=sys.stderr,
                )
        return stale

    # ---------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        """Train to the end (or resume), holding the run folder's lock (one trainer per
        folder); TF32 and determinism as train.tf32/deterministic."""
        with folder_lock(self.out_dir, "trainer"), numerics(self.cfg.tf32, self.cfg.deterministic):
            # A kill between writing a temp file and renaming it left it behind: ours now.
            remove_stale_temps(self.out_dir)
            for path in (self.curves_path, self.quality_path):
                if path is not None:
                    remove_stale_temps(path.parent, path.name)
            return self._run()

    def _run(self) -> TrainResult:
        stale = self.restore_or_start()
        if self.complete:  # finished earlier with this very config: nothing to train
            write_json(self.out_dir / "config.json", self.spec.as_dict())
            result = self._finish()
            for cb in self.callbacks:
                cb.on_already_complete(result)
            return result
        # Everything that can refuse the run (missing data, a subset below the batch size)
        # runs before the output folder changes: a failed command leaves it as it was.
        data = self._load_data()
        self.folder.prepare(stale)
        write_json(self.out_dir / "config.json", self.spec.as_dict())
        for cb in self.callbacks:
            cb.on_start(self.spec, self.out_dir, self.epoch)
        try:
            self._train_epochs(*data)
            result = self._finish()
            for cb in self.callbacks:
                cb.on_end(result)
        except BaseException as exc:
            for cb in self.callbacks:
                cb.on_failure(exc)
            raise
        finally:
            # The graphs' step closure refers to this trainer: free their memory pools now,
            # not whenever the cyclic GC runs (one Trainer per Optuna trial adds up).
            self._step_graphs = None
        return result

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_split(self.setup.data, "train")
        if self.indices is not None:
            images, labels = images[self.indices], labels[self.indices]
        if self.spec.subset is not None:
            images, labels = images[: self.spec.subset], labels[: self.spec.subset]
        if len(labels) < self.spec.batch_size:
            raise PipelineError(
                f"train.subset={len(labels)} is smaller than train.batch_size={self.spec.batch_size}"
            )
        return to_model_range(images).to(self.device), labels.to(self.device)

    def _train_epochs(self, x_all: torch.Tensor, y_all: torch.Tensor) -> None:
        from tqdm.auto import tqdm

        n, bs = len(y_all), self.spec.batch_size
        steps_per_epoch = n // bs  # drop_last, as the classic DataLoader loop
        epochs = self.spec.hyper.epochs
        grid_z, grid_y = grid_inputs(
            self.algorithm, net_spec(self.variant, self.spec), self.variant.conditional,
            self.device,
        )  # fmt: skip
        if self.progress:
            self._say_start(epochs, steps_per_epoch)
        bar = tqdm(
            total=epochs * steps_per_epoch, initial=self.step, unit="step",
            disable=not self.progress, desc=self.spec.variant,
            mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True,
        )  # fmt: skip
        start_epoch = self.epoch
        # The checkpoint just loaded (or the fresh start) begins the checkpoint interval.
        plan = WritePlan(self.cfg, epochs, self.clock)
        self.quality.start()
        try:
            while self.epoch < epochs:
                t0 = time.perf_counter()
                bar.set_description(f"{self.spec.variant} epoch {self.epoch + 1}/{epochs}")
                metrics = self._epoch(x_all, y_all, steps_per_epoch, bar)
                self.epoch += 1
                elapsed = time.perf_counter() - t0
                self.train_time += elapsed
                metrics.update(
                    epoch=self.epoch, step=self.step, g_iters=self.g_iters,
                    steps_per_s=steps_per_epoch / elapsed, elapsed_s=self.train_time,
                )  # fmt: skip
                if self.quality.due(self.epoch, self.epoch == epochs):
                    metrics.update(self.quality.score(self.nets))  # not in elapsed_s
                self.history.append(metrics)
                if self.progress and self.epoch == start_epoch + 1:
                    self._say_eta(epochs, steps_per_epoch, elapsed)
                grid = self._grid(grid_z, grid_y) if plan.grid_due(self.epoch) else None
                last = self.epoch == epochs
                self.complete = last
                self._write_curves()
                event = EpochEnd(self.epoch, self.step, metrics, grid, self.sampler, self.spec,
                                 self.device, self.nets)  # fmt: skip
                # Observers first, checkpoint second: a kill in between repeats this epoch
                # on resume (logged twice, same values) instead of never logging it.
                for cb in self.callbacks:
                    cb.on_epoch_end(event)
                if plan.checkpoint_due(self.epoch):
                    ckpt.save(self.checkpoint_path, self._state())
                    plan.saved()
        finally:
            bar.close()

    def _write_curves(self) -> None:
        if self.curves_path is not None:
            write_curves(self.curves_path, self.history, self.columns)
        if self.quality_path is not None:
            write_quality(self.quality_path, self.history)

    def _say_start(self, epochs: int, steps_per_epoch: int) -> None:
        """The stage's first line: device, budget, and where it starts from."""
        total = epochs * steps_per_epoch
        start = f"from epoch {self.epoch}" if self.epoch else "from scratch"
        print(
            f"{self.spec.variant}: training on {self.device} ({self.device_name()}), "
            f"{epochs} epochs x {steps_per_epoch:,} steps = {total:,} steps, {start}; "
            "time left follows the first epoch",
            file=sys.stderr,
        )

    def _say_eta(self, epochs: int, steps_per_epoch: int, elapsed: float) -> None:
        """After this process's first epoch: the measured speed and the time left at it (the
        first epoch includes warm-up, so this errs long, not short)."""
        from tqdm.auto import tqdm

        from pipeline.infra.units import duration

        rate = steps_per_epoch / elapsed if elapsed > 0 else float("inf")
        left = (epochs - self.epoch) * steps_per_epoch
        tqdm.write(
            f"{self.spec.variant}: {rate:,.1f} steps/s on {self.device}; {left:,} steps left, "
            f"about {duration(left / rate) or '0 s'}",
            file=sys.stderr,
        )

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"{torch.get_num_threads()} CPU threads"

    def _grid(self, z: torch.Tensor, labels: torch.Tensor | None) -> Path:
        images = render_grid(self.algorithm, self.nets, z, labels)
        path = self.out_dir / "grids" / f"epoch_{self.epoch:04d}.png"
        save_grid(images, path)
        return path

    def _epoch(
        self, x_all: torch.Tensor, y_all: torch.Tensor, steps: int, bar: Any
    ) -> dict[str, float]:
        bs, dev, ctx = self.spec.batch_size, self.device, self.ctx
        conditional, fast = self.variant.conditional, self.cfg.fast
        perm = torch.randperm(len(y_all), generator=self.data_gen).to(dev)
        if fast:
            # One gather per epoch; each batch is then a view (no per-step indexing kernel).
            x_epoch = x_all.index_select(0, perm)
            y_epoch = y_all.index_select(0, perm) if conditional else None
        graphs = self._graphs(x_all, y_all)
        ctx.reset()
        ctx.pending.clear()
        for net in self.nets.values():
            net.train()
        for i in range(steps):
            if fast:
                real = x_epoch[i * bs : (i + 1) * bs]
                labels = y_epoch[i * bs : (i + 1) * bs] if y_epoch is not None else None
            else:  # the classic way: gather each batch, read the losses every step
                idx = perm[i * bs : (i + 1) * bs]
                real, labels = x_all[idx], (y_all[idx] if conditional else None)
            kind = self.schedule[self.step % len(self.schedule)]
            measure = not fast or (self.step + 1) % self.cfg.log_every == 0 or i == steps - 1
            if graphs is not None:  # the graphs measure every step, on the device
                graphs(real, labels, kind)
            else:
                # An optimiser that does not step now measures its gradient when it next does.
                if measure:
                    ctx.pending.update(self.optimizers)
                ctx.real, ctx.labels = real, labels
                self.algorithm.step(ctx, kind)
            self.step += 1
            self.g_iters += kind in self._g_kinds
            bar.update(1)
            if measure and i < steps - 1:  # the last step is read once, below
                self._check_and_show(bar)
        out = self._check_and_show(bar)
        out.update(ctx.read_norms())
        return out

    def _graphs(self, x_all: torch.Tensor, y_all: torch.Tensor) -> StepGraphs | None:
        """The step as CUDA graphs (``train.cuda_graphs`` with the fast path), built once.

        A capture that fails stops the run with one line: a failed capture can leave the
        noise generator, the current stream and the allocator in states that eager steps
        cannot safely continue from (torch's own CUDAGraph::reset says as much), and the last
        checkpoint is intact, so rerunning with ``train.cuda_graphs: false`` resumes it.
        """
        if not (self.cfg.fast and self.cfg.cuda_graphs):
            return None
        if self._step_graphs is None:
            bs, ctx = self.spec.batch_size, self.ctx

            def step(real: torch.Tensor, labels: torch.Tensor | None, kind: str) -> None:
                ctx.pending.update(self.optimizers)
                ctx.real, ctx.labels = real, labels
                self.algorithm.step(ctx, kind)

            try:
                self._step_graphs = StepGraphs(
                    step,
                    x_all[:bs],
                    y_all[:bs] if self.variant.conditional else None,
                    list(dict.fromkeys(self.schedule)),
                    modules=list(self.nets.values()),
                    optimizers=list(self.optimizers.values()),
                    noise=self.noise_gen,
                    state=list(self.state.values()),
                )
                self.step_mode = "captured" if self._step_graphs.capture else "static"
            except RuntimeError as exc:
                raise GraphCaptureError(
                    f"{self.spec.variant}: CUDA graph capture failed ({first_line(exc)[:200]}); "
                    "rerun with train.cuda_graphs: false (it resumes from the last checkpoint)"
                ) from exc
        return self._step_graphs

    def _check_and_show(self, bar: Any) -> dict[str, float]:
        """Read the device accumulators (one host sync), stop on NaN/inf, update the bar."""
        means = self.ctx.read()
        for key in self.algorithm.losses:
            value = means.get(key)
            # NaN is also what a metric not logged yet reads as: only a logged one counts.
            if value is not None and not _finite(value) and self.ctx.last_counts.get(key):
                raise NonFiniteLossError(
                    f"{self.spec.variant}: non-finite {key} at epoch {self.epoch + 1}, step "
                    f"{self.step}; the run diverged (try a lower learning rate)"
                )
        # Finite divergence (train.divergence): the logged losses and the sampler's gradient.
        logged = {k: means[k] for k in self.algorithm.losses if self.ctx.last_counts.get(k)}
        norms = self.ctx.read_norms()
        sampler_norm = [norms[k] for o in self._sampler_opts if (k := f"grad_norm_{o}") in norms]
        self.divergence.check(
            f"{self.spec.variant} epoch {self.epoch + 1}, step {self.step}",
            logged,
            sampler_norm[0] if sampler_norm else None,
        )
        shown = {k: f"{means[k]:.3f}" for k in self.ctx.metrics[:3] if _finite(means[k])}
        bar.set_postfix(shown, refresh=False)
        return means

    def _finish(self) -> TrainResult:
        # Deterministic from the final weights: a rerun after a kill here writes them again.
        write_figures(
            self.algorithm, self.nets, net_spec(self.variant, self.spec), self.device,
            self.out_dir / FIGURES_DIR,
        )  # fmt: skip
        grids = gif_frames(
            (self.out_dir / "grids").glob("epoch_*.png"), self.spec.hyper.epochs,
            self.cfg.gif_frames,
        )  # fmt: skip
        if grids:
            shutil.copyfile(grids[-1], self.out_dir / "grid.png")
            make_gif(grids, self.out_dir / "progress.gif")
        self._write_curves()
        steps_per_s = self.step / self.train_time if self.train_time else 0.0
        counts = updates(self.algorithm, self.spec.hyper, self.step)
        return TrainResult(
            variant=self.spec.variant, epochs=self.epoch, steps=self.step,
            train_time_s=self.train_time, steps_per_s=steps_per_s,
            checkpoint=self.checkpoint_path, out_dir=self.out_dir, device=self.trained_on,
            history=self.history, g_iters=self.g_iters, d_iters=counts.d_updates,
            images_seen=self.step * self.spec.batch_size,
        )  # fmt: skip


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
