"""WGAN-GP (Gulrajani et al. 2017): gradient penalty lambda=10 on interpolates."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES, gradient_penalty
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants._options import penalty_options
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="wgan_gp",
        algorithm=Adversarial(
            MLPGenerator, MLPDiscriminator, OBJECTIVES["wasserstein"], penalty=gradient_penalty
        ),
        epochs=200,
        lr=1e-4,
        betas=(0.5, 0.9),
        n_critic=5,
        options=penalty_options(10.0),
        description="MLP WGAN-GP, Adam (0.5, 0.9)",
        citation="Gulrajani et al. 2017, Improved Training of Wasserstein GANs (NeurIPS)",
        published=(("WGAN-GP", 20.3),),
    )
)
