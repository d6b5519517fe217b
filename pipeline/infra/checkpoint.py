"""The one checkpoint format, used by train (resume), sample, evaluate and tune.

A checkpoint is a dict of tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": 2, "variant": str, "config": str (JSON of the resolved config),
     "epoch": int (completed epochs), "step": int, "g_iters": int, "complete": bool,
     "device": str, "train_time_s": float,
     "nets": {name: state_dict}, "optimizers": {name: state_dict},
     "state": {name: Tensor} (the algorithm's state, e.g. BEGAN's k_t),
     "rng": {"noise": ByteTensor, "data": ByteTensor, "torch": ByteTensor},
     "history": [ {metric: float, ...} per epoch ]}

Format 1 (the GAN-only layout before the step protocol: "generator", "discriminator",
"opt_g", "opt_d") is still read: :func:`load` converts it, so finished runs keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.infra.errors import PipelineError
from pipeline.infra.io import save_torch

FORMAT = 2
READABLE = (1, 2)
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
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        raise CheckpointError(f"{path}: not a pipeline checkpoint (format {FORMAT})")
    return upgrade(state)


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint (GAN nets and optimisers by fixed keys) in format 2's layout."""
    if state["format"] == FORMAT:
        return state
    old = dict(state)
    nets = {"generator": old.pop("generator"), "discriminator": old.pop("discriminator")}
    optimizers = {"d": old.pop("opt_d"), "g": old.pop("opt_g")}
    n_critic = json.loads(old["config"])["hyper"]["n_critic"]
    return {**old, "format": FORMAT, "nets": nets, "optimizers": optimizers, "state": {},
            "g_iters": old["step"] // n_critic}  # fmt: skip


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
