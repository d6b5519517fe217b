"""GAN (Goodfellow et al. 2014), MLP nets, non-saturating loss; PyTorch-GAN's recipe."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="gan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["ns"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP GAN, non-saturating BCE",
        citation="Goodfellow et al. 2014, Generative Adversarial Nets (NeurIPS)",
        published=(("NS GAN", 6.8),),
    )
)
