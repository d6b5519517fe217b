"""Compatibility: the training code lives in :mod:`pipeline.training` (split by job)."""

from pipeline.training import *  # noqa: F403
from pipeline.training import __all__  # noqa: F401
