"""MM GAN (Goodfellow et al. 2014): the saturating minimax loss, G minimises log(1 - D(G(z))).

The paper's own objective (its section 3 notes it saturates early in training, which is why
the non-saturating `gan` exists). MLP nets and optimiser as `gan`, so the rows differ only
in the G loss.
"""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import MLPDiscriminator, MLPGenerator
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="mm_gan",
        algorithm=Adversarial(MLPGenerator, MLPDiscriminator, OBJECTIVES["mm"]),
        epochs=200,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="MLP GAN, saturating minimax loss",
        citation="Goodfellow et al. 2014, Generative Adversarial Nets (NeurIPS)",
        published=(("MM GAN", 9.8),),
    )
)
