"""Device selection shared by every stage."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PipelineError(
            f"device {name!r}: not a valid torch device (auto, cpu, cuda, cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            f"device {name!r}: CUDA is not available on this machine; use auto or cpu"
        )
    return device
