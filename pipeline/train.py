"""The one training loop for every variant.

The loop reads the variant's declaration (nets, objective, optional penalty and after-D-step
hook, n_critic, optimiser) and never branches on its name. Fast-path choices, all numerically
float32-equivalent to the classic loop:

* the whole training set lives on the device as one float tensor, shuffled once per epoch
  by a seeded generator (no DataLoader, no per-batch host->device copies);
* metrics accumulate on the device and are read once per ``log_every`` steps (no per-step
  ``.item()`` host synchronisation);
* fused optimiser kernels where the optimiser has them (Adam), foreach otherwise;
* channels-last memory format for the conv nets (DCGAN) and cudnn.benchmark on CUDA;
* the discriminator's parameters are frozen during the generator step, so its weight
  gradients are not computed for nothing;
* a discriminator that treats samples independently (``nets.couples_batch`` is False: no
  batch norm, dropout or per-call state) scores the real and the fake batch in one forward
  pass of twice the rows: float32-equivalent results (a larger matrix product may round
  differently in the last bit). A batch-norm discriminator keeps two passes, because its
  batch statistics are part of the algorithm;
* with a gradient penalty, the critic's LeakyReLUs take their slope out of the graph, so
  the penalty's double backward skips a pass that only multiplies zeros (same gradients,
  bit for bit; see ``nets.DetachedSlopeLeakyReLU``);
* with ``train.cuda_graphs``, each kind of step is replayed as a CUDA graph
  (``pipeline.graphs``).

Every random draw comes from explicit generators saved in the checkpoint, so a run killed
and resumed ends with exactly the same weights as an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from pipeline import checkpoint as ckpt
from pipeline.config import Params, to_plain
from pipeline.data import IMG_SHAPE, N_CLASSES, load_split, to_model_range
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError, first_line
from pipeline.graphs import StepGraphs
from pipeline.io import atomic_path, write_json
from pipeline.layout import RUN_ID_FILE, curves_path, read_run_id, variant_dir  # noqa: F401
from pipeline.losses import LOSSES
from pipeline.nets import NetSpec, couples_batch, detach_activation_slopes
from pipeline.variants import Hyper, Variant, known, registry

GRID_SEED = 20_250_101  # fixed noise for grids: identical across unconditional variants
GRID_ROWS = 10
CURVE_COLUMNS = [
    "epoch", "step", "d_loss", "g_loss", "d_real", "d_fake", "wasserstein", "gp",
    "grad_norm_d", "grad_norm_g", "steps_per_s", "elapsed_s",
]  # fmt: skip
# Accumulator slots (device tensor): sums over critic steps, then over generator steps.
_D_SLOTS = ["d_loss", "d_real", "d_fake", "wasserstein", "gp"]
_G_SLOTS = ["g_loss"]


class NonFiniteLossError(PipelineError):
    """A loss became NaN/inf; the run stops (tuning prunes the trial)."""


class ResumeRefusedError(PipelineError):
    pass


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run's result (the identity checked on resume)."""

    variant: str
    hyper: Hyper
    seed: int
    batch_size: int
    z_dim: int
    subset: int | None
    fast: bool = True  # fast and classic paths round differently (and lay out Adam state)
    code: str = ""  # hash of the source that defines the training math (see code_hash)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hyper"]["betas"] = list(self.hyper.betas)
        return d


@dataclass
class EpochEnd:
    """What callbacks see after each epoch."""

    epoch: int
    step: int
    metrics: dict[str, float]
    grid: Path | None
    generator: nn.Module
    spec: RunSpec
    device: torch.device


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


PACKAGE = Path(__file__).resolve().parent
_CODE_FILES = ("train.py", "graphs.py", "nets.py", "losses.py", "data.py", "variants/base.py")


