"""Human-readable quantities shared by the stages (the trainer's time-left line, the report)."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str | None:
    """8.3 s, 42 s, 3 min 05 s, 2 h 07 min; None for a missing or non-finite value."""
    if seconds is None or not math.isfinite(seconds):
        return None
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
