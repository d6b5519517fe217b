"""The GAN step, written once: a critic update every step, a generator update every n_critic.

Kinds: ``"d"`` (critic only) and ``"dg"`` (critic, then generator). The objective sees
D(real) and D(fake) for both players (:class:`pipeline.core.losses.Scores`); D may return a tensor
or a tuple (logit, extra outputs). The generator's forward pass is shared by both updates
(its graph is kept only when the generator steps next), as in the classic loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pipeline.core.algorithms.base import Algorithm, Declaration, Outputs, StepContext
from pipeline.core.losses import Objective, Penalty, Scores
from pipeline.core.nets import NetSpec, detach_activation_slopes

if TYPE_CHECKING:
    from pipeline.core.hyper import Hyper

NetBuilder = Callable[[NetSpec], nn.Module]
# Called after every critic optimiser step with the critic and the resolved options.
AfterDStep = Callable[[nn.Module, Mapping[str, float]], None]


def split(out: Outputs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(the [B] logit, the extra outputs) of a scoring net's result."""
    if isinstance(out, tuple):
        return out[0], tuple(out[1:])
    return out, ()


@dataclass(frozen=True)
class Adversarial(Algorithm):
    generator: NetBuilder
    discriminator: NetBuilder
    objective: Objective
    penalty: Penalty | None = None  # weighted by options["penalty_weight"]
    after_d_step: AfterDStep | None = None
    init: Callable[[nn.Module], None] | None = None

    kinds = {"d": ("d",), "dg": ("d", "g")}
    critics = ("d",)
    losses = ("d_loss", "g_loss")

    def check(self, variant: Declaration) -> None:
        if self.penalty is not None and "penalty_weight" not in variant.default_options():
            raise ValueError(f"variant {variant.name}: a penalty needs a penalty_weight option")

    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        g, d = self.generator(spec), self.discriminator(spec)
        if self.init is not None:
            self.init(g)
            self.init(d)
        return {"generator": g, "discriminator": d}

    def owners(self) -> dict[str, tuple[str, ...]]:
        return {"d": ("discriminator",), "g": ("generator",)}

    def schedule(self, hyper: Hyper) -> tuple[str, ...]:
        return ("d",) * (hyper.n_critic - 1) + ("dg",)

    @property
    def metrics(self) -> tuple[str, ...]:  # type: ignore[override]
        reading = {"probability": ("d_real", "d_fake"), "raw": ("d_real", "d_fake"),
                   "critic": ("wasserstein",)}[self.objective.reading]  # fmt: skip
        return ("d_loss", "g_loss", *reading, *(("gp",) if self.penalty else ()))

    def prepare_fast(self, nets: dict[str, nn.Module], *, detach_slopes: bool = True) -> None:
        if self.penalty is not None and detach_slopes:
            # The penalty's double backward then skips a pass that only multiplies zeros.
            detach_activation_slopes(nets["discriminator"])

    def scores(self, ctx: StepContext, out_real: Outputs, out_fake: Outputs) -> Scores:
        (real, real_extra), (fake, fake_extra) = split(out_real), split(out_fake)
        return Scores(real, fake, real_extra, fake_extra, ctx.labels, ctx.options, ctx.state)

    def step(self, ctx: StepContext, kind: str) -> None:
        obj, labels, real = self.objective, ctx.labels, ctx.real
        g, d = ctx.nets["generator"], ctx.nets["discriminator"]
        z = ctx.randn(real.shape[0], ctx.spec.z_dim)
        g_step = kind == "dg"
        # Critic / discriminator update. G's graph is kept only when G steps next.
        with torch.set_grad_enabled(g_step):
            fake = g(z, labels)
        fake_d = fake.detach()
        with ctx.player("d"):
            s = self.scores(ctx, *ctx.score_pair("discriminator", real, fake_d, labels))
            loss_d = obj.d_loss(s)
            gp = ctx.zero
            if self.penalty is not None:
                gp = self.penalty(d, real, fake_d, labels, ctx.options, generator=ctx.noise)
                loss_d = loss_d + ctx.options.get("penalty_weight", 0.0) * gp
            ctx.minimize("d", loss_d)
        if self.after_d_step is not None:
            self.after_d_step(d, ctx.options)
        ctx.log(**self.d_metrics(loss_d, s, gp))

        if g_step:
            with ctx.player("g"):
                if obj.g_needs_real:
                    s = self.scores(ctx, *ctx.score_pair("discriminator", real, fake, labels))
                else:
                    s = self.scores(ctx, s.real, d(fake, labels))
                loss_g = obj.g_loss(s)
                ctx.minimize("g", loss_g)
            ctx.log(g_loss=loss_g)

    def d_metrics(self, loss_d: torch.Tensor, s: Scores, gp: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            out: dict[str, Any] = {"d_loss": loss_d}
            if self.objective.reading == "probability":
                out.update(d_real=torch.sigmoid(s.real).mean(), d_fake=torch.sigmoid(s.fake).mean())
            elif self.objective.reading == "raw":
                out.update(d_real=s.real.mean(), d_fake=s.fake.mean())
            else:
                out["wasserstein"] = s.real.mean() - s.fake.mean()
            if self.penalty is not None:
                out["gp"] = gp
            return out