def code_hash(variant: str) -> str:
    """sha256 prefix of the sources that define a run's math (the trainer, nets, losses, data
    scaling, the variant's file). Part of the run identity: with ``persist: true`` in dvc.yaml
    a code change must retrain, not reuse the old checkpoint."""
    h = hashlib.sha256()
    for rel in (*_CODE_FILES, f"variants/{variant}.py"):
        path = PACKAGE / rel
        if path.is_file():  # a variant registered from elsewhere (tests) has no file here
            h.update(rel.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def run_spec(
    params: Params,
    name: str,
    *,
    epochs: int | None = None,
    subset: int | None = None,
    hyper: Hyper | None = None,
) -> RunSpec:
    variant = known(name)
    if hyper is None:
        hyper = variant.resolve(params.variants.get(name))
    if epochs is not None:
        hyper = Hyper(**{**asdict(hyper), "epochs": epochs})
    return RunSpec(
        variant=name,
        hyper=hyper,
        seed=params.train.seed,
        batch_size=params.train.batch_size,
        z_dim=params.train.z_dim,
        subset=subset if subset is not None else params.train.subset,
        fast=params.train.fast,
        code=code_hash(name),
    )


def build_models(
    variant: Variant, spec: RunSpec, device: torch.device
) -> tuple[nn.Module, nn.Module]:
    """Seeded construction of (generator, discriminator) on ``device``."""
    net_spec = NetSpec(spec.z_dim, IMG_SHAPE, N_CLASSES if variant.conditional else 0)
    torch.manual_seed(spec.seed)
    g, d = variant.generator(net_spec), variant.discriminator(net_spec)
    if variant.init is not None:
        variant.init(g)
        variant.init(d)
    return g.to(device), d.to(device)


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
}


def optimizer_options(name: str, device_type: str, fast: bool) -> dict[str, Any]:
    """Implementation flags: fused kernels where the optimiser has them (Adam does, on CUDA
    and CPU; RMSprop does not), foreach otherwise; the per-parameter for-loop when ``fast``
    is off. Same update rule either way (float32; rounding may differ in the last bits)."""
    if not fast:
        return {"foreach": False}
    if device_type in ("cuda", "cpu") and "fused" in inspect.signature(OPTIMIZERS[name]).parameters:
        return {"fused": True}
    return {"foreach": True}


def make_optimizer(
    hyper: Hyper, module: nn.Module, device: torch.device, fast: bool
) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {
        "lr": hyper.lr,
        **optimizer_options(hyper.optimizer, device.type, fast),
    }
    if hyper.optimizer == "adam":
        kwargs["betas"] = tuple(hyper.betas)
    return OPTIMIZERS[hyper.optimizer](module.parameters(), **kwargs)


