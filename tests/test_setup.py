"""The run's narrow inputs (pipeline.training.setup): the stage resolves them from the params at
its edge, and the trainer reads its data and its quality curve's inputs from them alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline.core.variants.base import registry
from pipeline.infra.data import DataError
from pipeline.infra.params import load_params
from pipeline.training.loop import Trainer
from pipeline.training.quality import QualityCurve
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import TINY, deep_update, write_params

CPU = torch.device("cpu")


def test_run_setup_resolves_every_path_against_the_params_file(tmp_path: Path) -> None:
    params = load_params(
        write_params(
            tmp_path,
            {
                "data": {"dir": "d"},
                "classifier": {"out_dir": "clf"},
                "train": {"score_every": 3, "score_n": 1500},
                "sample": {"seed": 7, "batch_size": 250},
                "evaluate": {"n_real": 900, "cache_dir": "m/.c", "kid_subset_size": 50},
            },
        )
    )
    setup = run_setup(params)
    root = params.root
    assert setup.data == root / "d" / "mnist" == setup.curve.data
    assert setup.curve.classifier == root / "clf" / "classifier.pt"
    assert setup.curve.cache == root / "m" / ".c"
    assert (setup.curve.every, setup.curve.n, setup.curve.n_real) == (3, 1500, 900)
    assert (setup.curve.sample_seed, setup.curve.sample_batch, setup.curve.kid_subset) == (
        7,
        250,
        50,
    )
    assert setup.train == params.train and setup.curve.tf32 is False


def test_the_trainer_reads_its_data_from_the_setup_not_the_params(
    tmp_path: Path, prepared_dir: Path
) -> None:
    params = load_params(
        write_params(tmp_path, deep_update(TINY, {"data": {"dir": str(prepared_dir)}}))
    )
    spec = run_spec(params, "gan", epochs=1)
    moved = dataclasses.replace(run_setup(params), data=tmp_path / "elsewhere")
    with pytest.raises(DataError, match="elsewhere/train.pt: prepared MNIST not found"):
        Trainer(moved, spec, tmp_path / "run", CPU, progress=False).run()
    # the folder the setup names is the one trained on: the params' own folder trains
    result = Trainer(run_setup(params), spec, tmp_path / "run", CPU, progress=False).run()
    assert result.history and result.history[-1]["epoch"] == 1


def test_the_quality_curve_reads_the_classifier_the_setup_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = load_params(write_params(tmp_path, {"train": {"score_every": 2}}))
    setup = run_setup(params).curve
    named = dataclasses.replace(setup, classifier=tmp_path / "nowhere" / "c.pt")
    spec = run_spec(params, "gan", epochs=1)
    curve = QualityCurve(named, registry.get("gan"), spec, CPU)
    assert not curve.enabled
    curve.start()
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere' / 'c.pt'} not found" in err and "score_every=2" in err
