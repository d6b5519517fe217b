"""Evaluation through torch-fidelity (no mocks): classifier metrics on real MNIST, the Inception
path on locally generated random weights, errors, the JSON schema and MLflow logging."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import pipeline.stages.evaluate.stage as ev
from pipeline.cli import app
from pipeline.infra import weights
from pipeline.infra.config import Params
from pipeline.infra.data import load_split
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import file_hash
from pipeline.infra.metrics import MetricsDoc
from pipeline.infra.params import load_params
from pipeline.stages.evaluate.fidelity import CLASSIFIER_NETWORK
from tests.conftest import TINY, deep_update, write_params
from tests.test_classifier import train_once

CLASSIFIER_KEYS = {
    "network",
    "fid",
    "kid_mean",
    "kid_std",
    "precision",
    "recall",
    "is_mean",
    "is_std",
    "histogram",
    "coverage",
    "kl_test_labels",
    "label_accuracy",
    "seconds",
    "fid_inf",
    "density",
    "knn_coverage",
    "kid_subset_size",
    "kid_subsets",
    "fid_inf_n_min",
    "fid_inf_n_max",
    "fid_inf_points",
    "prdc_k",
}
INCEPTION_KEYS = {
    "network",
    "fid",
    "is_mean",
    "is_std",
    "kid_mean",
    "kid_std",
    "precision",
    "recall",
    "seconds",
    "kid_subset_size",
    "kid_subsets",
}


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    return train_once(tmp_path_factory, prepared_dir)


def make_params(
    root: Path, prepared_dir: Path, classifier_dir: Path, **evaluate: Any
) -> tuple[Params, Path]:
    over = deep_update(
        TINY,
        {
            "data": {"dir": str(prepared_dir)},
            "classifier": {"out_dir": str(classifier_dir)},
            "evaluate": evaluate,
        },
    )
    path = write_params(root, over)
    return load_params(path), path


def write_samples(
    params: Params, variant: str, images: torch.Tensor, labels: torch.Tensor | None = None
) -> Path:
    """What `pipeline sample` writes: uint8 [N, 1, 28, 28] (+ int64 [N] requested labels)."""
    data: dict[str, torch.Tensor] = {"images": images.reshape(-1, 1, 28, 28).to(torch.uint8)}
    if labels is not None:
        data["labels"] = labels
    path = ev.samples_path(params, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


@pytest.fixture
def setup(tmp_path: Path, prepared_dir: Path, classifier_dir: Path) -> tuple[Params, Path]:
    """Tiny classifier-only params (500 real test images) in tmp_path."""
    return make_params(tmp_path, prepared_dir, classifier_dir)


def test_identical_sets_score_zero_and_noise_scores_far(setup: tuple[Params, Path]) -> None:
    params, _ = setup
    test_images, _ = load_split(params, "test")
    real = test_images[: params.evaluate.n_real].unsqueeze(1)
    same = ev.score(params, "same", real).classifier
    noise = torch.randint(0, 256, (500, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    far = ev.score(params, "noise", noise.to(torch.uint8)).classifier

    assert far.fid > 100
    assert abs(same.fid) < 1e-6 * far.fid
    assert same.precision == same.recall == 1.0
    # Noise lies outside the real manifold: at most a stray image inside one real k-NN ball
    # (1 of 500 with the classifier trained on an AVX-512 host; none on the AVX2 one).
    assert far.precision < 0.01 and far.recall == 0.0
    assert far.kid_mean > 100 * abs(same.kid_mean)
    assert far.fid_inf > 100 and abs(same.fid_inf) < 0.05 * far.fid_inf
    # Every real image is its own nearest sample: full coverage; noise is near none of them.
    assert same.knn_coverage == 1.0 and same.density > 0.9
    assert far.knn_coverage < 0.01 and far.density < 0.01
    # IS on the classifier's softmax: near 10 for balanced confident digits, 1 for one class.
    assert 8.0 < same.is_mean <= 10.0
    assert far.is_mean < 2.0


def test_one_digit_generator_has_coverage_one(setup: tuple[Params, Path]) -> None:
    params, _ = setup
    images, labels = load_split(params, "test")
    threes = images[labels == 3].unsqueeze(1)
    m = ev.score(params, "threes", threes).classifier
    assert m.coverage == 1
    assert m.histogram[3] > 0.97
    # Against the reference's label shares: all threes give KL = -log(share of threes among
    # the first n_real test labels); a few threes read as another digit move it a little, a
    # collapsed generator repeating one image hits it exactly.
    share3 = float((labels[: params.evaluate.n_real] == 3).double().mean())
    assert m.kl_test_labels == pytest.approx(-math.log(share3), abs=0.15)
    assert m.recall < 0.3  # the other nine digits are missed
    assert m.label_accuracy is None
    collapsed = threes[:1].expand(200, -1, -1, -1)
    m = ev.score(params, "collapsed", collapsed).classifier
    assert m.coverage == 1
    assert m.kl_test_labels == pytest.approx(-math.log(share3), abs=1e-9)
    assert m.is_mean == pytest.approx(1.0, abs=1e-3)


def test_class_coverage_definition() -> None:
    balanced = torch.arange(1000) % 10
    cov = ev.class_coverage(balanced, balanced)
    assert cov["coverage"] == 10
    assert cov["kl_test_labels"] == pytest.approx(0.0, abs=1e-12)  # uniform reference
    assert cov["histogram"] == [0.1] * 10
    assert cov["label_accuracy"] == 1.0
    # 4% of a digit is below the 5% threshold; 6% is above.
    skewed = torch.cat([torch.zeros(90), torch.ones(4), torch.full((6,), 2)]).long()
    cov = ev.class_coverage(skewed, torch.zeros(100, dtype=torch.long))
    assert cov["coverage"] == 2
    assert cov["label_accuracy"] == pytest.approx(0.9)
    assert ev.class_coverage(torch.full((7,), 5))["kl_test_labels"] == pytest.approx(math.log(10))


# The MNIST test set's label counts, digits 0-9 (10,000 images).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_kl_is_to_the_reference_label_shares_not_to_uniform() -> None:
    # Half zeros, half ones against shares 0.2, 0.2 and 0.075 for each of the rest:
    # KL = 2 · 0.5 · log(0.5 / 0.2) = log 2.5.
    predicted = torch.tensor([0, 1] * 50)
    ref = torch.tensor([0.2, 0.2] + [0.075] * 8, dtype=torch.float64)
    assert ev.class_coverage(predicted, reference=ref)["kl_test_labels"] == pytest.approx(
        math.log(2.5)
    )
    # Digits drawn exactly in the test set's proportions: KL 0. A uniform sampler (cGAN's
    # labels): KL(uniform || test) = sum 0.1 · log(0.1 / (c / 10,000)) = 0.001725 nats by hand,
    # where the old KL to uniform would have scored the uniform sampler 0 and real data worse.
    test = ev.label_shares(
        torch.cat([torch.full((c,), d) for d, c in enumerate(MNIST_TEST_COUNTS)])
    )
    assert test.tolist() == pytest.approx([c / 10_000 for c in MNIST_TEST_COUNTS])
    like_test = torch.cat([torch.full((c,), d) for d, c in enumerate(MNIST_TEST_COUNTS)])
    assert ev.class_coverage(like_test, reference=test)["kl_test_labels"] == pytest.approx(
        0.0, abs=1e-12
    )
    uniform = ev.class_coverage(torch.arange(10_000) % 10, reference=test)["kl_test_labels"]
    assert uniform == pytest.approx(
        sum(0.1 * math.log(0.1 / (c / 10_000)) for c in MNIST_TEST_COUNTS)
    )
    assert uniform == pytest.approx(0.001725, abs=5e-7)
    # One digit only: -log of that digit's share (fives: -log 0.0892).
    assert ev.class_coverage(torch.full((7,), 5), reference=test)[
        "kl_test_labels"
    ] == pytest.approx(-math.log(0.0892))


def test_variant_json_schema_and_label_accuracy(setup: tuple[Params, Path]) -> None:
    params, _ = setup
    images, labels = load_split(params, "test")
    write_samples(params, "cgan", images[:1000], labels[:1000])
    path = ev.evaluate_variant(params, "cgan")
    assert path == params.path("metrics") / "cgan" / "seed0.json"  # the first of train.seeds
    doc = json.loads(path.read_text())

    assert set(doc) == {"variant", "seed", "n_generated", "n_real", "classifier"}  # no "inception"
    assert (doc["variant"], doc["seed"], doc["n_generated"], doc["n_real"]) == (
        "cgan",
        0,
        1000,
        500,
    )
    m = doc["classifier"]
    assert set(m) == CLASSIFIER_KEYS
    assert m["network"] == CLASSIFIER_NETWORK
    # The sample counts each score was computed with, beside it.
    assert (m["kid_subset_size"], m["kid_subsets"], m["prdc_k"]) == (100, 100, 5)
    assert (m["fid_inf_n_min"], m["fid_inf_n_max"], m["fid_inf_points"]) == (200, 1000, 15)
    assert len(m["histogram"]) == 10 and sum(m["histogram"]) == pytest.approx(1.0)
    assert isinstance(m["coverage"], int) and m["coverage"] == 10
    assert m["label_accuracy"] >= 0.98
    counts = {k for k in CLASSIFIER_KEYS if k.startswith(("kid_sub", "fid_inf_", "prdc"))}
    for key in CLASSIFIER_KEYS - {"network", "histogram", "label_accuracy", "coverage"} - counts:
        assert isinstance(m[key], float) and math.isfinite(m[key]), key

    # Requested labels that do not match what was drawn: label accuracy collapses.
    shuffled = labels[:1000][torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    write_samples(params, "cgan", images[:1000], shuffled)
    low = json.loads(ev.evaluate_variant(params, "cgan").read_text())["classifier"]
    assert low["label_accuracy"] < 0.3
    assert low["fid"] == pytest.approx(m["fid"])  # same images, same scores

    # another training seed: its own samples and metrics file, which names the seed
    other = ev.samples_path(params, "cgan", 2)
    other.parent.mkdir(parents=True)
    other.write_bytes(ev.samples_path(params, "cgan").read_bytes())
    path = ev.evaluate_variant(params, "cgan", seed=2)
    assert path == params.path("metrics") / "cgan" / "seed2.json"
    assert json.loads(path.read_text())["seed"] == 2


def test_real_features_are_cached_per_classifier(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    params, _ = make_params(tmp_path / "a", prepared_dir, classifier_dir)
    images, _ = load_split(params, "train")
    gen = images[:300].unsqueeze(1)
    first = ev.score(params, "x", gen).classifier
    cache = params.path(params.evaluate.cache_dir)
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    digest = file_hash(classifier_dir / "classifier.pt")[:16]
    assert files and all(f"n500-mnist-classifier-{digest}-cpu-fp32" in name for name in files)

    # A second variant reuses the cached reference features: nothing is rewritten.
    second = ev.score(params, "y", gen).classifier
    assert second.fid == pytest.approx(first.fid)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files

    # A retrained classifier gets its own cache entry (no stale features).
    other = tmp_path / "other-classifier"
    other.mkdir()
    ckpt = torch.load(classifier_dir / "classifier.pt", weights_only=True)
    ckpt["state_dict"]["fc.weight"] = ckpt["state_dict"]["fc.weight"] * 1.5
    torch.save(ckpt, other / "classifier.pt")
    params2, _ = make_params(tmp_path / "a", prepared_dir, other)
    third = ev.score(params2, "z", gen).classifier
    assert len(list(cache.iterdir())) == 2 * len(files)
    assert third.fid != pytest.approx(first.fid)


def test_metrics_reach_the_variant_mlflow_run(setup: tuple[Params, Path]) -> None:
    import mlflow

    from pipeline.infra import tracking

    params, _ = setup
    exp_id = tracking.setup(params)
    with mlflow.start_run(experiment_id=exp_id) as run:
        run_id = run.info.run_id
    run_file = params.path(params.train.out_dir) / "gan" / "seed0" / "run_id.txt"
    run_file.parent.mkdir(parents=True)
    run_file.write_text(run_id + "\n")
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:200])

    doc = json.loads(ev.evaluate_variant(params, "gan").read_text())
    logged = mlflow.MlflowClient(tracking.resolve_uri(params)).get_run(run_id).data.metrics
    assert logged["eval.classifier.fid"] == pytest.approx(doc["classifier"]["fid"])
    assert logged["eval.classifier.coverage"] == doc["classifier"]["coverage"]
    assert logged["eval.classifier.hist_3"] == pytest.approx(doc["classifier"]["histogram"][3])
    assert logged["eval.n_generated"] == 200
    assert "eval.classifier.label_accuracy" not in logged  # null for unconditional samples


def test_without_a_run_id_metrics_are_written_with_a_warning(
    setup: tuple[Params, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    params, _ = setup
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:100])
    path = ev.evaluate_variant(params, "gan")
    assert json.loads(path.read_text())["n_generated"] == 100
    assert "run_id.txt not found" in capsys.readouterr().err


def test_an_unreachable_tracking_server_fails_before_scoring(
    setup: tuple[Params, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scores would go to a run on a server that is down: say so at once (scoring with
    Inception takes an hour on a CPU), and leave no metrics file behind."""
    import socket

    from pipeline.infra.errors import PipelineError

    params, _ = setup
    run_file = params.path(params.train.out_dir) / "gan" / "seed0" / "run_id.txt"
    run_file.parent.mkdir(parents=True)
    run_file.write_text("0123456789abcdef\n")
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:100])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIPELINE_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(PipelineError, match="unreachable"):
        ev.evaluate_variant(params, "gan")
    assert not ev.metrics_path(params, "gan").exists()  # scoring first would have written it


