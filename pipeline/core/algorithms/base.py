"""The step protocol: what every family of generative models implements.

An :class:`Algorithm` says which nets it builds, which optimiser owns which nets, the static
kinds of step it takes (one CUDA graph each), the metrics it logs (the curve columns, the
MLflow keys and the report's panels), optional state tensors, how one step updates the nets,
and how the sampler turns a latent into images. The trainer owns the :class:`StepContext`,
which holds every fast path in one place: seeded noise from the run's generator, the joint
real+fake pass for nets that treat samples independently, freezing the nets an optimiser does
not own during its update, gradient norms, and device accumulators (no host reads in a step).
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from pipeline.core.nets import NetSpec

if TYPE_CHECKING:
    from pipeline.core.hyper import Hyper


class Declaration(Protocol):
    """What an algorithm's hooks read of the variant that declares it
    (:class:`~pipeline.core.variants.base.Variant` is one; the algorithms sit below it)."""

    @property
    def name(self) -> str: ...

    def default_options(self) -> dict[str, float]: ...


Outputs = torch.Tensor | tuple[torch.Tensor, ...]
"""What a scoring net returns: a tensor [B], or a tuple whose first element is [B]."""


@dataclass(frozen=True)
class Figure:
    """A grid of images [N, C, H, W] in [-1, 1], ``nrow`` per row, with its caption."""

    images: torch.Tensor
    nrow: int
    caption: str


class Algorithm(ABC):
    """One model family's training and sampling (stateless: state lives in the trainer)."""

    sampler: str = "generator"  # the net that maps latents to images
    # kind -> the optimisers that step in it; each kind is captured as one CUDA graph
    kinds: Mapping[str, tuple[str, ...]] = {}
    metrics: tuple[str, ...] = ()  # logged means per epoch: curve columns and MLflow keys
    losses: tuple[str, ...] = ()  # the metrics that must stay finite (NaN/inf stops a run)
    # The optimisers of critics/discriminators: their steps are the run's critic updates,
    # every other optimiser's the generator updates (a budget's units; none for VAE, DDPM).
    critics: tuple[str, ...] = ()

    @abstractmethod
    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        """Every net, built in a fixed order from the seeded global RNG."""

    def build_with(self, spec: NetSpec, options: Mapping[str, Any]) -> dict[str, nn.Module]:
        """Every net for the run's resolved options (a net width set in params, say); the
        trainer and sampling build through this. By default :meth:`build`."""
        return self.build(spec)

    @abstractmethod
    def owners(self) -> dict[str, tuple[str, ...]]:
        """optimiser name -> the nets whose parameters it updates (nets no optimiser owns,
        an EMA copy say, never get gradients)."""

    @abstractmethod
    def step(self, ctx: StepContext, kind: str) -> None:
        """One update on ``ctx.real``/``ctx.labels``: device work only (no host reads)."""

    def schedule(self, hyper: Hyper) -> tuple[str, ...]:
        """The kinds of step in order, repeated over training (step i takes entry i % len)."""
        return (next(iter(self.kinds)),)

    def check(self, variant: Declaration) -> None:  # noqa: B027 - optional hook
        """Refuse a declaration that cannot work (called when a variant is declared)."""

    def metric_names(self, variant: Declaration) -> tuple[str, ...]:
        """The metrics this variant logs (an option may switch one off)."""
        return self.metrics

    def initial_state(self, hyper: Hyper, device: torch.device) -> dict[str, torch.Tensor]:
        """State tensors (checkpointed, rolled back after graph warm-up, restored on resume)."""
        return {}

    def prepare_fast(  # noqa: B027 - optional hook
        self, nets: dict[str, nn.Module], *, detach_slopes: bool = True
    ) -> None:
        """Fast-path changes to the built nets that keep their numerics (train.fast);
        ``detach_slopes`` is train.detach_slopes (a per-device speed choice)."""

    def latent(self, n: int, spec: NetSpec, generator: torch.Generator) -> torch.Tensor:
        """The sampler's input for ``n`` images, drawn on the CPU from ``generator``."""
        return torch.randn(n, spec.z_dim, generator=generator)

    def generate(
        self,
        nets: Mapping[str, nn.Module],
        latent: torch.Tensor,
        labels: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images [n, C, H, W] in [-1, 1] from a latent (nets in eval mode, no grad)."""
        return nets[self.sampler](latent, labels)

    def figures(
        self, nets: Mapping[str, nn.Module], spec: NetSpec, device: torch.device
    ) -> dict[str, Figure]:
        """Pictures a model is known for beyond the sample grid (InfoGAN's code sweeps, say),
        rendered once training has finished: name -> Figure. Nets are in eval mode, no grad."""
        return {}

    def sampling_options(self, options: Mapping[str, float]) -> dict[str, Any]:
        """What of the resolved options sampling needs (recorded beside the scores)."""
        return {}


def grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of the gradients of ``params`` (zero when none has a gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class StepContext:
    """Everything a step reads and writes, owned by the trainer for the whole run.

    ``real`` [B, C, H, W] in [-1, 1] and ``labels`` (int64 [B] or None) are set before each
    step. Metrics go into device sums and counts (``log``); gradient norms into ``norms``.
    """

    def __init__(
        self,
        nets: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        owners: Mapping[str, tuple[str, ...]],
        metrics: Sequence[str],
        hyper: Hyper,
        spec: NetSpec,
        state: dict[str, torch.Tensor],
        noise: torch.Generator,
        device: torch.device,
        joint: Mapping[str, bool],
    ) -> None:
        self.nets, self.optimizers, self.hyper, self.spec = nets, optimizers, hyper, spec
        self.options = hyper.options
        self.state, self.noise, self.device = state, noise, device
        self.real: torch.Tensor = torch.empty(0)
        self.labels: torch.Tensor | None = None
        self._joint = dict(joint)
        self._params = {o: [p for n in nets_ for p in nets[n].parameters()]
                        for o, nets_ in owners.items()}  # fmt: skip
        # During an optimiser's update the nets it does not own are frozen (no weight
        # gradients computed for nothing); nets no optimiser owns never need gradients.
        owned = {n for nets_ in owners.values() for n in nets_}
        self._frozen = {
            o: [p for n in nets if n not in nets_ and n in owned for p in nets[n].parameters()]
            for o, nets_ in owners.items()
        }
        for n in nets:
            if n not in owned:
                nets[n].requires_grad_(False)
        self.metrics = list(metrics)
        self._slot = {m: i for i, m in enumerate(self.metrics)}
        self.sums = torch.zeros(len(self.metrics), device=device)
        self.counts = torch.zeros(len(self.metrics), device=device)
        self.norm_names = list(owners)
        self.norms = torch.full((len(self.norm_names),), math.nan, device=device)
        self._index: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_counts: dict[str, float] = {}  # of the last read(): how often each was logged
        self.pending: set[str] = set()  # optimisers whose next update measures its gradient
        self.zero = torch.zeros((), device=device)

    # ------------------------------------------------------------ randomness
    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, generator=self.noise)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=self.device, generator=self.noise)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(high, shape, device=self.device, generator=self.noise)

    # ------------------------------------------------------------ scoring
    def score_pair(
        self, net: str, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[Outputs, Outputs]:
        """``net`` on the real and the fake batch: one pass over both when the net treats
        samples independently (float32-equivalent), else two passes (batch norm)."""
        d = self.nets[net]
        if not self._joint.get(net, False):
            return d(real, labels), d(fake, labels)
        twice = None if labels is None else torch.cat([labels, labels])
        both = d(torch.cat([real, fake]), twice)
        bs = real.shape[0]
        if isinstance(both, tuple):
            return tuple(t[:bs] for t in both), tuple(t[bs:] for t in both)
        return both[:bs], both[bs:]

    # ------------------------------------------------------------ updates
    @contextlib.contextmanager
    def player(self, optimizer: str) -> Iterator[None]:
        """The forward passes of ``optimizer``'s update: other optimisers' nets are frozen."""
        frozen = self._frozen[optimizer]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def minimize(self, optimizer: str, loss: torch.Tensor) -> None:
        """Backward of ``loss`` and one step of ``optimizer`` (its gradient norm is measured
        when pending)."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimizer in self.pending:
            self.pending.discard(optimizer)
            self.norms[self.norm_names.index(optimizer)].copy_(grad_norm(self._params[optimizer]))
        opt.step()

    # ------------------------------------------------------------ metrics
    def log(self, **values: torch.Tensor) -> None:
        """Add scalar tensors to their metrics' sums (one kernel for all of them); the epoch
        mean of each is its sum over the steps that logged it."""
        names = tuple(values)
        index = self._index.get(names)
        if index is None:  # built once per call site, before any graph capture
            idx = torch.tensor([self._slot[n] for n in names], device=self.device)
            index = self._index[names] = (idx, torch.ones(len(names), device=self.device))
        with torch.no_grad():
            stacked = torch.stack([v.detach().reshape(()) for v in values.values()])
            self.sums.index_add_(0, index[0], stacked)
            self.counts.index_add_(0, index[0], index[1])

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()
        self.norms.fill_(math.nan)

    def read(self) -> dict[str, float]:
        """Epoch means so far (one host sync); NaN for a metric not logged yet."""
        sums, counts = self.sums.tolist(), self.counts.tolist()
        self.last_counts = dict(zip(self.metrics, counts, strict=True))
        return {
            m: (s / c if c else math.nan)
            for m, s, c in zip(self.metrics, sums, counts, strict=True)
        }

    def read_norms(self) -> dict[str, float]:
        return {
            f"grad_norm_{o}": v for o, v in zip(self.norm_names, self.norms.tolist(), strict=True)
        }
