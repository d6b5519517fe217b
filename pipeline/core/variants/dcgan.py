"""DCGAN (Radford et al. 2016): transposed-conv G, strided-conv D, N(0, 0.02) init."""

from pipeline.core.algorithms import Adversarial
from pipeline.core.losses import OBJECTIVES
from pipeline.core.nets import DCGANDiscriminator, DCGANGenerator, dcgan_init
from pipeline.core.variants.base import Variant, registry

VARIANT = registry.register(
    Variant(
        name="dcgan",
        algorithm=Adversarial(
            DCGANGenerator, DCGANDiscriminator, OBJECTIVES["ns"], init=dcgan_init
        ),
        epochs=100,
        lr=2e-4,
        betas=(0.5, 0.999),
        description="DCGAN, BCE",
        citation="Radford et al. 2016, Unsupervised Representation Learning with Deep "
        "Convolutional GANs (ICLR)",
    )
)
