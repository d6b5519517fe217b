"""BGAN (Hjelm et al. 2018): boundary-seeking GAN. D as the standard GAN; G minimises
1/2 E[(log D(G(z)) - log(1 - D(G(z))))^2], pulling its samples to D's decision boundary.
Adam lr 2e-4, betas (0.5, 0.999) as PyTorch-GAN's MNIST script; MLP nets as `gan`."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="bgan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["boundary_seeking"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP boundary-seeking GAN",
        citation="Hjelm et al. 2018, Boundary-Seeking Generative Adversarial Networks (ICLR)",
    )
)
