"""The reference-feature caches are input, never code (issue 28): torch-fidelity gets no cache
of its own, the pipeline's cache holds plain tensors read with ``weights_only=True``, a crafted
file at any cache path a stage reads runs nothing and is named in one line, and the scores
are those of torch-fidelity without a cache. Real torch-fidelity, real MNIST, no mocks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch_fidelity
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.data import load_split
from pipeline.infra.io import file_hash
from pipeline.infra.params import load_params
from pipeline.infra.weights import Weights
from pipeline.stages.evaluate.fidelity import (
    GreyAsRGB,
    _fidelity_kwargs,
    feature_cache_path,
    fidelity,
    register,
)
from pipeline.stages.tune.holdout import cache_dir as holdout_cache
from pipeline.training.evaluator import CLASSIFIER_EXTRACTOR, real_cache_name, real_reference
from tests.conftest import TINY, deep_update, write_params
from tests.hostile import TouchOnLoad
from tests.test_classifier import train_once


def craft(path: Path, marker: Path) -> None:
    """Overwrite ``path`` with a torch file whose unpickling creates ``marker``: shaped like
    what torch-fidelity caches (a tensor, a dict of statistics)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mu": torch.zeros(2), "sigma": TouchOnLoad(marker)}, path)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    return train_once(tmp_path_factory, prepared_dir)


def make_params(root: Path, prepared_dir: Path, classifier_dir: Path, **over: Any) -> Path:
    base = {"data": {"dir": str(prepared_dir)}, "classifier": {"out_dir": str(classifier_dir)}}
    return write_params(root, deep_update(deep_update(TINY, base), over))


def test_scores_equal_torch_fidelity_without_a_cache(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path
) -> None:
    """Cold cache, warm cache and torch-fidelity's own calculate_metrics(cache=False): the
    same numbers, bit for bit; only plain tensors are written, no statistics files."""
    params = load_params(make_params(tmp_path, prepared_dir, classifier_dir))
    images, _ = load_split(params, "train")
    gen, real = GreyAsRGB(images[:300]), GreyAsRGB(real_reference(params))
    ckpt = layout.classifier_checkpoint(params)
    weights = Weights(ckpt, file_hash(ckpt)[:16])
    dev = torch.device("cpu")
    register()
    asked = {"isc": True, "fid": True, "kid": True, "prc": True}

    cold = fidelity(params, dev, gen, real, CLASSIFIER_EXTRACTOR, weights, **asked)
    cache = params.path(params.evaluate.cache_dir)
    written = sorted(p.name for p in cache.iterdir())
    name = real_cache_name(len(real), CLASSIFIER_EXTRACTOR, weights, dev, params.evaluate.tf32)
    assert written == sorted(
        feature_cache_path(cache, name, CLASSIFIER_EXTRACTOR, lay).name
        for lay in ("logits", "penultimate")
    )
    for path in cache.iterdir():  # the safe loader reads them: plain tensors only
        assert isinstance(torch.load(path, weights_only=True), torch.Tensor)
    warm = fidelity(params, dev, gen, real, CLASSIFIER_EXTRACTOR, weights, **asked)

    kwargs = _fidelity_kwargs(params, dev, len(gen), len(real))
    assert kwargs["cache"] is False and "cache_root" not in kwargs
    theirs = torch_fidelity.calculate_metrics(
        input1=gen,
        input2=real,
        feature_extractor=CLASSIFIER_EXTRACTOR,
        feature_extractor_weights_path=str(weights.path),
        **asked,
        **kwargs,
    )
    assert set(cold) == set(theirs) and len(theirs) >= 8
    assert cold == warm == theirs


def _plant(cache: Path, marker: Path) -> list[Path]:
    """Replace every file a clean run left in ``cache`` with a crafted one, and add one at
    each statistics path torch-fidelity's own cache would have read beside its features."""
    planted = sorted(p for p in cache.iterdir() if p.is_file())
    assert planted, f"the clean run cached nothing in {cache}"
    stats = [
        p.with_name(p.name.replace("-features-", "-stat-fid-"))
        for p in planted
        if "-features-penultimate" in p.name
    ]
    for path in planted + stats:
        craft(path, marker)
    return planted


