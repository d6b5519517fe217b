"""Variant declaration, per-variant options and the registry (the resolved
hyperparameters, :class:`~pipeline.core.hyper.Hyper`, live below the algorithms).

A variant is data: its :class:`~pipeline.core.algorithms.Algorithm` (how it trains and samples,
with its nets and objective), its published hyperparameters and its options. The trainer,
sample, evaluate and report read these fields and never branch on a variant's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.core.hyper import Hyper

if TYPE_CHECKING:
    import optuna

    from pipeline.core.algorithms.base import Algorithm
    from pipeline.infra.config import VariantParams

# Variant-specific extra search dimensions: trial -> {option name: value}.
TuneSpace = Callable[["optuna.Trial"], dict[str, float]]

# Report groups (rows of the score table are grouped by family, in this order).
GAN_LOSSES = "GAN losses"
STRUCTURED = "Structured GANs"
BASELINES = "Non-adversarial baselines"
FAMILIES = (GAN_LOSSES, STRUCTURED, BASELINES)


class Options(BaseModel):
    """Base of a variant's options: a small validated model (unknown keys and bad values are
    refused when params.yaml is loaded, with the dotted key). Subclasses declare fields with
    their published defaults and bounds, e.g. ``clip: float = Field(0.01, gt=0)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoOptions(Options):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    algorithm: Algorithm
    epochs: int
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    optimizer: Literal["adam", "rmsprop"] = "adam"
    n_critic: int = 1
    conditional: bool = False
    options: type[Options] = NoOptions
    lr_d: float | None = None  # a critic learning rate of its own (TTUR); None: lr
    tune_space: TuneSpace | None = None
    description: str = ""
    citation: str = ""
    family: str = GAN_LOSSES
    published: tuple[tuple[str, float], ...] = ()  # (row label, FID) from the literature

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"variant {self.name}: family must be one of {FAMILIES}")
        self.algorithm.check(self)

    @property
    def tunes_n_critic(self) -> bool:
        """Critic variants (several critic steps per G step) expose n_critic to tuning."""
        return self.n_critic > 1

    def default_options(self) -> dict[str, float]:
        return self.options().model_dump()

    def validate_options(self, given: dict[str, Any]) -> dict[str, float]:
        """The defaults overlaid with ``given``; raises pydantic's ValidationError."""
        return self.options.model_validate({**self.default_options(), **given}).model_dump()

    def resolve(self, block: VariantParams | None = None) -> Hyper:
        """Published defaults overlaid with a params.yaml block."""

        def pick(key: str, default: Any) -> Any:
            value = getattr(block, key, None) if block is not None else None
            return default if value is None else value

        return Hyper(
            epochs=pick("epochs", self.epochs),
            lr=pick("lr", self.lr),
            betas=tuple(pick("betas", self.betas)),
            n_critic=pick("n_critic", self.n_critic),
            optimizer=self.optimizer,
            options=self.validate_options(block.options if block else {}),
            lr_d=pick("lr_d", self.lr_d),
        )


class Registry:
    def __init__(self) -> None:
        self._variants: dict[str, Variant] = {}
        self._discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        import pipeline.core.variants as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{mod.name}")

    def register(self, variant: Variant) -> Variant:
        if variant.name in self._variants and self._variants[variant.name] is not variant:
            raise ValueError(f"variant {variant.name!r} is already registered")
        self._variants[variant.name] = variant
        return variant

    def unregister(self, name: str) -> None:
        self._variants.pop(name, None)

    def get(self, name: str) -> Variant:
        self._discover()
        return self._variants[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._variants)


registry = Registry()