def _portable(opt_state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state dict without the ``capturable`` flag that CUDA graphs set (it is
    not part of the algorithm; an eager resume should not inherit the slower code path)."""
    for group in opt_state["param_groups"]:  # state_dict() copies the group dicts
        if group.get("capturable"):
            group["capturable"] = False
    return opt_state


def _twice(labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else torch.cat([labels, labels])


def grid_inputs(
    spec: RunSpec, conditional: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fixed noise [100, z_dim] (same for all variants) and, if conditional, labels 0..9 by row."""
    g = torch.Generator().manual_seed(GRID_SEED)
    z = torch.randn(GRID_ROWS * GRID_ROWS, spec.z_dim, generator=g).to(device)
    labels = None
    if conditional:
        labels = torch.arange(N_CLASSES).repeat_interleave(GRID_ROWS).to(device)
    return z, labels


def save_grid(images: torch.Tensor, path: Path) -> None:
    """images: float [N, C, H, W] in [-1, 1] -> one PNG, 10 per row."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(
            images,
            tmp,
            format="png",
            nrow=GRID_ROWS,
            normalize=True,
            value_range=(-1, 1),
            padding=2,
        )


def grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters(), torch.empty(0)).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def write_curves(path: Path, history: Sequence[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                        for k, v in row.items()})  # fmt: skip


def make_gif(grids: Sequence[Path], path: Path, ms_per_frame: int = 200) -> None:
    from PIL import Image

    if not grids:
        return
    frames = [Image.open(p).convert("P") for p in grids]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=ms_per_frame, loop=0)  # fmt: skip


class Trainer:
    """One variant's run: state, the epoch loop, checkpoints. Callbacks observe it."""

    def __init__(
        self,
        params: Params,
        spec: RunSpec,
        out_dir: Path,
        device: torch.device,
        callbacks: Sequence[TrainCallback] = (),
        curves_path: Path | None = None,
        progress: bool = True,
    ) -> None:
        self.params, self.spec, self.out_dir, self.device = params, spec, out_dir, device
        self.callbacks = list(callbacks)
        self.curves_path = curves_path
        self.progress = progress
        self.variant = registry.get(spec.variant)
        self.objective = LOSSES[self.variant.objective]
        self.cfg = params.train

    # ---------------------------------------------------------------- state
    def _fresh_state(self) -> None:
        self.g, self.d = build_models(self.variant, self.spec, self.device)
        if self.cfg.fast:
            # Conv nets run faster in NHWC (oneDNN on the CPU, tensor cores on CUDA); a no-op
            # for MLPs. cudnn.benchmark picks the fastest conv algorithm for our fixed shapes.
            self.g = self.g.to(memory_format=torch.channels_last)
            self.d = self.d.to(memory_format=torch.channels_last)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            if self.variant.penalty is not None:
                detach_activation_slopes(self.d)
        self.opt_g = make_optimizer(self.spec.hyper, self.g, self.device, self.cfg.fast)
        self.opt_d = make_optimizer(self.spec.hyper, self.d, self.device, self.cfg.fast)
        self._joint_d = self.cfg.fast and not couples_batch(self.d)
        self._step_graphs: StepGraphs | None = None
        # How this run stepped: "eager", or with train.cuda_graphs "captured" (CUDA graphs)
        # or "static" (the same static-buffer step without capture, off CUDA).
        self.step_mode = "eager"
        dev = self.device
        self._acc_d = torch.zeros(len(_D_SLOTS), device=dev)  # sums over critic steps
        self._acc_g = torch.zeros(len(_G_SLOTS), device=dev)  # sums over generator steps
        self._norms = torch.full((2,), math.nan, device=dev)  # last D, G gradient norms
        self._zero = torch.zeros((), device=dev)
        self._nan = torch.full((), math.nan, device=dev)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(self.spec.seed + 1)
        self.data_gen = torch.Generator().manual_seed(self.spec.seed + 2)
        self.epoch, self.step, self.train_time = 0, 0, 0.0
        self.history: list[dict[str, float]] = []
        self.complete = False
        self.trained_on = str(self.device)

    def _load_state(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        self.trained_on = state["device"]
        self.epoch, self.step = state["epoch"], state["step"]
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
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.noise_gen.set_state(state["rng"]["noise"])
        self.data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])

    def _state(self) -> dict[str, Any]:
        return {
            "variant": self.spec.variant,
            "config": json.dumps(self.spec.as_dict(), sort_keys=True),
            "epoch": self.epoch,
            "step": self.step,
            "complete": self.complete,
            "device": self.trained_on,
            "train_time_s": self.train_time,
            "generator": self.g.state_dict(),
            "discriminator": self.d.state_dict(),
            "opt_g": _portable(self.opt_g.state_dict()),
            "opt_d": _portable(self.opt_d.state_dict()),
            "rng": {
                "noise": self.noise_gen.get_state(),
                "data": self.data_gen.get_state(),
                "torch": torch.get_rng_state(),
            },
            "history": self.history,
        }

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / ckpt.CHECKPOINT

    @property
    def previous_dir(self) -> Path:
        """Where a finished run with another config is kept, one step back."""
        return self.out_dir.with_name(self.out_dir.name + ".previous")

    def restore_or_start(self) -> list[str]:
        """Resume from the checkpoint in ``out_dir`` when it belongs to this config.

        Returns the config differences of a finished run that must be set aside first (empty
        when there is none); nothing is moved here, so a run that then fails its checks leaves
        the finished run where it was. A finished run with another config is stale output
        (e.g. params changed before ``dvc repro``): start over, unless ``<out_dir>.previous``
        holds a finished run of this very config, which is swapped back in. An unfinished run
        with another config is refused.
        """
        self._fresh_state()
        path = self.checkpoint_path
        try:
            state = ckpt.load(path, map_location="cpu") if path.exists() else None
        except ckpt.CheckpointError as err:
            raise ckpt.CheckpointError(f"{err}; delete {self.out_dir} to start over") from None
        diff = [] if state is None else self._config_diff(state)
        if diff and not state["complete"]:
            raise ResumeRefusedError(
                f"{path} holds an unfinished run with a different config ({'; '.join(diff)}); "
                f"refusing to resume. Restore the old params, or delete {self.out_dir} to start over"
            )
        if state is None or diff:
            previous = self._matching_previous()
            if previous is not None:
                self._swap_previous(had_run=state is not None)
                state = previous
                diff = []
        if state is None:
            return []
        if diff:
            return diff
        self._load_state(state)
        if not self.complete and self.progress:
            print(
                f"{self.spec.variant}: resuming from epoch {self.epoch} ({path})", file=sys.stderr
            )
        return []

    def _matching_previous(self) -> dict[str, Any] | None:
        """The state in ``<out_dir>.previous`` if it is a finished run of this config."""
        path = self.previous_dir / ckpt.CHECKPOINT
        if not path.is_file():
            return None
        try:
            state = ckpt.load(path, map_location="cpu")
        except ckpt.CheckpointError:
            return None  # unreadable: it stays where it is, a fresh run replaces it later
        return state if state["complete"] and not self._config_diff(state) else None

    def _config_diff(self, state: dict[str, Any]) -> list[str]:
        """How the run in ``state`` differs from this one's spec (``key: old -> new``)."""
        return ckpt.config_diff(ckpt.config_of(state), self.spec.as_dict())

    def _swap_previous(self, had_run: bool) -> None:
        """Bring the matching finished run back; the current finished run (if any) takes its
        place one step back, so switching between two configs retrains neither."""
        previous = self.previous_dir
        if had_run:
            parked = self.out_dir.with_name(self.out_dir.name + ".swap")
            shutil.rmtree(parked, ignore_errors=True)
            self.out_dir.rename(parked)
            previous.rename(self.out_dir)
            parked.rename(previous)
        else:
            # Leftovers of a run killed before its first checkpoint: nothing to keep.
            shutil.rmtree(self.out_dir, ignore_errors=True)
            previous.rename(self.out_dir)
        print(
            f"{self.spec.variant}: the finished run with this config was in {previous}; "
            f"restored it" + (f" (the other run is now in {previous})" if had_run else ""),
            file=sys.stderr,
        )

    def _set_aside(self, diff: list[str]) -> None:
        """Keep the finished run one step back (a one-off --epochs/--subset must not destroy
        a long run): ``<out_dir>.previous``, replacing an older one."""
        previous = self.previous_dir
        shutil.rmtree(previous, ignore_errors=True)
        self.out_dir.rename(previous)
        print(
            f"{self.spec.variant}: config changed ({'; '.join(diff)[:200]}); starting over, "
            f"the finished run is kept in {previous}",
            file=sys.stderr,
        )

    # ---------------------------------------------------------------- loop
    def run(self) -> TrainResult:
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
        if stale:
            self._set_aside(stale)
        elif not self.checkpoint_path.exists() and self.out_dir.exists():
            # Leftovers of a run killed before its first checkpoint (grids, an MLflow run id)
            # may belong to another config: start clean.
            shutil.rmtree(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
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
        images, labels = load_split(self.params, "train")
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
        hyper = self.spec.hyper
        total = hyper.epochs * steps_per_epoch
        grid_z, grid_y = grid_inputs(self.spec, self.variant.conditional, self.device)
        bar = tqdm(
            total=total, initial=self.step, unit="step", disable=not self.progress,
            desc=self.spec.variant, mininterval=0.5 if sys.stderr.isatty() else 10.0,
            dynamic_ncols=True,
        )  # fmt: skip
        try:
            while self.epoch < hyper.epochs:
                t0 = time.perf_counter()
                bar.set_description(f"{self.spec.variant} epoch {self.epoch + 1}/{hyper.epochs}")
                metrics = self._epoch(x_all, y_all, steps_per_epoch, bar)
                self.epoch += 1
                elapsed = time.perf_counter() - t0
                self.train_time += elapsed
                metrics.update(
                    epoch=self.epoch, step=self.step, steps_per_s=steps_per_epoch / elapsed,
                    elapsed_s=self.train_time,
                )  # fmt: skip
                self.history.append(metrics)
                grid = self._grid(grid_z, grid_y)
                last = self.epoch == hyper.epochs
                self.complete = last
                if self.curves_path is not None:
                    write_curves(self.curves_path, self.history)
                event = EpochEnd(
                    self.epoch, self.step, metrics, grid, self.g, self.spec, self.device
                )
                # Observers first, checkpoint second: a kill in between repeats this epoch
                # on resume (logged twice, same values) instead of never logging it.
                for cb in self.callbacks:
                    cb.on_epoch_end(event)
                if last or self.epoch % self.cfg.checkpoint_every == 0:
                    ckpt.save(self.checkpoint_path, self._state())
        finally:
            bar.close()

    def _grid(self, z: torch.Tensor, labels: torch.Tensor | None) -> Path | None:
        if self.epoch % self.cfg.grid_every and self.epoch != self.spec.hyper.epochs:
            return None
        self.g.eval()
        with torch.no_grad():
            images = self.g(z, labels)
        self.g.train()
        path = self.out_dir / "grids" / f"epoch_{self.epoch:04d}.png"
        save_grid(images, path)
        return path

    def _epoch(
        self, x_all: torch.Tensor, y_all: torch.Tensor, steps: int, bar: Any
    ) -> dict[str, float]:
        v, hyper = self.variant, self.spec.hyper
        bs, dev = self.spec.batch_size, self.device
        conditional = v.conditional
        fast = self.cfg.fast
        perm = torch.randperm(len(y_all), generator=self.data_gen).to(dev)
        if fast:
            # One gather per epoch; each batch is then a view (no per-step indexing kernel).
            x_epoch = x_all.index_select(0, perm)
            y_epoch = y_all.index_select(0, perm) if conditional else None
        graphs = self._graphs(x_all, y_all)
        self._acc_d.zero_()
        self._acc_g.zero_()
        self._norms.fill_(math.nan)
        n_d = n_g = 0
        measure_g = False
        self.g.train()
        self.d.train()
        for i in range(steps):
            if fast:
                real = x_epoch[i * bs : (i + 1) * bs]
                labels = y_epoch[i * bs : (i + 1) * bs] if y_epoch is not None else None
            else:  # the classic way: gather each batch, read the losses every step
                idx = perm[i * bs : (i + 1) * bs]
                real, labels = x_all[idx], (y_all[idx] if conditional else None)
            g_step = (self.step + 1) % hyper.n_critic == 0
            measure = not fast or (self.step + 1) % self.cfg.log_every == 0 or i == steps - 1
            if graphs is not None:  # the graphs measure every step, on the device
                graphs(real, labels, g_step)
            else:
                # G steps only every n_critic steps: measure its gradient at the next one.
                measure_g = measure_g or measure
                self._step(real, labels, g_step, measure, measure_g and g_step)
                measure_g = measure_g and not g_step
            n_d += 1
            n_g += g_step
            self.step += 1
            bar.update(1)
            if measure and i < steps - 1:  # the last step is read once, below
                self._check_and_show(n_d, n_g, bar)

        out = self._check_and_show(n_d, n_g, bar)
        out.update(zip(("grad_norm_d", "grad_norm_g"), self._norms.tolist(), strict=True))
        if not v.penalty:
            out["gp"] = math.nan
        if self.objective.probabilistic:
            out["wasserstein"] = math.nan
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
            bs, v = self.spec.batch_size, self.variant
            kinds = [True] if self.spec.hyper.n_critic == 1 else [False, True]
            try:
                self._step_graphs = StepGraphs(
                    lambda real, labels, g_step: self._step(real, labels, g_step, True, g_step),
                    x_all[:bs],
                    y_all[:bs] if v.conditional else None,
                    kinds,
                    modules=[self.g, self.d],
                    optimizers=[self.opt_g, self.opt_d],
                    noise=self.noise_gen,
                )
                self.step_mode = "captured" if self._step_graphs.capture else "static"
            except RuntimeError as exc:
                raise PipelineError(
                    f"{self.spec.variant}: CUDA graph capture failed ({first_line(exc)[:200]}); "
                    "rerun with train.cuda_graphs: false (it resumes from the last checkpoint)"
                ) from exc
        return self._step_graphs

    def _step(
        self,
        real: torch.Tensor,
        labels: torch.Tensor | None,
        g_step: bool,
        measure_d: bool,
        measure_g: bool,
    ) -> None:
        """One critic update, then the generator's when ``g_step``. Device work only (no
        host reads), so it can be captured as a CUDA graph; losses and statistics add into
        ``_acc_d``/``_acc_g``, gradient norms land in ``_norms`` when asked for."""
        v, obj, hyper = self.variant, self.objective, self.spec.hyper
        g, d, opt_g, opt_d = self.g, self.d, self.opt_g, self.opt_d
        bs = real.shape[0]
        z = torch.randn(bs, self.spec.z_dim, device=self.device, generator=self.noise_gen)

        # Critic / discriminator step. G's graph is kept only when G steps next.
        with torch.set_grad_enabled(g_step):
            fake = g(z, labels)
        fake_d = fake.detach()
        if self._joint_d:
            both = d(torch.cat([real, fake_d]), _twice(labels))
            out_real, out_fake = both[:bs], both[bs:]
        else:
            out_real, out_fake = d(real, labels), d(fake_d, labels)
        loss_d = obj.d_loss(out_real, out_fake)
        gp = self._zero
        if v.penalty is not None:
            gp = v.penalty(d, real, fake_d, labels, generator=self.noise_gen)
            loss_d = loss_d + hyper.options.get("penalty_weight", 0.0) * gp
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if measure_d:
            self._norms[0].copy_(grad_norm(d))
        opt_d.step()
        if v.after_d_step is not None:
            v.after_d_step(d, hyper.options)
        with torch.no_grad():
            if obj.probabilistic:
                p_real, p_fake = torch.sigmoid(out_real).mean(), torch.sigmoid(out_fake).mean()
            else:
                p_real = p_fake = self._nan
            w_est = out_real.mean() - out_fake.mean()
            self._acc_d += torch.stack([loss_d.detach(), p_real, p_fake, w_est, gp.detach()])

        if g_step:
            d_params = list(d.parameters())
            for p in d_params:
                p.requires_grad_(False)
            try:
                loss_g = obj.g_loss(d(fake, labels))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                if measure_g:
                    self._norms[1].copy_(grad_norm(g))
                opt_g.step()
            finally:
                for p in d_params:
                    p.requires_grad_(True)
            with torch.no_grad():
                self._acc_g += loss_g.detach()

    def _check_and_show(self, n_d: int, n_g: int, bar: Any) -> dict[str, float]:
        """Read the device accumulators (one host sync), stop on NaN/inf, update the bar."""
        sums_d, sums_g = self._acc_d.tolist(), self._acc_g.tolist()
        means = {k: s / max(n_d, 1) for k, s in zip(_D_SLOTS, sums_d, strict=True)}
        means.update(
            {k: (s / n_g if n_g else math.nan) for k, s in zip(_G_SLOTS, sums_g, strict=True)}
        )
        for key in ("d_loss", "g_loss"):
            if math.isinf(means[key]) or (math.isnan(means[key]) and (key == "d_loss" or n_g)):
                raise NonFiniteLossError(
                    f"{self.spec.variant}: non-finite {key} at epoch {self.epoch + 1}, step "
                    f"{self.step}; the run diverged (try a lower learning rate)"
                )
        shown = {"D": f"{means['d_loss']:.3f}", "G": f"{means['g_loss']:.3f}"}
        if not self.objective.probabilistic:
            shown["W"] = f"{means['wasserstein']:.3f}"
        bar.set_postfix(shown, refresh=False)
        return means

    def _finish(self) -> TrainResult:
        grids = sorted((self.out_dir / "grids").glob("epoch_*.png"))
        if grids:
            shutil.copyfile(grids[-1], self.out_dir / "grid.png")
            make_gif(grids, self.out_dir / "progress.gif")
        if self.curves_path is not None:
            write_curves(self.curves_path, self.history)
        steps_per_s = self.step / self.train_time if self.train_time else 0.0
        result = TrainResult(
            variant=self.spec.variant, epochs=self.epoch, steps=self.step,
            train_time_s=self.train_time, steps_per_s=steps_per_s,
            checkpoint=self.checkpoint_path, out_dir=self.out_dir, device=self.trained_on,
            history=self.history,
        )  # fmt: skip
        return result


def write_summary(result: TrainResult, spec: RunSpec) -> None:
    write_json(
        result.out_dir / "summary.json",
        {
            "variant": result.variant,
            "epochs": result.epochs,
            "steps": result.steps,
            "train_time_s": round(result.train_time_s, 3),
            "steps_per_s": round(result.steps_per_s, 2),
            "device": result.device,
            "hyper": spec.as_dict()["hyper"],
            "run_id": read_run_id(result.out_dir),
        },
    )


def train_variant(
    params: Params,
    name: str,
    *,
    epochs: int | None = None,
    subset: int | None = None,
    device: str | None = None,
    track: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) one variant into ``models/<name>``, tracked in MLflow."""
    spec = run_spec(params, name, epochs=epochs, subset=subset)
    dev = resolve_device(device or params.train.device)
    out_dir = variant_dir(params, name)
    callbacks: list[TrainCallback] = []
    if track:
        from pipeline.tracking import TrainRecorder, setup

        setup(params)  # an unusable tracking store fails here, before the output folder changes
        callbacks.append(TrainRecorder(params, to_plain(params.train)))
    trainer = Trainer(
        params,
        spec,
        out_dir,
        dev,
        callbacks,
        curves_path=curves_path(params, name),
        progress=progress,
    )
    result = trainer.run()
    write_summary(result, spec)
    return result
