"""torch-fidelity plumbing: our MNIST classifier as a feature extractor, grey images as the
RGB uint8 datasets torch-fidelity reads, and its metrics for one extractor per call.

torch-fidelity's ``calculate_metrics`` caches the reference features and statistics itself
and reads them back with ``torch.load(weights_only=False)``: a file there is code. So
:func:`fidelity` composes the same steps from torch-fidelity's own functions (feature
extractor, feature pass, the per-metric ``*_featuresdict_*`` functions, the same keyword
arguments) with ``cache=False``, and keeps the reference features in the pipeline's own
tensors-only cache (pipeline/infra/refcache.py). The FID statistics are computed from the
features each time (one covariance: well under a second for 128-d, seconds for 2048-d), so
no statistics file is cached or read. The scores are those of ``calculate_metrics`` without a
cache (tests/test_fidelity_cache.py compares them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.metric_prc import prc_featuresdict_to_metric
from torch_fidelity.utils import (
    create_feature_extractor,
    get_featuresdict_from_dataset,
    resolve_feature_layer_for_metric,
)

from pipeline.core.classifier import model_from_checkpoint
from pipeline.infra.config import Params
from pipeline.infra.devices import numerics
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import save_torch
from pipeline.infra.metrics import Section
from pipeline.infra.refcache import load_features
from pipeline.infra.weights import Weights
from pipeline.training.evaluator import CLASSIFIER_EXTRACTOR, load_checkpoint, real_cache_name

CLASSIFIER_NETWORK = (
    "MNIST CNN (penultimate 128-d features, centred and scaled by the real set's for KID; "
    "softmax for IS)"
)
INCEPTION_EXTRACTOR = "inception-v3-compat"
VGG16_EXTRACTOR = "vgg16"
INCEPTION_NETWORK = "inception-v3-compat (FID/IS/KID); VGG16 (precision/recall)"
ISC_SPLITS = 10


class MnistClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor backed by our trained MNIST CNN.

    Input: uint8 [B, 3, 28, 28] (grey tiled to RGB, as torch-fidelity hands it over).
    Features: ``"penultimate"`` float [B, 128] (FID, KID, precision/recall) and ``"logits"``
    float [B, 10] (IS: torch-fidelity applies the softmax, giving the classifier's posterior).
    Weights: ``feature_extractor_weights_path`` = our ``classifier.pt``.
    """

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise PipelineError(f"{name}: needs feature_extractor_weights_path (classifier.pt)")
        ckpt = load_checkpoint(Path(feature_extractor_weights_path))
        self.net = model_from_checkpoint(ckpt)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "penultimate", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[
            metric
        ]

    @staticmethod
    def can_be_compiled() -> bool:
        return False  # a few ms per batch already; compiling costs more than it saves

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """uint8 [B, 3, 28, 28] -> the requested features, in ``features_list`` order."""
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != (3, 28, 28):
            raise ValueError(f"expected uint8 [B, 3, 28, 28], got {x.dtype} {tuple(x.shape)}")
        # The three channels are copies of the grey image; [-1, 1] like the training inputs.
        grey = x[:, :1].float().div_(127.5).sub_(1.0)
        feats, logits = self.net.features_and_logits(grey)
        out = {"penultimate": feats, "logits": logits}
        return tuple(out[name] for name in self.features_list)


def register() -> None:
    """Make ``mnist-classifier`` known to torch-fidelity (once per process)."""
    # The registry is process-global and refuses duplicates; register on first use only.
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(CLASSIFIER_EXTRACTOR, MnistClassifierExtractor)


