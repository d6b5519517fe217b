"""RaGAN (Jolicoeur-Martineau 2018): the relativistic average standard GAN. D estimates
whether real data is more realistic than the average fake (and fakes less than the average
real); the G loss needs D(real) too. Adam lr 2e-4, betas (0.5, 0.999); MLP nets as `gan`."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="ragan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["relativistic_average"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP relativistic average GAN",
        citation="Jolicoeur-Martineau 2018, The relativistic discriminator: a key element "
        "missing from standard GAN (arXiv:1807.00734; ICLR 2019)",
    )
)
