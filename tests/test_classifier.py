"""The evaluator CNN: accuracy on a reduced budget, checkpoint format, seeding, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.classifier import MnistCNN, accuracy, model_from_checkpoint, predict
from pipeline.infra.config import Params
from pipeline.infra.data import RESOURCES, load_split, to_model_range
from pipeline.infra.errors import PipelineError
from pipeline.infra.faults import AFTER_ENV, KILL_ENV
from pipeline.infra.params import load_params
from pipeline.stages.classifier import ClassifierResult, train_classifier
from pipeline.training.evaluator import checkpoint_path, load_classifier
from tests.conftest import (
    TINY,
    cached_across_runs,
    content_key,
    deep_update,
    once_per_run,
    write_params,
)

# One epoch over the full training set: ~98.5% test accuracy in ~20 s on a 2-core CPU. The
# default budget (4 epochs, >= 99%) is measured in reports/benchmarks/evaluate_cpu.md.
SESSION_BUDGET = {"epochs": 1, "subset": None, "seed": 0}

_trained: dict[str, tuple[Path, ClassifierResult]] = {}


def train_once(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    """Train the session's classifier on first call; return its ``classifier.out_dir``.

    Shared by test_classifier.py and test_evaluate.py through this module-level cache and
    across pytest-xdist workers (conftest.once_per_run), so a test run trains one network.
    """
    if "dir" not in _trained:

        def train(root: Path) -> dict:
            params = _params(root, prepared_dir, {**SESSION_BUDGET, "out_dir": "models/classifier"})
            r = train_classifier(params)
            return {"path": str(r.path.relative_to(root)), "test_accuracy": r.test_accuracy,
                    "seconds": r.seconds}  # fmt: skip

        def build(root: Path) -> dict:
            # Across test runs too: keyed by what the network depends on (its code, the data
            # code, the budget and the classifier params, the MNIST files' md5s, torch).
            cfg = _params(root / "_key", prepared_dir, SESSION_BUDGET)
            key = content_key(
                "session-classifier", SESSION_BUDGET, cfg.classifier.model_dump(mode="json",
                exclude={"out_dir"}), RESOURCES,
                modules=("pipeline.stages.classifier", "pipeline.core.classifier",
                         "pipeline.infra.data", "pipeline.infra.devices"),
            )  # fmt: skip
            shutil.rmtree(root / "_key")
            return cached_across_runs(key, root, train)

        root, r = once_per_run(tmp_path_factory, "classifier", build)
        result = ClassifierResult(root / r["path"], r["test_accuracy"], r["seconds"])
        _trained["dir"] = (root / "models" / "classifier", result)
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


def test_inference_is_channels_last_and_scores_as_the_trained_layout(
    trained: ClassifierResult, tmp_path: Path, prepared_dir: Path
) -> None:
    """The evaluator scores with channels-last conv weights (faster on a CPU): the same
    predictions and, to float rounding, the same features as the layout it trained in."""
    ckpt = torch.load(trained.path, weights_only=True)
    plain = MnistCNN()
    plain.load_state_dict(ckpt["state_dict"])
    plain.train()
    fast = model_from_checkpoint(ckpt)
    assert fast.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.conv[4].weight.is_contiguous(memory_format=torch.channels_last)
    images, labels = load_split(_params(tmp_path, prepared_dir, {}), "test")
    x = to_model_range(images[:1000])
    with torch.no_grad():
        want, got = plain.eval().features_and_logits(x), fast.features_and_logits(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(predict(fast, images[:1000]), want[1].argmax(1))
    # accuracy() scores a channels-last copy and leaves the model it was given as it was
    plain.train()
    assert accuracy(plain, images, labels) == pytest.approx(trained.test_accuracy, abs=1e-6)
    assert plain.training and plain.conv[4].weight.is_contiguous()


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


def _resume_epoch(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # absent, or being replaced right now
        return 0


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, prepared_dir: Path) -> None:
    # Killed after epoch 2 of 4, so the resumed run carries Adam, the schedule and the RNGs
    # across two more epochs; a small subset suffices: the weights must match exactly.
    budget = {"epochs": 4, "subset": 512, "batch_size": 64, "seed": 3, "device": "cpu"}
    ref = train_classifier(_params(tmp_path / "ref", prepared_dir, budget))
    assert not (ref.path.parent / "resume.pt").exists()  # a finished run leaves no partial
    ref_state = torch.load(ref.path, weights_only=True)["state_dict"]

    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "classifier": budget})
    path = write_params(tmp_path / "killed", over)
    cmd = [sys.executable, "-m", "pipeline", "classifier", "--params", str(path)]
    partial = tmp_path / "killed" / "models" / "classifier" / "resume.pt"
    # SIGKILLed while it writes its third resume state (after the write, before the rename)
    kill = {KILL_ENV: f"replace:{partial.name}", AFTER_ENV: "2"}
    killed = subprocess.run(cmd, env={**os.environ, **kill}, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    killed_at = _resume_epoch(partial)
    assert killed_at == 2, f"killed with resume.pt at epoch {killed_at}, not 2"
    assert not (partial.parent / "classifier.pt").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from epoch {killed_at}" in resumed.stderr
    state = torch.load(partial.parent / "classifier.pt", weights_only=True)["state_dict"]
    for name, tensor in ref_state.items():
        assert torch.equal(state[name], tensor), f"{name} differs after resume"
    metrics = json.loads((partial.parent / "metrics.json").read_text())
    assert metrics["test_accuracy"] == ref.test_accuracy
    assert not partial.exists()


def test_a_partial_run_of_another_config_is_not_resumed(
    tmp_path: Path, prepared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    budget = {"epochs": 2, "subset": 256, "batch_size": 64, "seed": 0, "device": "cpu"}
    params = _params(tmp_path, prepared_dir, budget)
    out = params.path(params.classifier.out_dir)
    # a partial run with another seed, then one with this config, as a kill would leave it
    first = train_classifier(_params(tmp_path / "ref", prepared_dir, budget))
    out.mkdir(parents=True)
    identity = {"arch": "mnist-cnn-v1", "epochs": 2, "train_images": 256, "seed": 99,
                "lr": 0.001, "batch_size": 64, "device": "cpu"}  # fmt: skip
    torch.save({"identity": identity, "epoch": 1}, out / "resume.pt")
    result = train_classifier(params)
    err = capsys.readouterr().err
    assert "another config (seed: 99 -> 0); starting over" in err
    ref = torch.load(first.path, weights_only=True)["state_dict"]
    got = torch.load(result.path, weights_only=True)["state_dict"]
    assert all(torch.equal(ref[k], got[k]) for k in ref)  # trained from scratch, not resumed
    assert not (out / "resume.pt").exists()
