"""WGAN (Arjovsky et al. 2017): critic weights clipped to +-clip after each critic step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Options, Variant, registry

if TYPE_CHECKING:
    import optuna


class ClipOptions(Options):
    clip: float = Field(0.01, gt=0, description="critic weights clamped to [-clip, clip]")


@torch.no_grad()
def clip_weights(critic: nn.Module, options: Mapping[str, float]) -> None:
    """Clamp every critic parameter to [-clip, clip] in place (one fused foreach call)."""
    clip = options["clip"]
    params = [p for p in critic.parameters()]
    torch._foreach_clamp_min_(params, -clip)
    torch._foreach_clamp_max_(params, clip)


def tune_clip(trial: optuna.Trial) -> dict[str, float]:
    return {"clip": trial.suggest_float("clip", 1e-3, 1e-1, log=True)}


VARIANT = registry.register(
    Variant(
        name="wgan",
        algorithm=Adversarial(
            MLPGenerator, MLPDiscriminator, OBJECTIVES["wasserstein"], after_d_step=clip_weights
        ),
        optimizer="rmsprop",
        epochs=200,
        lr=5e-5,
        betas=(0.0, 0.0),  # unused by RMSprop; kept so every variant has the same fields
        n_critic=5,
        options=ClipOptions,
        tune_space=tune_clip,
        description="MLP WGAN, weight clipping, RMSprop",
        citation="Arjovsky et al. 2017, Wasserstein GAN (ICML)",
        published=(("WGAN", 6.7),),
    )
)
