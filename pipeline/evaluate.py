"""Scores for generated MNIST samples, all through torch-fidelity's public API.

Two evaluators, each selectable in ``evaluate.extractors``:

* ``classifier``: our MNIST CNN (pipeline/classifier.py) registered as the torch-fidelity
  feature extractor ``mnist-classifier``: FID/KID/precision/recall on its 128-d penultimate
  features, IS on its logits (torch-fidelity softmaxes them: at most 10 for MNIST), plus class
  coverage from its predictions and, for conditional samples, label accuracy. Fast on a CPU.
* ``inception``: torch-fidelity's ``inception-v3-compat`` (FID, IS, KID) and ``vgg16``
  (precision/recall, torch-fidelity's default for PRC). Needs their weights: a local file from
  params, torch's hub cache, or a download; when none works the stage fails up front with one
  line saying how to proceed. ~6 img/s on a 2-core CPU: a GPU job.

Reference set: the first ``evaluate.n_real`` MNIST test images. Its features are extracted
once per extractor and kept in torch-fidelity's cache under ``evaluate.cache_dir``, named after
the extractor, ``n_real`` and a hash of the weights, so a retrained classifier never reuses
stale features.

Images go to torch-fidelity as uint8 [3, 28, 28] (grey tiled to 3 channels); our extractor
takes one channel back.

The metrics document (``metrics/VARIANT.json``; a section is absent when its extractor is not
in ``evaluate.extractors``)::

    {"variant": str, "n_generated": int, "n_real": int,
     "classifier": {"network", "fid", "kid_mean", "kid_std", "precision", "recall",
                    "is_mean", "is_std", "histogram": [10 floats], "coverage": int,
                    "kl_uniform", "label_accuracy": float | null, "seconds"},
     "inception": {"network", "fid", "is_mean", "is_std", "kid_mean", "kid_std",
                   "precision", "recall", "seconds"}}
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchvision.models import VGG16_Weights

from pipeline.classifier import (
    checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    predict,
)
from pipeline.config import MIN_EVAL_IMAGES, Params, flatten
from pipeline.data import N_CLASSES, load_split
from pipeline.devices import resolve_device
from pipeline.errors import PipelineError, first_line
from pipeline.io import DOWNLOAD_ERRORS, download, file_hash, write_json
from pipeline.variants import known

CLASSIFIER_EXTRACTOR = "mnist-classifier"
CLASSIFIER_NETWORK = "MNIST CNN (penultimate 128-d features; softmax for IS)"
INCEPTION_EXTRACTOR = "inception-v3-compat"
VGG16_EXTRACTOR = "vgg16"
INCEPTION_NETWORK = "inception-v3-compat (FID/IS/KID); VGG16 (precision/recall)"
# What torch-fidelity's default VGG16 loads (torchvision's ImageNet weights).
VGG16_URL = VGG16_Weights.IMAGENET1K_V1.url

COVERAGE_MIN_MASS = 0.05  # a digit "is covered" when it gets at least 5% of the samples
MIN_IMAGES = MIN_EVAL_IMAGES  # IS uses 10 splits; precision/recall need > 3 neighbours
ISC_SPLITS = 10


# --------------------------------------------------------------------------------------------
# torch-fidelity plumbing: the feature extractor and the datasets


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


def _register() -> None:
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


# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Samples:
    images: torch.Tensor  # uint8 [N, 1, 28, 28]
    labels: torch.Tensor | None  # int64 [N], the requested digits (conditional variants only)


def samples_path(params: Params, variant: str) -> Path:
    return params.path(params.sample.out_dir) / variant / "samples.pt"


def load_samples(params: Params, variant: str) -> Samples:
    """The variant's ``samples.pt``: uint8 images [N, 1, 28, 28] and optional int64 labels [N]."""
    path = samples_path(params, variant)
    if not path.is_file():
        raise PipelineError(f"{path}: samples not found; run `pipeline sample {variant}` first")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / foreign file: one line, not a traceback
        raise PipelineError(
            f"{path}: unreadable samples file ({first_line(err)}); rerun `pipeline sample {variant}`"
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    _check_images(images, str(path))
    labels = data.get("labels")
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.shape != (len(images),)
    ):
        raise PipelineError(f"{path}: 'labels' must be int64 [N] matching the images")
    return Samples(images, labels.long() if labels is not None else None)


