"""The MNIST classifier as the evaluator loads it: its checkpoint file, the reference set
(the first ``evaluate.n_real`` test images) and that set's cached features. Used by the quality
curve during training and by the evaluate stage, so it sits in the training layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.core.classifier import ARCH, MnistCNN, model_from_checkpoint
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.data import mnist_dir, read_split
from pipeline.infra.devices import numerics, precision_tag, resolve_device
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import save_torch
from pipeline.infra.refcache import load_features
from pipeline.infra.weights import Weights

if TYPE_CHECKING:  # its torch-fidelity import costs ~1.3 s: loaded where features are made
    from pipeline.core import features as fx

CLASSIFIER_EXTRACTOR = "mnist-classifier"


def checkpoint_path(params: Params) -> Path:
    return layout.classifier_checkpoint(params)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict ``{"state_dict", "meta"}``; PipelineError (one line) if absent/bad."""
    if not path.is_file():
        raise PipelineError(
            f"{path}: classifier checkpoint not found; run `pipeline classifier` first"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt / truncated / foreign file
        raise PipelineError(
            f"{path}: unreadable classifier checkpoint ({first_line(err)}); rerun "
            "`pipeline classifier`"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("meta", {}).get("arch") != ARCH:
        raise PipelineError(
            f"{path}: not a {ARCH} classifier checkpoint; rerun `pipeline classifier`"
        )
    return ckpt


def load_classifier(params: Params, device: torch.device | str = "cpu") -> MnistCNN:
    """The trained evaluator CNN (eval mode) on ``device``; one-line PipelineError if missing.

    ``device`` may be a name ("auto", "cpu", "cuda:0"), resolved like every stage's option.
    """
    return classifier_at(checkpoint_path(params), device)


def classifier_at(path: Path, device: torch.device | str = "cpu") -> MnistCNN:
    """:func:`load_classifier` from the checkpoint file ``path``."""
    dev = resolve_device(device) if isinstance(device, str) else device
    return model_from_checkpoint(load_checkpoint(path), dev)


def real_reference(params: Params) -> torch.Tensor:
    """The reference set: the first ``evaluate.n_real`` MNIST test images, uint8 [n, 28, 28]."""
    return reference_images(mnist_dir(params), params.evaluate.n_real)


def reference_images(data: Path, n_real: int) -> torch.Tensor:
    """The first ``n_real`` test images of the prepared MNIST folder ``data``."""
    images, _ = read_split(data, "test")
    return images[:n_real]


def real_features(
    params: Params, model: torch.nn.Module, real: torch.Tensor, weights: Weights, dev: torch.device
) -> fx.Reference:
    """The reference set's classifier features, extracted once per classifier and kept beside
    the fidelity features (same key: set size, weights, device type and precision); a cache
    file that is not a plain tensor of the set's size is named in one line and replaced."""
    cache = params.path(params.evaluate.cache_dir)
    return cached_real_features(cache, params.evaluate.tf32, model, real, weights, dev)


def cached_real_features(
    cache: Path,
    tf32: bool,
    model: torch.nn.Module,
    real: torch.Tensor,
    weights: Weights,
    dev: torch.device,
) -> fx.Reference:
    """:func:`real_features` with its cache folder and precision given."""
    from pipeline.core import features as fx

    name = real_cache_name(len(real), CLASSIFIER_EXTRACTOR, weights, dev, tf32)
    path = features_file(cache, name)
    feats = load_features(path, len(real))
    if feats is None:
        with numerics(tf32):
            feats = fx.extract(model, real).feats
        save_torch(feats, path)
    return fx.Reference.of(feats)


def real_features_path(params: Params, name: str) -> Path:
    """Where :func:`real_features` keeps the classifier's penultimate features of the
    reference set named ``name`` (:func:`real_cache_name`)."""
    return features_file(params.path(params.evaluate.cache_dir), name)


def features_file(cache: Path, name: str) -> Path:
    return cache / f"{name}-penultimate.pt"


def real_cache_name(
    n_real: int, extractor: str, weights: Weights, dev: torch.device, tf32: bool
) -> str:
    """The cache name of the real set's features (our cache, not torch-fidelity's)."""
    where = precision_tag(dev, tf32)
    return f"mnist-test-n{n_real}-{extractor}-{weights.digest}-{where}"
