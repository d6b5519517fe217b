"""Options shared by several variants (a helper module: not a variant itself)."""

from typing import Any

from pydantic import Field, create_model

from pipeline.core.variants.base import Options


def penalty_options(weight: float, **extra: float) -> type[Options]:
    """An Options model with ``penalty_weight`` (>= 0; 0 switches the penalty off) and any
    further positive options (``extra``: name -> published default)."""
    fields: dict[str, Any] = {"penalty_weight": (float, Field(weight, ge=0))}
    fields.update({k: (float, Field(v, gt=0)) for k, v in extra.items()})
    return create_model("PenaltyOptions", __base__=Options, **fields)
