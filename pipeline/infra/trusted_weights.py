"""Weights files are checked before any library unpickles them.

torch-fidelity loads a weights file with ``torch.load(..., weights_only=False)``: a crafted
file (a pickle with a ``__reduce__``) runs arbitrary code the moment it is loaded. So no file
reaches it unchecked. A file is handed over only when

* its sha256 starts with the published digest prefix (the torch.hub file names carry it:
  ``weights-inception-2015-12-05-6726825d.pth``, ``vgg16-397923af.pth``): the published
  bytes, used as they are; or, for a file named in params only,
* it loads with ``torch.load(weights_only=True)`` (which runs no code) as a plain state dict
  (string keys, tensor values): then the pipeline writes those tensors to a file of its own
  under the feature cache and hands that over, never the original.

A file in torch's hub cache that does not match its published digest is refused (a corrupt
download, or a planted file), naming the file and how to recover.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import file_hash, save_torch


class UntrustedWeightsError(PipelineError):
    pass


def published_prefix(url: str) -> str:
    """The sha256 prefix in a torch.hub file name: ``name-<prefix>.pth``."""
    return url.rsplit("/", 1)[-1].rsplit(".", 1)[0].rsplit("-", 1)[-1]


def check_cached(path: Path, url: str, key: str) -> str:
    """A download in torch's hub cache must be the published file; returns the digest label."""
    prefix = published_prefix(url)
    digest = file_hash(path)
    if not digest.startswith(prefix):
        raise UntrustedWeightsError(
            f"{path}: sha256 {digest[:12]}... is not the published {prefix}... of {url}; the "
            f"cached file is corrupt or was replaced and is not loaded: delete it (it is "
            f"downloaded again), or give a local file in evaluate.{key}"
        )
    return prefix


def _plain_state_dict(path: Path, key: str, prefix: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused by the safe unpickler, or not a torch file at all
        raise UntrustedWeightsError(
            f"evaluate.{key}: {path}: not the published weights (sha256 does not start with "
            f"{prefix}) and not a plain state dict ({type(err).__name__}: "
            f"{first_line(err)[:160]}); it is not loaded"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UntrustedWeightsError(
            f"evaluate.{key}: {path}: not a state dict (a mapping of names to tensors)"
        )
    return dict(state)


def trusted_copy(path: Path, url: str, key: str, copies: Path | None) -> tuple[Path, str]:
    """(the file to hand to torch-fidelity, its digest label) for a file named in params.

    The published file is handed over as is (label: its published prefix, so its features
    share the cache with the hub copy); any other file is read as a plain state dict and
    written anew under ``copies`` (label: the first 16 hex digits of its sha256); with
    ``copies`` None it is only checked (and the path returned is not for torch-fidelity)."""
    prefix = published_prefix(url)
    digest = file_hash(path)
    if digest.startswith(prefix):
        return path, prefix
    state = _plain_state_dict(path, key, prefix)
    if copies is None:
        return path, digest[:16]
    copy = copies / f"{key}-{digest[:16]}.pt"
    save_torch(state, copy)  # rewritten each time: a copy planted in the cache is not used
    return copy, digest[:16]
