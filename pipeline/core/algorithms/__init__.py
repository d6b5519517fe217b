"""The step protocol (``base``) and the model families built on it."""

from pipeline.core.algorithms.adversarial import Adversarial
from pipeline.core.algorithms.base import Algorithm, StepContext

__all__ = ["Adversarial", "Algorithm", "StepContext"]
