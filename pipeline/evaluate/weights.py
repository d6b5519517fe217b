"""Weights of the Inception path: a file from params, torch's hub cache, or a download; and
one-line errors for a file that is not the network torch-fidelity expects."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchvision.models import VGG16_Weights

from pipeline.config import Params
from pipeline.errors import PipelineError, first_line
from pipeline.io import DOWNLOAD_ERRORS, download, file_hash

# What torch-fidelity's default VGG16 loads (torchvision's ImageNet weights).
VGG16_URL = VGG16_Weights.IMAGENET1K_V1.url


@dataclass(frozen=True)
class Weights:
    path: Path
    digest: str  # content hash prefix: part of the real-feature cache name


def hub_file(url: str) -> Path:
    """Where torch.hub (and so torch-fidelity/torchvision) keeps the download of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _hash_prefix(url: str) -> str:
    # torch.hub convention: "name-<sha256 prefix>.pth"
    return url.rsplit("/", 1)[-1].rsplit(".", 1)[0].rsplit("-", 1)[-1]


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking the sha256 prefix in its name."""

    def check(digest: str) -> None:
        if not digest.startswith(_hash_prefix(url)):
            raise OSError(f"{url}: sha256 mismatch (corrupt download)")

    download(url, dest, check=check)


def resolve_weights(configured: Path | None, url: str, key: str, params: Params) -> Weights:
    """The weights file for one torch-fidelity network, or a one-line PipelineError.

    Order: ``evaluate.<key>`` from params; torch's hub cache (``$TORCH_HOME``), where an
    earlier download landed; a download from ``url`` (socket timeout, so no hang offline).
    """
    if configured is not None:
        path = params.path(configured)
        if not path.is_file():
            raise PipelineError(f"evaluate.{key}: {path}: file not found")
        return Weights(path, file_hash(path)[:16])
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
    return Weights(cached, _hash_prefix(url))


def inception_weights(params: Params) -> tuple[Weights, Weights]:
    """The Inception-v3 and VGG16 weights of the Inception section, resolved up front."""
    cfg = params.evaluate
    return (
        resolve_weights(cfg.inception_weights, URL_INCEPTION_V3, "inception_weights", params),
        resolve_weights(cfg.vgg16_weights, VGG16_URL, "vgg16_weights", params),
    )


@contextlib.contextmanager
def bad_weights_as_error(path: Path, key: str) -> Iterator[None]:
    """A weights file of the wrong network or format -> one line naming the file."""
    try:
        yield
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        # Only loading problems; anything else (a real bug) keeps its traceback.
        if isinstance(err, RuntimeError) and "state_dict" not in str(err):
            raise
        raise PipelineError(
            f"evaluate.{key}: {path}: not usable as torch-fidelity weights ({first_line(err)})"
        ) from None
