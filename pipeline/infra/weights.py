"""Weights of the Inception path: a file from params, torch's hub cache, or a download; and
one-line errors for a file that is not the network torch-fidelity expects."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import DOWNLOAD_ERRORS, download
from pipeline.infra.trusted_weights import check_cached, published_prefix, trusted_copy

# The two files torch-fidelity loads: its Inception-v3 (torch_fidelity's URL_INCEPTION_V3) and
# torchvision's ImageNet VGG16 (VGG16_Weights.IMAGENET1K_V1.url). Written out, not imported:
# importing either library costs about a second and a half in every process that only needs
# the address (the `pipeline tune --jobs` parent); tests/test_weights.py checks they match.
URL_INCEPTION_V3 = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


@dataclass(frozen=True)
class Weights:
    path: Path  # the file handed to torch-fidelity (checked: see pipeline.infra.trusted_weights)
    digest: str  # content hash prefix: part of the real-feature cache name
    shown: str = ""  # how errors name it: the params key and the file, or the cached file


def hub_file(url: str) -> Path:
    """Where torch.hub (and so torch-fidelity/torchvision) keeps the download of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking the sha256 prefix in its name."""

    def check(digest: str) -> None:
        if not digest.startswith(published_prefix(url)):
            raise OSError(f"{url}: sha256 mismatch (corrupt download)")

    download(url, dest, check=check)


def resolve_weights(
    configured: Path | None, url: str, key: str, params: Params, copy: bool = True
) -> Weights:
    """The weights file for one torch-fidelity network, checked, or a one-line PipelineError.

    Order: ``evaluate.<key>`` from params; torch's hub cache (``$TORCH_HOME``), where an
    earlier download landed; a download from ``url`` (socket timeout, so no hang offline).
    No file reaches torch-fidelity (which unpickles it with ``weights_only=False``) unless
    it is the published file or, named in params, a plain state dict, which is handed over
    as a copy the pipeline wrote (``copy=False``: check only, write nothing).
    """
    if configured is not None:
        path = params.path(configured)
        if not path.is_file():
            raise PipelineError(f"evaluate.{key}: {path}: file not found")
        copies = params.path(params.evaluate.cache_dir) / "weights"
        handed, digest = trusted_copy(path, url, key, copies if copy else None)
        return Weights(handed, digest, f"evaluate.{key}: {path}")
    cached = hub_file(url)
    if not cached.is_file():
        try:
            _download(url, cached)
        except DOWNLOAD_ERRORS as err:
            reason = getattr(err, "reason", None) or first_line(err)
            raise PipelineError(
                f"Inception metrics need weights that cannot be had: no evaluate.{key} in params, "
                f"none cached at {cached}, and the download of {url} failed ({reason}); "
                f"give the file in params evaluate.inception_weights / evaluate.vgg16_weights, "
                f"or set evaluate.extractors to [classifier]"
            ) from None
    return Weights(cached, check_cached(cached, url, key), f"{cached} (torch hub cache)")


def inception_weights(params: Params, copy: bool = True) -> tuple[Weights, Weights]:
    """The Inception-v3 and VGG16 weights of the Inception section, resolved up front."""
    cfg = params.evaluate
    return (
        resolve_weights(cfg.inception_weights, URL_INCEPTION_V3, "inception_weights", params, copy),
        resolve_weights(cfg.vgg16_weights, VGG16_URL, "vgg16_weights", params, copy),
    )


def check_inception_weights(params: Params) -> None:
    """Before training: when ``evaluate.extractors`` has inception, its weights must be had
    (the same one-line error as ``pipeline evaluate``), not hours later. Downloads them when
    missing and online; writes no copies."""
    if "inception" in params.evaluate.extractors:
        inception_weights(params, copy=False)


@contextlib.contextmanager
def bad_weights_as_error(weights: Weights) -> Iterator[None]:
    """A weights file of the wrong network or format -> one line naming the file (and the
    params key only when the file came from params, not from the hub cache)."""
    try:
        yield
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        # Only loading problems; anything else (a real bug) keeps its traceback.
        if isinstance(err, RuntimeError) and "state_dict" not in str(err):
            raise
        raise PipelineError(
            f"{weights.shown}: not usable as torch-fidelity weights ({first_line(err)})"
        ) from None
