"""The quality curve (pipeline/training/quality.py): classifier FID/KID every score_every
epochs and after the last, in the curves CSV and MLflow (step = epoch); it consumes no training
randomness, so weights and exact resume are those of a run without it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from pipeline.core.variants.base import registry
from pipeline.infra.config import Params
from pipeline.infra.params import load_params
from pipeline.stages.train import train_variant
from pipeline.training.loop import Trainer
from pipeline.training.quality import COLUMNS, QualityCurve
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import write_params
from tests.hostile import whole_and_resumed
from tests.test_classifier import train_once


@pytest.fixture
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    return train_once(tmp_path_factory, prepared_dir)


def _params(root: Path, prepared_dir: Path, classifier_dir: Path, **train: object) -> Params:
    over = {
        "data": {"dir": str(prepared_dir)},
        "classifier": {"out_dir": str(classifier_dir)},
        "train": {"subset": 256, "device": "cpu", "log_every": 3, "score_every": 2,
                  "score_n": 200, **train},
        "evaluate": {"n_real": 500, "kid_subset_size": 100},
    }  # fmt: skip
    return load_params(write_params(root, over))


def _weights(t: Trainer) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, net in t.nets.items() for k, v in net.state_dict().items()}


def test_curve_in_the_csv_and_mlflow_at_the_scored_epochs(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    import mlflow

    from pipeline.infra.layout import curves_path, quality_path
    from pipeline.infra.tracking import resolve_uri

    params = _params(tmp_path, prepared_dir, classifier_dir)
    result = train_variant(params, "gan", epochs=3, progress=False)
    with curves_path(params, "gan").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # Epoch 2 (score_every) and 3 (the last) are scored; epoch 1 is not.
    assert rows[0]["clf_fid"] == rows[0]["clf_kid"] == rows[0]["score_s"] == ""
    fids = [float(r["clf_fid"]) for r in rows[1:]]
    assert all(f > 0 for f in fids) and all(float(r["score_s"]) > 0 for r in rows[1:])
    assert result.history[2]["clf_fid"] == fids[1]
    # The scored epochs alone, for `dvc plots` (metrics/quality/gan.csv).
    with quality_path(params, "gan").open() as f:
        scored = list(csv.DictReader(f))
    assert [(r["epoch"], float(r["clf_fid"])) for r in scored] == [("2", fids[0]), ("3", fids[1])]

    client = mlflow.MlflowClient(resolve_uri(params))
    run_id = (result.out_dir / "run_id.txt").read_text().strip()
    history = client.get_metric_history(run_id, "train.clf_fid")
    assert [(m.step, m.value) for m in history] == [(2, fids[0]), (3, fids[1])]
    assert [m.step for m in client.get_metric_history(run_id, "train.clf_kid")] == [2, 3]


def test_scoring_leaves_the_weights_and_exact_resume_alone(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    params = _params(tmp_path, prepared_dir, classifier_dir)
    spec = run_spec(params, "gan", epochs=3)
    dev = torch.device("cpu")
    rng: list[torch.Tensor] = []
    # Killed at the end of epoch 2 (after its score, before its checkpoint), then resumed.
    whole, resumed = whole_and_resumed(
        params, spec, tmp_path, dev, after_whole=lambda: rng.append(torch.get_rng_state())
    )
    whole_rng = rng[0]
    # The global RNG too ends where the uninterrupted run's did (the resumed run loads the
    # classifier after restoring it: that load must not draw from it).
    assert torch.equal(torch.get_rng_state(), whole_rng)
    off = params.with_section("train", score_every=0)
    plain = Trainer(
        run_setup(off), run_spec(off, "gan", epochs=3), tmp_path / "plain", dev, progress=False
    )
    plain.run()
    assert torch.equal(torch.get_rng_state(), whole_rng)  # and a run without the curve's

    ref = _weights(whole)
    for other in (resumed, plain):
        got = _weights(other)
        assert all(torch.equal(ref[k], got[k]) for k in ref)
    # The same curve, value for value, after the resume; no curve columns when it is off.
    assert [h.get("clf_fid") for h in resumed.history] == [h.get("clf_fid") for h in whole.history]
    assert [h.get("clf_kid") for h in resumed.history] == [h.get("clf_kid") for h in whole.history]
    assert whole.history[1]["clf_fid"] != whole.history[2]["clf_fid"]
    assert not set(COLUMNS) & set(plain.columns) and set(COLUMNS) <= set(whole.columns)
    assert all("clf_fid" not in h for h in plain.history)


def test_without_the_classifier_the_run_says_so_once_and_has_no_curve(
    tmp_path: Path, prepared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _params(tmp_path, prepared_dir, tmp_path / "no-classifier")
    spec = run_spec(params, "gan", epochs=1)
    curve = QualityCurve(run_setup(params).curve, registry.get("gan"), spec, torch.device("cpu"))
    assert curve.columns() == () and not curve.due(1, last=True)
    curve.start()
    curve.start()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "classifier.pt not found: no quality curve" in err[0]
    assert "train.score_every: 0" in err[0]
