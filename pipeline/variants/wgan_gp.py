"""WGAN-GP (Gulrajani et al. 2017): gradient penalty lambda=10 on interpolates."""

from pipeline.losses import gradient_penalty
from pipeline.nets import MLPDiscriminator, MLPGenerator
from pipeline.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="wgan_gp",
        generator=MLPGenerator,
        discriminator=MLPDiscriminator,
        objective="wasserstein",
        epochs=200,
        lr=1e-4,
        betas=(0.5, 0.9),
        n_critic=5,
        penalty=gradient_penalty,
        options={"penalty_weight": 10.0},
        description="MLP WGAN-GP, Adam (0.5, 0.9)",
    )
)
