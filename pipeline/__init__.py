"""Reproducible comparison of GAN variants on MNIST."""

__version__ = "0.1.0"
