"""Params as the commands that train, sample or score need them: validated against the
schema (pipeline/infra/params.py) and, here, each ``variants.<name>`` block against the
variant registry. The check lives above infra because the registry imports torch, which
`pipeline report` and `pipeline config merge` do not load.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from pipeline.core.variants.base import registry
from pipeline.infra.config import Params
from pipeline.infra.errors import ConfigError
from pipeline.infra.params import format_validation_error, load_params

OPTIMIZERS_WITH_BETAS = frozenset({"adam"})
"""Optimisers that take betas (see pipeline.training.optim.make_optimizer); params.yaml may set
``variants.<name>.betas`` only for variants that train with one of them."""


def check_variants(params: Params, source: str = "params.yaml") -> None:
    """Refuse (ConfigError, one line with the dotted key) a ``variants.<name>`` block the
    registry does not accept: an unknown variant, betas for an optimiser without them, an
    unknown or invalid option, ``lr_d`` for a variant without a critic."""

    for name, block in params.variants.items():
        try:
            variant = registry.get(name)
        except KeyError:
            known = ", ".join(registry.names())
            raise ConfigError(
                f"{source}: variants.{name}: unknown variant (known: {known})"
            ) from None
        if block.betas is not None and variant.optimizer not in OPTIMIZERS_WITH_BETAS:
            raise ConfigError(
                f"{source}: variants.{name}.betas: {name} trains with {variant.optimizer}, "
                "which has no betas; remove the key"
            )
        defaults = variant.default_options()
        for key in block.options:
            if key not in defaults:
                known = ", ".join(defaults) or "none"
                raise ConfigError(
                    f"{source}: variants.{name}.options.{key}: unknown option for {name} "
                    f"(known: {known})"
                )
        try:
            variant.validate_options(block.options)
        except ValidationError as err:
            raise ConfigError(
                format_validation_error(err, source, prefix=f"variants.{name}.options")
            ) from None
        if block.lr_d is not None and "d" not in variant.algorithm.owners():
            raise ConfigError(
                f"{source}: variants.{name}.lr_d: {name} has no critic optimiser; remove the key"
            )


def load_checked(path: Path | str = "params.yaml") -> Params:
    """:func:`pipeline.infra.params.load_params`, then :func:`check_variants`."""
    params = load_params(path)
    check_variants(params, Path(path).name)
    return params
