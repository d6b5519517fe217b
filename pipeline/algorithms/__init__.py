"""The step protocol (``base``) and the model families built on it."""

from pipeline.algorithms.adversarial import Adversarial
from pipeline.algorithms.base import Algorithm, StepContext

__all__ = ["Adversarial", "Algorithm", "StepContext"]
