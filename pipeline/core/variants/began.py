"""BEGAN (Berthelot et al. 2017, BEGAN: Boundary Equilibrium Generative Adversarial Networks).

D is an auto-encoder; L(x) is its per-sample mean absolute reconstruction error. D minimises
L(x) - k_t L(G(z)), G minimises L(G(z)); after each step
k_t <- clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) keeps E[L(G(z))] = gamma E[L(x)]
(k_0 = 0), and M_global = L(x) + |gamma L(x) - L(G(z))| measures convergence. k_t is state
(checkpointed, restored on resume); k_t and M_global are curves. The paper has no MNIST run:
PyTorch-GAN's MNIST script's values, gamma 0.75, lambda_k 0.001, Adam lr 2e-4, betas
(0.5, 0.999), 200 epochs (the paper: lr 1e-4, gamma in [0.3, 1]). MLP G as `gan`, an MLP
auto-encoder D (784-256-64-256-784).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field
from torch import nn

from pipeline.core.algorithms import Adversarial, StepContext
from pipeline.core.hyper import Hyper
from pipeline.core.losses import Objective, Scores
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants._heads import AutoEncoderEnergy
from pipeline.core.variants.base import STRUCTURED, Options, Variant, registry


class BeganOptions(Options):
    gamma: float = Field(0.75, gt=0, le=1, description="diversity ratio E[L(G(z))] / E[L(x)]")
    lambda_k: float = Field(0.001, gt=0, description="k_t's proportional gain")


def began_d_loss(s: Scores) -> torch.Tensor:
    """L(x) - k_t L(G(z)) (scores: the reconstruction errors; k_t from the state)."""
    return s.real.mean() - s.state["k_t"] * s.fake.mean()


def began_g_loss(s: Scores) -> torch.Tensor:
    return s.fake.mean()


BEGAN_OBJECTIVE = Objective(began_d_loss, began_g_loss, "raw")


def balance(l_real: torch.Tensor, l_fake: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma E[L(x)] - E[L(G(z))]: positive while G's samples are reconstructed too well."""
    return gamma * l_real.mean() - l_fake.mean()


def next_k(k: torch.Tensor, l_real: torch.Tensor, l_fake: torch.Tensor, gamma: float,
           lambda_k: float) -> torch.Tensor:  # fmt: skip
    return (k + lambda_k * balance(l_real, l_fake, gamma)).clamp(0, 1)


def m_global(l_real: torch.Tensor, l_fake: torch.Tensor, gamma: float) -> torch.Tensor:
    return l_real.mean() + balance(l_real, l_fake, gamma).abs()


def began_discriminator(spec: NetSpec) -> nn.Module:
    return AutoEncoderEnergy(spec, code=64, p=1)


@dataclass(frozen=True)
class BEGAN(Adversarial):
    """D and G step on the same batch of G(z), then k_t moves (device work only)."""

    kinds = {"dg": ("d", "g")}

    @property
    def metrics(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("d_loss", "g_loss", "recon_real", "recon_fake", "k_t", "m_global")

    def initial_state(self, hyper: Hyper, device: torch.device) -> dict[str, torch.Tensor]:
        return {"k_t": torch.zeros((), device=device)}

    def step(self, ctx: StepContext, kind: str) -> None:
        g, d, real, opts = ctx.nets["generator"], ctx.nets["discriminator"], ctx.real, ctx.options
        fake = g(ctx.randn(real.shape[0], ctx.spec.z_dim), None)
        k = ctx.state["k_t"]
        with ctx.player("d"):
            (l_real, _), (l_fake, _) = ctx.score_pair("discriminator", real, fake.detach(), None)
            loss_d = self.objective.d_loss(Scores(l_real, l_fake, state=ctx.state))
            ctx.minimize("d", loss_d)
        with ctx.player("g"):
            loss_g = self.objective.g_loss(Scores(l_real, d(fake)[0]))
            ctx.minimize("g", loss_g)
        with torch.no_grad():
            l_real, l_fake = l_real.detach(), l_fake.detach()
            k.copy_(next_k(k, l_real, l_fake, opts["gamma"], opts["lambda_k"]))
            m = m_global(l_real, l_fake, opts["gamma"])
        ctx.log(d_loss=loss_d, g_loss=loss_g, recon_real=l_real.mean(),
                recon_fake=l_fake.mean(), k_t=k, m_global=m)  # fmt: skip


VARIANT = registry.register(
    Variant(
        name="began",
        algorithm=BEGAN(MLPGenerator, began_discriminator, BEGAN_OBJECTIVE),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        options=BeganOptions,
        family=STRUCTURED,
        description="MLP BEGAN: auto-encoder D (L1), k_t equilibrium control (gamma 0.75)",
        citation="Berthelot et al. 2017, BEGAN: Boundary Equilibrium Generative Adversarial "
        "Networks (arXiv:1703.10717)",
    )
)
