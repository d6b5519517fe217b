"""The one checkpoint format, used by train (resume), sample, evaluate and tune.

A checkpoint is a dict of tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": 1, "variant": str, "config": str (JSON of the resolved config),
     "epoch": int (completed epochs), "step": int, "complete": bool, "train_time_s": float,
     "generator": state_dict, "discriminator": state_dict,
     "opt_g": state_dict, "opt_d": state_dict,
     "rng": {"noise": ByteTensor, "data": ByteTensor, "torch": ByteTensor},
     "history": [ {metric: float, ...} per epoch ]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.io import save_torch

FORMAT = 1
CHECKPOINT = "checkpoint.pt"


class CheckpointError(PipelineError):
    pass


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    save_torch({"format": FORMAT, **state}, path)


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, not a traceback
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pipeline checkpoint (format {FORMAT})")
    return state


def config_of(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(state["config"])


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as 'key: old -> new'."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a} -> {b}")
    return out
