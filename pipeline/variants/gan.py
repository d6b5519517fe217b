"""GAN (Goodfellow et al. 2014), MLP nets, non-saturating loss; PyTorch-GAN's recipe."""

from pipeline.nets import MLPDiscriminator, MLPGenerator
from pipeline.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="gan",
        generator=MLPGenerator,
        discriminator=MLPDiscriminator,
        objective="bce",
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP GAN, non-saturating BCE",
    )
)
