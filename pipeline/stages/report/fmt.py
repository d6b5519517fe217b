"""Number and text formatting for the report's cells and captions (plain text, no markup)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.infra.units import duration

__all__ = ["duration"]  # the report's modules call fmt.duration

MISSING = "—"
"""Shown where an input that should exist is absent or unreadable."""
NOT_APPLICABLE = "n/a"
"""Shown where a score does not apply (label accuracy of an unconditional variant)."""
NOT_COMPUTED = "not computed"
"""Shown where the metrics file exists but its extractor was not run for it."""


def get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` through dicts, or None where a level is missing."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def num(data: Any, *keys: str) -> float | None:
    value = get(data, *keys)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def to_float(text: Any) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fixed(value: float | None, digits: int) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}f}"


def plus_minus(mean: float | None, std: float | None, digits: int) -> str | None:
    if mean is None:
        return None
    text = fixed(mean, digits)
    return text if std is None else f"{text} ± {fixed(std, digits)}"


def integer(value: float | None) -> str | None:
    return None if value is None else f"{int(value):,}"


def sci(value: Any) -> str:
    """Hyperparameters: 0.0002, 5e-05, (0.5, 0.999), clip=0.01."""
    if isinstance(value, float):
        return (
            f"{value:.3g}"
            if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4)
            else f"{value:g}"
        )
    if isinstance(value, list | tuple):
        return "(" + ", ".join(sci(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}={sci(v)}" for k, v in value.items()) or "none"
    return str(value)
