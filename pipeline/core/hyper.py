"""A variant's resolved training hyperparameters: what the algorithms' hooks (the schedule,
the initial state, the optimisers) read. Below both the algorithms and the variants that
declare them, so that neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hyper:
    """A variant's resolved training hyperparameters."""

    epochs: int
    lr: float
    betas: tuple[float, float]
    n_critic: int
    optimizer: str
    options: dict[str, float] = field(default_factory=dict)
    lr_d: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hyper:
        """From a run config's ``hyper`` (JSON: betas as a list; older runs lack lr_d)."""
        return cls(**{**d, "betas": tuple(d["betas"])})