def test_floor_scores_train_images_against_test(setup: tuple[Params, Path]) -> None:
    params, _ = setup
    doc = json.loads(ev.evaluate_floor(params).read_text())
    assert (doc["variant"], doc["n_generated"], doc["n_real"]) == ("floor", 500, 500)
    m = doc["classifier"]
    assert m["label_accuracy"] is None
    assert m["coverage"] == 10 and m["kl_test_labels"] < 0.05
    assert m["precision"] > 0.7 and m["recall"] > 0.7


def test_missing_inputs_are_one_line_errors(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    params, _ = make_params(tmp_path, prepared_dir, classifier_dir)
    with pytest.raises(PipelineError, match=r"run `pipeline sample gan --seed 0` first"):
        ev.evaluate_variant(params, "gan")

    bare, _ = make_params(tmp_path / "bare", prepared_dir, tmp_path / "no-classifier")
    images, _ = load_split(params, "train")
    write_samples(bare, "gan", images[:100])
    with pytest.raises(PipelineError, match=r"run `pipeline classifier` first"):
        ev.evaluate_variant(bare, "gan")
    assert not ev.metrics_path(bare, "gan").exists()

    bad = ev.samples_path(params, "wgan")
    bad.parent.mkdir(parents=True)
    torch.save({"images": torch.zeros(20, 1, 28, 28)}, bad)  # float, not uint8
    with pytest.raises(PipelineError, match=r"uint8 \[N, 1, 28, 28\]"):
        ev.evaluate_variant(params, "wgan")


# --------------------------------------------------------------------------------------------
# The Inception path without the internet


@pytest.fixture(scope="session")
def random_fidelity_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Weights files in torch-fidelity's formats with random values (no download).

    inception-v3-compat loads a plain state dict of its own module; vgg16 one of
    torchvision's ``vgg16()``. Shapes come from the real architectures.
    """
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    root = tmp_path_factory.mktemp("fidelity-weights")
    empty = root / "empty.pt"
    torch.save({}, empty)

    class Architecture(FeatureExtractorInceptionV3):
        # Build the network only; the constructor would otherwise insist on real weights.
        def load_state_dict(
            self, state_dict: Any, strict: bool = True, assign: bool = False
        ) -> Any:
            return None

    torch.manual_seed(0)
    state = Architecture("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    for module in state.modules():
        if isinstance(module, nn.Conv2d):
            # He init keeps activations alive through ~90 layers (default init fades to 0).
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    inception = root / "inception.pth"
    torch.save(state.state_dict(), inception)
    vgg = root / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), vgg)
    return inception, vgg


@pytest.mark.slow  # Inception-v3 and VGG16 forward passes on the CPU
def test_inception_section_with_local_weights(
    tmp_path: Path,
    prepared_dir: Path,
    classifier_dir: Path,
    random_fidelity_weights: tuple[Path, Path],
    capfd: pytest.CaptureFixture[str],
) -> None:
    inception, vgg = random_fidelity_weights
    # Inception runs at ~6 img/s on a 2-core CPU: 20 real + 20 generated images only.
    params, _ = make_params(
        tmp_path,
        prepared_dir,
        classifier_dir,
        extractors=["classifier", "inception"],
        inception_weights=str(inception),
        vgg16_weights=str(vgg),
        n_real=20,
        batch_size=20,
    )
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:20])
    doc = json.loads(ev.evaluate_variant(params, "gan").read_text())
    err = capfd.readouterr().err  # progress for the slow ImageNet nets, none for the classifier
    assert 'extractor "inception-v3-compat"' in err and 'extractor "vgg16"' in err
    assert "Processing samples" in err and "mnist-classifier" not in err

    assert set(doc) == {"variant", "seed", "n_generated", "n_real", "classifier", "inception"}
    m = doc["inception"]
    assert set(m) == INCEPTION_KEYS
    assert m["network"] == "inception-v3-compat (FID/IS/KID); VGG16 (precision/recall)"
    for key in INCEPTION_KEYS - {"network", "kid_subset_size", "kid_subsets"}:
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    assert (m["kid_subset_size"], m["kid_subsets"]) == (20, 100)
    assert m["fid"] > 0 and m["is_mean"] >= 1.0
    assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0
    cached = [p.name for p in params.path(params.evaluate.cache_dir).iterdir()]
    assert any(name.startswith("mnist-test-n20-inception-v3-compat-") for name in cached)
    assert any(name.startswith("mnist-test-n20-vgg16-") for name in cached)


def test_missing_inception_weights_fail_fast_in_one_line(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path, offline_hub: Path
) -> None:
    _, path = make_params(
        tmp_path, prepared_dir, classifier_dir, extractors=["classifier", "inception"]
    )
    params = load_params(path)
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:100])

    # Fails before any feature is extracted (no timing: the cache check below says it).
    with pytest.raises(PipelineError) as info:
        ev.evaluate_variant(params, "gan")
    msg = str(info.value)
    assert "\n" not in msg
    assert "evaluate.inception_weights" in msg and "evaluate.extractors to [classifier]" in msg
    assert not ev.metrics_path(params, "gan").exists()
    assert not params.path(params.evaluate.cache_dir).exists()  # nothing was computed

    # The same params scored with the classifier alone (what a tuning objective does).
    doc = ev.score(params, "gan", images[:100].unsqueeze(1), extractors=["classifier"])
    assert doc.inception is None and doc.classifier.coverage >= 8
    assert doc.computed() == ["classifier"]

    # Through the CLI: one line on stderr, exit code 1, no traceback.
    result = CliRunner().invoke(app, ["evaluate", "gan", "--params", str(path)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_weights_are_found_in_the_torch_hub_cache(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path, offline_hub: Path
) -> None:
    params, _ = make_params(tmp_path, prepared_dir, classifier_dir)
    assert ev.hub_file(weights.URL_INCEPTION_V3).parent == offline_hub / "hub" / "checkpoints"
    # a cached file is used only when its sha256 has the prefix its name promises
    prefix = hashlib.sha256(b"weights").hexdigest()[:8]
    url = f"http://127.0.0.1:9/weights-inception-{prefix}.pth"
    hub = ev.hub_file(url)
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"weights")
    found = ev.resolve_weights(None, url, "inception_weights", params)
    assert found.path == hub and found.digest == prefix

    with pytest.raises(PipelineError, match=r"evaluate.vgg16_weights: .*nope.pth: file not found"):
        ev.resolve_weights(Path("nope.pth"), weights.VGG16_URL, "vgg16_weights", params)


def test_wrong_weights_file_is_a_one_line_error(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path, random_fidelity_weights: tuple
) -> None:
    _, vgg = random_fidelity_weights
    params, _ = make_params(
        tmp_path,
        prepared_dir,
        classifier_dir,
        extractors=["inception"],
        inception_weights=str(classifier_dir / "classifier.pt"),  # not an Inception state dict
        vgg16_weights=str(vgg),
        n_real=20,
    )
    images, _ = load_split(params, "train")
    write_samples(params, "gan", images[:20])
    with pytest.raises(PipelineError, match=r"evaluate.inception_weights: .*classifier.pt") as info:
        ev.evaluate_variant(params, "gan")
    assert "\n" not in str(info.value)
    assert not ev.metrics_path(params, "gan").exists()


def test_flat_metrics_for_mlflow() -> None:
    doc = {
        "variant": "gan",
        "n_generated": 10,
        "n_real": 20,
        "classifier": {"network": "x", "fid": 1.5, "histogram": [0.1] * 10, "label_accuracy": None},
        "inception": {"network": "y", "fid": 30.0, "is_mean": 2.0},
    }
    flat = MetricsDoc.model_validate(doc).flat()
    assert flat["eval.classifier.fid"] == 1.5 and flat["eval.inception.fid"] == 30.0
    assert flat["eval.classifier.hist_9"] == 0.1
    assert "eval.classifier.network" not in flat
    assert "eval.classifier.label_accuracy" not in flat


def test_the_real_feature_cache_key_names_device_and_precision() -> None:
    """CPU float32, CUDA float32 and CUDA TF32 features are three cache entries (TF32 on a CPU
    is not a thing: the flag changes nothing there)."""
    from pipeline.infra.weights import Weights
    from pipeline.training.evaluator import real_cache_name

    w = Weights(Path("w.pt"), "abc")
    names = {
        real_cache_name(500, "x", w, torch.device(d), tf32)
        for d, tf32 in [("cpu", False), ("cpu", True), ("cuda", False), ("cuda:1", True)]
    }
    assert names == {
        "mnist-test-n500-x-abc-cpu-fp32", "mnist-test-n500-x-abc-cuda-fp32",
        "mnist-test-n500-x-abc-cuda-tf32",
    }  # fmt: skip


def test_evaluation_runs_in_float32_unless_tf32_is_chosen() -> None:
    """torch leaves cuDNN convolutions on TF32 by default; scoring sets both flags from
    evaluate.tf32 and puts them back afterwards."""
    from pipeline.infra.devices import numerics

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    cudnn.allow_tf32, matmul.allow_tf32 = True, False  # torch's defaults
    with numerics(tf32=False):
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
    with numerics(tf32=True):
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)
    assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, False)


def test_noise_stage_rescores_the_best_run_on_fresh_latents(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    """The lowest-FID run among the seeds in params is re-sampled on evaluate.noise_draws
    fresh latent draws, each scored; a run of a seed outside train.seeds is not considered."""
    from pipeline.infra import layout
    from pipeline.stages.evaluate.noise import measure_noise
    from pipeline.stages.train import train_variant
    from pipeline.training.sampling import latent_seed

    params, _ = make_params(tmp_path, prepared_dir, classifier_dir, noise_draws=2)
    train_variant(params, "gan", seed=1, epochs=1, subset=128, track=False, progress=False)
    for name, seed, fid in (("gan", 0, 50.0), ("gan", 1, 5.0), ("wgan", 0, 9.0), ("wgan", 7, 1.0)):
        path = layout.metrics_path(params, name, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"variant": name, "seed": seed, "classifier": {"fid": fid}}))
    doc = json.loads(measure_noise(params).read_text())
    assert (doc["variant"], doc["seed"], doc["picked_by"]) == ("gan", 1, "classifier.fid")
    assert doc["scored"]["classifier"]["fid"] == 5.0
    assert doc["precision"] == {"sample": "cpu-fp32"}  # the generator ran at train.tf32's
    assert [d["latent_seed"] for d in doc["draws"]] == [
        latent_seed(params.sample.seed, 1, k) for k in (1, 2)
    ]
    fids = [d["classifier"]["fid"] for d in doc["draws"]]
    assert all(f > 0 for f in fids) and fids[0] != fids[1]  # other latents, another score
    assert {d["n_generated"] for d in doc["draws"]} == {params.sample.n}
    off = params.with_section("evaluate", noise_draws=0)
    assert json.loads(measure_noise(off).read_text()) == {"draws": [], "n_draws": 0}
