"""DDPM (Ho et al. 2020): a small U-Net predicts the noise added at a random timestep.

Training: linear beta schedule from 1e-4 to 0.02 over T = 1000 steps, the simple loss
``|eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)|^2`` (mean over pixels), Adam
lr 2e-4. An exponential moving average of the weights (``ema``, decay an option, 0.9999 as
in the paper) is a net no optimiser owns: updated after every step, checkpointed like any
net, and the one that samples. Its decay warms up: update n (from 0) uses
min(decay, (1 + n) / (10 + n)) (the warm-up of TensorFlow's ExponentialMovingAverage with
num_updates), so the random initial weights are forgotten within the first few dozen steps;
with a flat 0.9999 they still weighed 0.9999^n, 15% after 20 epochs of 937 steps and 63%
after tuning's 5. n is a state tensor, checkpointed and restored, so a resumed run continues
the same schedule.

Sampling: the generalised DDIM update (Song et al. 2021) over ``sample_steps`` evenly spaced
timesteps, with ``eta`` scaling its noise. ``eta = 0`` is deterministic DDIM (the fast
default, 50 steps); ``eta = 1`` with ``sample_steps = 1000`` is exactly DDPM's ancestral
sampler (posterior mean and variance beta-tilde), drawing its noise from the generator
sample passes in. x0 predictions are clipped to [-1, 1] (Ho et al.'s sampler does too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import nn

from pipeline.core.algorithms import Algorithm, StepContext
from pipeline.core.hyper import Hyper
from pipeline.core.nets import NetSpec
from pipeline.core.variants._unet import UNet
from pipeline.core.variants.base import BASELINES, Options, Variant, registry

T = 1000
BETA_1, BETA_T = 1e-4, 0.02
EMA_UPDATES = "ema_updates"  # the state tensor counting EMA updates (the warm-up's n)


class DDPMOptions(Options):
    width: int = Field(64, ge=2, multiple_of=2, description="U-Net base channels")
    ema_decay: float = Field(0.9999, ge=0, lt=1, description="EMA of the weights per step")
    sample_steps: int = Field(50, ge=1, le=T, description="denoising steps when sampling")
    eta: float = Field(0.0, ge=0, le=1, description="0: DDIM (deterministic); 1: DDPM noise")


def alpha_bars(device: torch.device | None = None) -> torch.Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s), t = 0..T-1, for the linear schedule [T]."""
    betas = torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64, device=device)
    return torch.cumprod(1 - betas, 0).float()


def q_sample(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) noise; ``abar`` [B] broadcast over [B, C, H, W]."""
    a = abar.view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddim_update(
    x: torch.Tensor,
    eps: torch.Tensor,
    abar_t: float,
    abar_prev: float,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """x_{t_prev} from x_t and the predicted noise (Song et al. 2021, eq. 12), with x0
    clipped to [-1, 1] and the noise re-derived from it; ``noise`` is needed when eta > 0."""
    x0 = ((x - (1 - abar_t) ** 0.5 * eps) / abar_t**0.5).clamp(-1, 1)
    eps = (x - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
    out = abar_prev**0.5 * x0 + max(1 - abar_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0:
        assert noise is not None
        out = out + sigma * noise
    return out


def ema_decay(decay: float, n: torch.Tensor) -> torch.Tensor:
    """The decay of EMA update ``n`` (0-based, a float scalar tensor): min(decay, (1 + n) /
    (10 + n)): 0.1 at the first update, 0.5 at the ninth, ``decay`` once the ratio passes it.
    A tensor op, no host read, so the step stays capturable in a CUDA graph."""
    return torch.clamp((1 + n) / (10 + n), max=decay)


def sampling_timesteps(steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced over 0..T-1, ascending (all T for steps = T)."""
    return sorted({round(i * (T - 1) / max(steps - 1, 1)) for i in range(steps)})