def _check_images(images: Any, where: str) -> None:
    """One-line PipelineError unless ``images`` is uint8 [N, 1, 28, 28]."""
    if (
        not isinstance(images, torch.Tensor)
        or images.dtype != torch.uint8
        or images.dim() != 4
        or tuple(images.shape[1:]) != (1, 28, 28)
    ):
        got = (
            f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "none"
        )
        raise PipelineError(f"{where}: 'images' must be uint8 [N, 1, 28, 28] (got {got})")


def real_reference(params: Params) -> torch.Tensor:
    """The reference set: the first ``evaluate.n_real`` MNIST test images, uint8 [n, 28, 28]."""
    images, _ = load_split(params, "test")
    return images[: params.evaluate.n_real]


# --------------------------------------------------------------------------------------------
# weights of the Inception path: params file, torch hub cache, or a download


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


# --------------------------------------------------------------------------------------------
# scoring


def _fidelity_kwargs(
    params: Params, dev: torch.device, n_gen: int, n_real: int, verbose: bool = False
) -> dict[str, Any]:
    return {
        "cuda": dev.type == "cuda",
        "batch_size": params.evaluate.batch_size,
        "verbose": verbose,
        "cache": True,
        "cache_root": str(params.path(params.evaluate.cache_dir)),
        "isc_splits": min(ISC_SPLITS, n_gen),
        "kid_subset_size": min(params.evaluate.kid_subset_size, n_real, n_gen),
        # No DataLoader worker processes: the images are already in memory, and forking
        # workers costs more than it saves for 28x28 tensors. (It also selects torch-fidelity's
        # chunked precision/recall, the same metric computed with less peak memory.)
        "save_cpu_ram": True,
    }


def _fidelity(
    params: Params,
    dev: torch.device,
    generated: GreyAsRGB,
    real: GreyAsRGB,
    extractor: str,
    weights: Weights,
    **metrics: bool,
) -> dict[str, float]:
    """torch-fidelity's ``metrics`` for generated vs real on one feature extractor; the real
    features are cached under a name keyed by the set size, the extractor and its weights."""
    n_gen, n_real = len(generated), len(real)
    with _on(dev):
        return torch_fidelity.calculate_metrics(
            input1=generated,
            input2=real,
            input2_cache_name=f"mnist-test-n{n_real}-{extractor}-{weights.digest}",
            feature_extractor=extractor,
            feature_extractor_weights_path=str(weights.path),
            **metrics,
            # torch-fidelity's progress bars for the ImageNet nets (Inception-v3 scores ~6
            # images/s on 2 CPU cores); the MNIST classifier takes seconds, so stays quiet.
            **_fidelity_kwargs(
                params, dev, n_gen, n_real, verbose=extractor != CLASSIFIER_EXTRACTOR
            ),
        )


@contextlib.contextmanager
def _on(dev: torch.device) -> Iterator[None]:
    # torch-fidelity moves work to "the" CUDA device; make that the one asked for.
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            yield
    else:
        yield


def class_coverage(
    predicted: torch.Tensor, requested: torch.Tensor | None = None
) -> dict[str, Any]:
    """Class statistics of predicted digits (int64 [N]).

    ``histogram``: fraction per digit; ``coverage``: digits with >= 5% of the mass;
    ``kl_uniform``: KL(histogram || uniform) in nats (0 for balanced, log 10 for one class);
    ``label_accuracy``: fraction predicted == requested (None without requested labels).
    """
    counts = torch.bincount(predicted.cpu(), minlength=N_CLASSES).double()
    hist = counts / counts.sum()
    nz = hist[hist > 0]
    kl = float((nz * (nz * N_CLASSES).log()).sum())
    label_acc = None
    if requested is not None:
        label_acc = float((predicted.cpu() == requested.cpu()).double().mean())
    return {
        "histogram": [float(h) for h in hist],
        "coverage": int((hist >= COVERAGE_MIN_MASS).sum()),
        "kl_uniform": kl,
        "label_accuracy": label_acc,
    }


