"""The reference set's cached features: plain tensors, read with ``weights_only=True``.

A cache under ``evaluate.cache_dir`` (or the tuning cache) lives in the working tree, which is
shared, pulled and copied: its files are input, never trusted. torch-fidelity's own cache
loads its files with ``torch.load(weights_only=False)`` (a crafted file runs code the moment it
is read), so the pipeline hands torch-fidelity no cache at all (``cache=False``) and keeps the
reference features itself, one float tensor [n_real, d] per file, read by torch's safe
unpickler, which builds tensors and nothing else. A file that is not such a tensor (crafted,
truncated, from another set size) is named in one line and the features are extracted again
and written over it; nothing in it is run.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch

from pipeline.infra.errors import first_line


def _reason(err: Exception) -> str:
    if isinstance(err, pickle.UnpicklingError):
        # The safe unpickler's message is a page long; what it means is this.
        return "it holds more than plain tensors, and is not unpickled"
    return f"{type(err).__name__}: {first_line(err)[:160]}"


def load_features(path: Path, n: int) -> torch.Tensor | None:
    """The cached features float [n, d] at ``path``, or None when there are none to use (a
    missing file silently; an unusable one with one line on stderr naming it)."""
    if not path.is_file():
        return None
    try:
        feats = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused by the safe unpickler, truncated, not a torch file
        reason = _reason(err)
    else:
        if (
            isinstance(feats, torch.Tensor)
            and feats.is_floating_point()
            and feats.dim() == 2
            and len(feats) == n
        ):
            return feats
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        reason = f"not a float tensor [{n}, d] (found {shape})"
    print(
        f"warning: {path}: not a usable feature cache ({reason}); "
        "extracting the reference features again and replacing it",
        file=sys.stderr,
    )
    return None