@dataclass(frozen=True)
class DDPM(Algorithm):
    sampler = "ema"
    kinds = {"step": ("model",)}
    metrics = ("loss",)
    losses = ("loss",)

    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        return self.build_with(spec, DDPMOptions().model_dump())

    def build_with(self, spec: NetSpec, options: Mapping[str, Any]) -> dict[str, nn.Module]:
        model = UNet(spec.img_shape, int(options["width"]))
        ema = SamplingUNet(spec.img_shape, int(options["width"]),
                           int(options["sample_steps"]), float(options["eta"]))  # fmt: skip
        ema.load_state_dict(model.state_dict())  # the average starts at the initial weights
        return {"model": model, "ema": ema}

    def owners(self) -> dict[str, tuple[str, ...]]:
        return {"model": ("model",)}  # the EMA copy is no optimiser's

    def initial_state(self, hyper: Hyper, device: torch.device) -> dict[str, torch.Tensor]:
        # float32 counts exactly to 2^24 updates; far past the warm-up, where the decay is
        # the option's whatever n reads. A device tensor: the step never reads it on the host.
        return {EMA_UPDATES: torch.zeros((), device=device)}

    def latent(self, n: int, spec: NetSpec, generator: torch.Generator) -> torch.Tensor:
        """x_T ~ N(0, I) [n, C, H, W]."""
        return torch.randn(n, *spec.img_shape, generator=generator)

    def step(self, ctx: StepContext, kind: str) -> None:
        model, ema, x0 = ctx.nets["model"], ctx.nets["ema"], ctx.real
        t = ctx.randint(T, x0.shape[0])
        noise = ctx.randn(*x0.shape)
        with ctx.player("model"):
            x_t = q_sample(x0, noise, alpha_bars(x0.device)[t])
            loss = (model(x_t, t) - noise).pow(2).mean()
            ctx.minimize("model", loss)
        with torch.no_grad():
            n = ctx.state[EMA_UPDATES]
            weight = 1 - ema_decay(ctx.options["ema_decay"], n)
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), weight)
            n.add_(1)
        ctx.log(loss=loss)

    @torch.no_grad()
    def generate(
        self,
        nets: Mapping[str, nn.Module],
        latent: torch.Tensor,
        labels: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        ema = nets["ema"]
        assert isinstance(ema, SamplingUNet)
        return denoise(ema, latent, ema.sample_steps, ema.eta, generator)

    def sampling_options(self, options: Mapping[str, float]) -> dict[str, Any]:
        eta = options["eta"]
        method = "ddim" if eta == 0 else ("ddpm" if options["sample_steps"] == T else "ddim-eta")
        return {"method": method, "sample_steps": options["sample_steps"], "eta": eta,
                "ema_decay": options["ema_decay"], "ema_warmup": "min(decay, (1+n)/(10+n))",
                "weights": "ema"}  # fmt: skip


class SamplingUNet(UNet):
    """The EMA copy: a U-Net that also carries the run's sampling settings (the options reach
    the nets when they are built; ``generate`` reads them here). Same state dict as UNet."""

    def __init__(
        self, img_shape: tuple[int, int, int], width: int, sample_steps: int, eta: float
    ) -> None:
        super().__init__(img_shape, width)
        self.sample_steps, self.eta = sample_steps, eta


def denoise(
    net: nn.Module,
    x: torch.Tensor,
    sample_steps: int,
    eta: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """x_T [n, C, H, W] -> x_0 in [-1, 1]: ``sample_steps`` updates of ddim_update."""
    abar = alpha_bars().tolist()
    ts = sampling_timesteps(sample_steps)
    for i in reversed(range(len(ts))):
        t = torch.full((x.shape[0],), ts[i], dtype=torch.long, device=x.device)
        prev = abar[ts[i - 1]] if i > 0 else 1.0
        noise = None
        if eta > 0 and i > 0:
            noise = torch.randn(x.shape, device=x.device, generator=generator)
        x = ddim_update(x, net(x, t), abar[ts[i]], prev, eta, noise)
    return x.clamp(-1, 1)


VARIANT = registry.register(
    Variant(
        name="ddpm",
        algorithm=DDPM(),
        epochs=100,
        lr=2e-4,
        betas=(0.9, 0.999),
        options=DDPMOptions,
        description="DDPM, small U-Net noise predictor, EMA weights, DDIM sampling (50 steps)",
        citation="Ho et al. 2020, Denoising Diffusion Probabilistic Models (NeurIPS); "
        "sampling: Song et al. 2021, Denoising Diffusion Implicit Models (ICLR)",
        family=BASELINES,
    )
)