def _stage(kind: str, root: Path, params: Params, path: Path) -> tuple[list[str], Path, Any]:
    """(CLI args, the cache folder the stage reads, a callable giving its result)."""
    p = str(path)
    if kind == "evaluate":
        return (
            ["evaluate", "gan", "--params", p],
            params.path(params.evaluate.cache_dir),
            lambda: json.loads(layout.metrics_path(params, "gan", 0).read_text())["classifier"],
        )
    if kind == "floor":
        return (
            ["floor", "--params", p],
            params.path(params.evaluate.cache_dir),
            lambda: json.loads(layout.metrics_path(params, layout.FLOOR).read_text())["classifier"],
        )
    if kind == "noise":
        return (
            ["noise", "--params", p],
            params.path(params.evaluate.cache_dir),
            lambda: [
                d["classifier"] for d in json.loads(layout.noise_path(params).read_text())["draws"]
            ],
        )
    if kind == "train":  # the quality curve reads the classifier's reference features
        seed = 1 if layout.variant_dir(params, "gan", 0).exists() else 0
        return (
            ["train", "gan", "--seed", str(seed), "--epochs", "1", "--subset", "128",
             "--params", p],
            params.path(params.evaluate.cache_dir),
            lambda: None,
        )  # fmt: skip
    # tune: a fresh study each time (its first trial is the defaults: the same training)
    study = f"s{len(list(root.glob('*.db')))}"
    return (
        ["tune", "gan", "--trials", "1", "--epochs", "1", "--study", study, "--params", p],
        holdout_cache(params),  # the held-out training slice's features (tune.holdout)
        lambda: None,
    )


def _without_seconds(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [_without_seconds(v) for v in doc]
    return doc


@pytest.mark.parametrize("kind", ["evaluate", "floor", "noise", "tune", "train"])
def test_a_crafted_cache_file_runs_nothing_and_is_named(
    tmp_path: Path, prepared_dir: Path, classifier_dir: Path, kind: str
) -> None:
    from pipeline.stages.train import train_variant

    marker = tmp_path / "code-ran"
    path = make_params(
        tmp_path,
        prepared_dir,
        classifier_dir,
        evaluate={"noise_draws": 1},
        sample={"n": 200},
        tune={"sample_n": 200, "epochs": 1},
        train={"seeds": [0, 1], "score_every": 1},
    )
    params = load_params(path)
    if kind in ("evaluate", "noise"):
        train_variant(params, "gan", seed=0, epochs=1, subset=128, track=False, progress=False)
        assert CliRunner().invoke(app, ["sample", "gan", "--params", str(path)]).exit_code == 0
    if kind == "noise":  # the noise stage re-scores the run with the lowest FID
        assert CliRunner().invoke(app, ["evaluate", "gan", "--params", str(path)]).exit_code == 0

    args, cache, result = _stage(kind, tmp_path, params, path)
    clean = CliRunner().invoke(app, args)
    assert clean.exit_code == 0, clean.output
    first = _without_seconds(result())
    planted = _plant(cache, marker)

    args, _, _ = _stage(kind, tmp_path, params, path)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert not marker.exists(), "a cache file ran code"
    assert "Traceback" not in again.output
    # (in train, a progress bar may precede it on its line: tqdm redraws with \r)
    warned = re.findall(r"warning: (\S+): not a usable feature cache \(it holds more than "
                        r"plain tensors, and is not unpickled\); extracting the reference "
                        r"features again and replacing it$", again.output, re.M)  # fmt: skip
    assert sorted(warned) == sorted(map(str, planted)), again.output
    for p in planted:  # replaced by what the safe loader reads
        assert isinstance(torch.load(p, weights_only=True), torch.Tensor)
    assert _without_seconds(result()) == first  # the same scores as with a clean cache


def test_a_corrupt_or_foreign_cache_file_is_named_with_what_happens_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.infra.refcache import load_features

    truncated, wrong, good = tmp_path / "t.pt", tmp_path / "w.pt", tmp_path / "g.pt"
    torch.save(torch.ones(4, 3), good)
    truncated.write_bytes(good.read_bytes()[:40])
    torch.save(torch.ones(5, 3), wrong)  # another set size

    assert load_features(tmp_path / "missing.pt", 4) is None
    assert capsys.readouterr().err == ""  # a missing cache is simply computed
    assert torch.equal(load_features(good, 4), torch.ones(4, 3))
    assert load_features(truncated, 4) is None and load_features(wrong, 4) is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in "".join(lines)
    assert lines[0].startswith(f"warning: {truncated}: not a usable feature cache (")
    assert lines[1] == (
        f"warning: {wrong}: not a usable feature cache (not a float tensor [4, d] (found "
        "(5, 3))); extracting the reference features again and replacing it"
    )
    assert all(line.endswith("extracting the reference features again and replacing it")
               for line in lines)  # fmt: skip
