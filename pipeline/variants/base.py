"""Variant declaration, resolved hyperparameters and the registry."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from pipeline.nets import NetSpec

if TYPE_CHECKING:
    import optuna

    from pipeline.config import VariantParams

NetBuilder = Callable[[NetSpec], nn.Module]
# critic(x, labels), real, fake, labels, generator= -> scalar penalty
Penalty = Callable[..., Any]
# Called after every critic optimiser step with the critic and the resolved options.
AfterDStep = Callable[[nn.Module, dict[str, float]], None]
# Variant-specific extra search dimensions: trial -> {option name: value}.
TuneSpace = Callable[["optuna.Trial"], dict[str, float]]


@dataclass(frozen=True)
class Variant:
    name: str
    generator: NetBuilder
    discriminator: NetBuilder
    objective: str  # key of pipeline.losses.LOSSES
    epochs: int
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    optimizer: Literal["adam", "rmsprop"] = "adam"
    n_critic: int = 1
    conditional: bool = False
    init: Callable[[nn.Module], None] | None = None
    penalty: Penalty | None = None  # weighted by options["penalty_weight"]
    after_d_step: AfterDStep | None = None
    options: dict[str, float] = field(default_factory=dict)  # defaults of tunable extras
    tune_space: TuneSpace | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.penalty is not None and "penalty_weight" not in self.options:
            raise ValueError(f"variant {self.name}: a penalty needs options['penalty_weight']")

    @property
    def tunes_n_critic(self) -> bool:
        """Critic variants (several critic steps per G step) expose n_critic to tuning."""
        return self.n_critic > 1

    def resolve(self, block: VariantParams | None = None) -> Hyper:
        """Published defaults overlaid with a params.yaml block."""
        return Hyper(
            epochs=block.epochs if block and block.epochs is not None else self.epochs,
            lr=block.lr if block and block.lr is not None else self.lr,
            betas=tuple(block.betas) if block and block.betas is not None else self.betas,
            n_critic=block.n_critic if block and block.n_critic is not None else self.n_critic,
            optimizer=self.optimizer,
            options={**self.options, **(block.options if block else {})},
        )


@dataclass(frozen=True)
class Hyper:
    """A variant's resolved training hyperparameters."""

    epochs: int
    lr: float
    betas: tuple[float, float]
    n_critic: int
    optimizer: str
    options: dict[str, float]


class Registry:
    def __init__(self) -> None:
        self._variants: dict[str, Variant] = {}
        self._discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        import pipeline.variants as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name != "base":
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