class GreyAsRGB(Dataset):
    """uint8 [N, 28, 28] or [N, 1, 28, 28] -> items uint8 [3, 28, 28] (one grey plane, tiled)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.reshape(len(images), 1, *images.shape[-2:]).cpu().contiguous()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].expand(3, -1, -1)


def _fidelity_kwargs(
    params: Params, dev: torch.device, n_gen: int, n_real: int, verbose: bool = False
) -> dict[str, Any]:
    return {
        "cuda": dev.type == "cuda",
        "batch_size": params.evaluate.batch_size,
        "verbose": verbose,
        # torch-fidelity's cache unpickles its files with weights_only=False: never use it
        # (the reference features are cached by reference_features, as plain tensors).
        "cache": False,
        "isc_splits": min(ISC_SPLITS, n_gen),
        "kid_subset_size": min(params.evaluate.kid_subset_size, n_real, n_gen),
        # No DataLoader worker processes: the images are already in memory, and forking
        # workers costs more than it saves for 28x28 tensors. (It also selects torch-fidelity's
        # chunked precision/recall, the same metric computed with less peak memory.)
        "save_cpu_ram": True,
    }


def fidelity(
    params: Params,
    dev: torch.device,
    generated: GreyAsRGB,
    real: GreyAsRGB,
    extractor: str,
    weights: Weights,
    **metrics: bool,
) -> dict[str, float]:
    """torch-fidelity's ``metrics`` (isc, fid, kid, prc) for generated vs real on one feature
    extractor, as ``calculate_metrics`` computes them; the real features are cached under a
    name keyed by the set size, the extractor, its weights and where they ran (device type and
    precision: TF32 features differ from float32 ones)."""
    n_gen, n_real = len(generated), len(real)
    tf32 = params.evaluate.tf32
    # torch-fidelity's progress bars for the ImageNet nets (Inception-v3 scores ~6 images/s
    # on 2 CPU cores); the MNIST classifier takes seconds, so stays quiet.
    verbose = extractor != CLASSIFIER_EXTRACTOR
    kwargs: dict[str, Any] = {
        "feature_extractor": extractor,
        "feature_extractor_weights_path": str(weights.path),
        **metrics,
        **_fidelity_kwargs(params, dev, n_gen, n_real, verbose=verbose),
    }
    wanted = [m for m in ("isc", "fid", "kid", "prc") if kwargs.get(m)]
    if not wanted:
        raise PipelineError("fidelity: no metric asked for")
    layer = {m: resolve_feature_layer_for_metric(m, **kwargs) for m in wanted}
    layers = sorted(set(layer.values()))
    cache = params.path(params.evaluate.cache_dir)
    name = real_cache_name(n_real, extractor, weights, dev, tf32)
    with _on(dev), numerics(tf32):
        fe = create_feature_extractor(extractor, layers, **kwargs)

        def features_of(ds: GreyAsRGB) -> dict[str, torch.Tensor]:
            return get_featuresdict_from_dataset(
                ds, fe, kwargs["batch_size"], kwargs["cuda"], kwargs["save_cpu_ram"], verbose
            )

        gen = features_of(generated)
        ref = reference_features(cache, name, extractor, layers, n_real, lambda: features_of(real))
        # The metrics as calculate_metrics_one_feature_extractor computes them from the two
        # feature dicts (and under the same device and precision settings it ran in).
        out: dict[str, float] = {}
        if "isc" in layer:
            out.update(isc_featuresdict_to_metric(gen, layer["isc"], **kwargs))
        if "fid" in layer:
            stats = [fid_featuresdict_to_statistics(fd, layer["fid"]) for fd in (gen, ref)]
            out.update(fid_statistics_to_metric(*stats, verbose))
        if "kid" in layer:
            out.update(kid_featuresdict_to_metric(gen, ref, layer["kid"], **kwargs))
        if "prc" in layer:
            out.update(prc_featuresdict_to_metric(gen, ref, layer["prc"], **kwargs))
    return out


def feature_cache_path(cache: Path, name: str, extractor: str, layer: str) -> Path:
    """The reference features of one layer: ``<cache>/<name>-<extractor>-features-<layer>.pt``
    (torch-fidelity's own naming; the file holds one plain tensor, which is also what
    torch-fidelity wrote there, so an existing cache of its features is reused)."""
    return cache / f"{name}-{extractor}-features-{layer}.pt"


def reference_features(
    cache: Path,
    name: str,
    extractor: str,
    layers: list[str],
    n: int,
    extract: Callable[[], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The reference set's features {layer: float [n, d]} from the cache, or extracted (all
    layers, when any is missing or unusable) and cached as plain tensors."""
    paths = {lay: feature_cache_path(cache, name, extractor, lay) for lay in layers}
    found = {lay: load_features(path, n) for lay, path in paths.items()}
    if all(feats is not None for feats in found.values()):
        return {lay: feats for lay, feats in found.items() if feats is not None}
    feats = extract()
    for lay, path in paths.items():
        save_torch(feats[lay], path)
    return {lay: feats[lay] for lay in layers}


def renamed(section: type[Section], result: dict[str, float]) -> dict[str, float]:
    """torch-fidelity's result keys -> the field names of a metrics section."""
    return {ours: result[theirs] for ours, theirs in section.sources().items() if theirs in result}


@contextlib.contextmanager
def _on(dev: torch.device) -> Iterator[None]:
    # torch-fidelity moves work to "the" CUDA device; make that the one asked for.
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            yield
    else:
        yield