# Our metrics-file names for torch-fidelity's result keys.
_FIDELITY_KEYS = {
    "fid": torch_fidelity.KEY_METRIC_FID,
    "kid_mean": torch_fidelity.KEY_METRIC_KID_MEAN,
    "kid_std": torch_fidelity.KEY_METRIC_KID_STD,
    "precision": torch_fidelity.KEY_METRIC_PRECISION,
    "recall": torch_fidelity.KEY_METRIC_RECALL,
    "is_mean": torch_fidelity.KEY_METRIC_ISC_MEAN,
    "is_std": torch_fidelity.KEY_METRIC_ISC_STD,
}


def _renamed(m: dict[str, float]) -> dict[str, float]:
    return {ours: m[theirs] for ours, theirs in _FIDELITY_KEYS.items()}


def _classifier_metrics(
    params: Params,
    dev: torch.device,
    generated: torch.Tensor,
    requested: torch.Tensor | None,
    real: torch.Tensor,
) -> dict[str, Any]:
    """Classifier section for generated uint8 [N, 1, 28, 28] vs real uint8 [M, 28, 28]."""
    start = time.perf_counter()
    ckpt_file = checkpoint_path(params)
    ckpt = load_checkpoint(ckpt_file)
    weights = Weights(ckpt_file, file_hash(ckpt_file)[:16])
    _register()
    m = _fidelity(
        params, dev, GreyAsRGB(generated), GreyAsRGB(real), CLASSIFIER_EXTRACTOR, weights,
        isc=True, fid=True, kid=True, prc=True,
    )  # fmt: skip
    # Coverage needs per-image predictions, which calculate_metrics does not return; one
    # more forward pass of the CNN over the samples costs about a second on a CPU.
    model = model_from_checkpoint(ckpt, dev)
    predicted = predict(model, generated.to(dev))
    cov = class_coverage(predicted, requested)
    return {
        "network": CLASSIFIER_NETWORK,
        **_renamed(m),
        **cov,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _inception_metrics(
    params: Params,
    dev: torch.device,
    generated: torch.Tensor,
    real: torch.Tensor,
    weights: tuple[Weights, Weights],
) -> dict[str, Any]:
    """Inception section: inception-v3-compat FID/IS/KID and VGG16 precision/recall."""
    start = time.perf_counter()
    inception, vgg = weights
    gen_ds, real_ds = GreyAsRGB(generated), GreyAsRGB(real)
    # Two calls: torch-fidelity takes one weights path per call, and PRC uses its own network.
    with _bad_weights_as_error(inception.path, "inception_weights"):
        m = _fidelity(
            params, dev, gen_ds, real_ds, INCEPTION_EXTRACTOR, inception,
            isc=True, fid=True, kid=True,
        )  # fmt: skip
    with _bad_weights_as_error(vgg.path, "vgg16_weights"):
        m.update(_fidelity(params, dev, gen_ds, real_ds, VGG16_EXTRACTOR, vgg, prc=True))
    return {
        "network": INCEPTION_NETWORK,
        **_renamed(m),
        "seconds": round(time.perf_counter() - start, 3),
    }


@contextlib.contextmanager
def _bad_weights_as_error(path: Path, key: str) -> Iterator[None]:
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


def _check_inputs_up_front(
    params: Params, extractors: Sequence[str]
) -> tuple[Weights, Weights] | None:
    """Fail before any computation when something the requested extractors need is missing."""
    if "classifier" in extractors:
        load_checkpoint(checkpoint_path(params))  # one-line error if absent or unreadable
    if "inception" not in extractors:
        return None
    cfg = params.evaluate
    return (
        resolve_weights(cfg.inception_weights, URL_INCEPTION_V3, "inception_weights", params),
        resolve_weights(cfg.vgg16_weights, VGG16_URL, "vgg16_weights", params),
    )


def score(
    params: Params,
    name: str,
    generated: torch.Tensor,
    requested: torch.Tensor | None = None,
    device: str | None = None,
    extractors: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All metrics of generated uint8 [N, 1, 28, 28] vs the test reference; writes nothing.

    ``requested``: int64 [N] digits asked of a conditional generator (label accuracy), or
    None. ``extractors`` overrides ``evaluate.extractors`` (e.g. ``["classifier"]`` for a
    tuning objective). Returns the metrics document described in the module docstring.
    """
    extractors = list(params.evaluate.extractors if extractors is None else extractors)
    unknown = set(extractors) - {"classifier", "inception"}
    if unknown or not extractors:
        raise PipelineError(f"extractors must be classifier and/or inception (got {extractors})")
    _check_images(generated, name)
    if len(generated) < MIN_IMAGES:
        raise PipelineError(f"{name}: {len(generated)} images; at least {MIN_IMAGES} are needed")
    if requested is not None and tuple(requested.shape) != (len(generated),):
        raise PipelineError(f"{name}: requested labels must be int64 [N] matching the images")
    dev = resolve_device(device or params.evaluate.device)
    weights = _check_inputs_up_front(params, extractors)
    real = real_reference(params)
    doc: dict[str, Any] = {"variant": name, "n_generated": len(generated), "n_real": len(real)}
    try:
        if "classifier" in extractors:
            doc["classifier"] = _classifier_metrics(params, dev, generated, requested, real)
        if weights is not None:
            doc["inception"] = _inception_metrics(params, dev, generated, real, weights)
    except torch.OutOfMemoryError:
        raise PipelineError(
            f"{name}: out of memory on {dev}; lower evaluate.batch_size "
            f"(now {params.evaluate.batch_size})"
        ) from None
    return doc


def flat_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """Numeric leaves as MLflow metrics: ``eval.classifier.fid``, ``eval.classifier.hist_3``..."""
    out: dict[str, float] = {"eval.n_generated": doc["n_generated"], "eval.n_real": doc["n_real"]}
    for section in ("classifier", "inception"):
        if section not in doc:
            continue
        values = dict(doc[section])
        for digit, mass in enumerate(values.pop("histogram", [])):
            values[f"hist_{digit}"] = mass
        for key, value in flatten(values, f"eval.{section}.").items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                out[key] = float(value)
    return out


def _log_to_run(params: Params, variant: str, doc: dict[str, Any], run_id: str | None) -> None:
    if run_id is None:
        from pipeline.train import RUN_ID_FILE, variant_dir

        print(
            f"warning: {variant_dir(params, variant) / RUN_ID_FILE} not found; metrics not "
            f"logged to MLflow (train {variant} through `pipeline train` to get a run)",
            file=sys.stderr,
        )
        return
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import log_metrics

    try:
        log_metrics(params, run_id, flat_metrics(doc))
    except MlflowException as err:
        raise PipelineError(
            f"metrics written, but logging them to MLflow run {run_id} failed: {first_line(err)}"
        ) from None


def metrics_path(params: Params, name: str) -> Path:
    return params.path(params.evaluate.out_dir) / f"{name}.json"


def evaluate_variant(params: Params, variant: str, device: str | None = None) -> Path:
    """Score ``samples/VARIANT/samples.pt`` -> ``metrics/VARIANT.json``, and log to MLflow.

    The JSON is written atomically and only when every configured metric was computed; the
    same numbers then go to the variant's training run (``models/VARIANT/run_id.txt``).
    """
    from pipeline.train import read_run_id, variant_dir

    known(variant)
    samples = load_samples(params, variant)
    run_id = read_run_id(variant_dir(params, variant))
    if run_id is not None:
        from pipeline.tracking import setup

        setup(params)  # an unreachable tracking server fails now, not after the scoring
    doc = score(params, variant, samples.images, samples.labels, device)
    path = metrics_path(params, variant)
    write_json(path, doc)
    _log_to_run(params, variant, doc, run_id)
    return path


def evaluate_floor(params: Params, device: str | None = None) -> Path:
    """The real-vs-real floor: first ``evaluate.floor_n`` MNIST train images vs the test
    reference, scored like a variant -> ``metrics/floor.json`` (no MLflow run)."""
    images, _ = load_split(params, "train")
    doc = score(params, "floor", images[: params.evaluate.floor_n].unsqueeze(1), None, device)
    path = metrics_path(params, "floor")
    write_json(path, doc)
    return path
