"""The evaluator CNN: accuracy on a reduced budget, checkpoint format, seeding, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.classifier import (
    ClassifierResult,
    MnistCNN,
    accuracy,
    checkpoint_path,
    load_classifier,
    train_classifier,
)
from pipeline.cli import app
from pipeline.config import Params, load_params
from pipeline.data import load_split
from pipeline.errors import PipelineError
from tests.conftest import TINY, deep_update, write_params

# One epoch over the full training set: ~98.5% test accuracy in ~20 s on a 2-core CPU. The
# default budget (4 epochs, >= 99%) is measured in reports/benchmarks/evaluate_cpu.md.
SESSION_BUDGET = {"epochs": 1, "subset": None, "seed": 0}

_trained: dict[str, tuple[Path, ClassifierResult]] = {}


def train_once(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    """Train the session's classifier on first call; return its ``classifier.out_dir``.

    Shared by test_classifier.py and test_evaluate.py through this module-level cache, so the
    whole session trains one network.
    """
    if "dir" not in _trained:
        root = tmp_path_factory.mktemp("classifier")
        out = root / "models" / "classifier"
        params = _params(root, prepared_dir, {**SESSION_BUDGET, "out_dir": str(out)})
        _trained["dir"] = (out, train_classifier(params))
    return _trained["dir"][0]


def _params(root: Path, prepared_dir: Path, classifier: dict) -> Params:
    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "classifier": classifier})
    return load_params(write_params(root, over))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> ClassifierResult:
    train_once(tmp_path_factory, prepared_dir)
    return _trained["dir"][1]


def test_reaches_98_percent_and_stores_the_measured_accuracy(
    trained: ClassifierResult, tmp_path: Path, prepared_dir: Path
) -> None:
    assert trained.test_accuracy >= 0.98
    metrics = json.loads((trained.path.parent / "metrics.json").read_text())
    assert metrics["test_accuracy"] == trained.test_accuracy
    assert metrics["epochs"] == 1
    assert metrics["train_images"] == 60_000

    # A fresh load scores the full test set exactly as recorded.
    params = _params(tmp_path, prepared_dir, {"out_dir": str(trained.path.parent)})
    model = load_classifier(params, "cpu")
    assert not model.training
    images, labels = load_split(params, "test")
    assert len(labels) == 10_000
    assert accuracy(model, images, labels) == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_checkpoint_is_plain_tensors_and_primitives(trained: ClassifierResult) -> None:
    ckpt = torch.load(trained.path, weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}
    assert ckpt["meta"]["arch"] == "mnist-cnn-v1"
    assert ckpt["meta"]["feature_dim"] == 128
    model = MnistCNN()
    model.load_state_dict(ckpt["state_dict"])
    feats, logits = model.eval().features_and_logits(torch.zeros(2, 1, 28, 28))
    assert feats.shape == (2, 128) and logits.shape == (2, 10)


def test_training_is_seeded_and_honours_subset(tmp_path: Path, prepared_dir: Path) -> None:
    def run(name: str, seed: int) -> dict[str, torch.Tensor]:
        p = _params(
            tmp_path / name,
            prepared_dir,
            {"epochs": 1, "subset": 256, "batch_size": 64, "seed": seed},
        )
        result = train_classifier(p)
        meta = json.loads((result.path.parent / "metrics.json").read_text())
        assert meta["train_images"] == 256
        assert result.path == checkpoint_path(p)
        return torch.load(result.path, weights_only=True)["state_dict"]

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_missing_checkpoint_is_a_one_line_error(tmp_path: Path, prepared_dir: Path) -> None:
    params = _params(tmp_path, prepared_dir, {})
    with pytest.raises(PipelineError, match=r"run `pipeline classifier` first") as info:
        load_classifier(params, "cpu")
    assert "\n" not in str(info.value)


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path, prepared_dir: Path) -> None:
    params = _params(tmp_path, prepared_dir, {})
    path = checkpoint_path(params)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="unreadable classifier checkpoint") as info:
        load_classifier(params, "cpu")
    assert "\n" not in str(info.value)


def test_cli_command_trains_and_reports(tmp_path: Path, prepared_dir: Path) -> None:
    over = deep_update(
        TINY, {"data": {"dir": str(prepared_dir)}, "classifier": {"subset": 256, "epochs": 1}}
    )
    path = write_params(tmp_path, over)
    result = CliRunner().invoke(app, ["classifier", "--params", str(path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    assert (tmp_path / "models" / "classifier" / "classifier.pt").is_file()
    assert (tmp_path / "models" / "classifier" / "metrics.json").is_file()
