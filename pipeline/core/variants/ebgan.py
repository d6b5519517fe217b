"""EBGAN (Zhao et al. 2017, Energy-based Generative Adversarial Network).

D is an auto-encoder whose energy is its per-sample mean squared reconstruction error.
D minimises D(x) + max(0, m - D(G(z))); G minimises D(G(z)) + 0.1 * PT, the pulling-away
term PT = 1/(N(N-1)) sum_{i != j} cos(S_i, S_j)^2 over the encoder's codes S of the fake
batch (weight 0.1, the paper's). Margin m = 1 for pixel-mean energies, Adam lr 2e-4, betas
(0.5, 0.999), 200 epochs: PyTorch-GAN's MNIST script. MLP G as `gan`, an MLP auto-encoder
D (784-256-32-256-784).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from pipeline.core.algorithms import Adversarial, StepContext
from pipeline.core.losses import Objective, Scores
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants._heads import AutoEncoderEnergy
from pipeline.core.variants.base import STRUCTURED, Options, Variant, registry


class EbganOptions(Options):
    margin: float = Field(1.0, gt=0, description="m: fakes above this energy cost D nothing")
    pt_weight: float = Field(0.1, ge=0, description="weight of the pulling-away term in G's loss")


def pulling_away(codes: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine similarity over the pairs i != j of a batch's codes [N, k]."""
    n = codes.shape[0]
    unit = F.normalize(codes, dim=1)
    sim2 = (unit @ unit.T).pow(2)
    return (sim2.sum() - sim2.diagonal().sum()) / (n * (n - 1))


def ebgan_d_loss(s: Scores) -> torch.Tensor:
    """D(x) + max(0, m - D(G(z))) (scores: the energies)."""
    return s.real.mean() + F.relu(s.options["margin"] - s.fake).mean()


def ebgan_g_loss(s: Scores) -> torch.Tensor:
    """D(G(z)) + pt_weight * PT(the encoder's codes of G(z))."""
    return s.fake.mean() + s.options["pt_weight"] * pulling_away(s.fake_extra[0])


EBGAN_OBJECTIVE = Objective(ebgan_d_loss, ebgan_g_loss, "raw")


def ebgan_discriminator(spec: NetSpec) -> nn.Module:
    return AutoEncoderEnergy(spec, code=32, p=2)


@dataclass(frozen=True)
class EBGAN(Adversarial):
    kinds = {"dg": ("d", "g")}

    @property
    def metrics(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("d_loss", "g_loss", "energy_real", "energy_fake", "pulling_away")

    def step(self, ctx: StepContext, kind: str) -> None:
        g, d, real, opts = ctx.nets["generator"], ctx.nets["discriminator"], ctx.real, ctx.options
        fake = g(ctx.randn(real.shape[0], ctx.spec.z_dim), None)
        with ctx.player("d"):
            (e_real, _), (e_fake, _) = ctx.score_pair("discriminator", real, fake.detach(), None)
            loss_d = self.objective.d_loss(Scores(e_real, e_fake, options=opts))
            ctx.minimize("d", loss_d)
        with ctx.player("g"):
            e_g, codes = d(fake)
            loss_g = self.objective.g_loss(Scores(e_real, e_g, fake_extra=(codes,), options=opts))
            ctx.minimize("g", loss_g)
        with torch.no_grad():  # the term again, for its curve
            pt = pulling_away(codes.detach())
        ctx.log(d_loss=loss_d, g_loss=loss_g, energy_real=e_real.mean(),
                energy_fake=e_fake.mean(), pulling_away=pt)  # fmt: skip


VARIANT = registry.register(
    Variant(
        name="ebgan",
        algorithm=EBGAN(MLPGenerator, ebgan_discriminator, EBGAN_OBJECTIVE),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        options=EbganOptions,
        family=STRUCTURED,
        description="MLP EBGAN: auto-encoder energy (MSE), margin 1, pulling-away term 0.1",
        citation="Zhao et al. 2017, Energy-based Generative Adversarial Network (ICLR)",
    )
)
