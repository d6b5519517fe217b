"""Weights files for torch-fidelity (issue 12 item 1, issue 16 item 2): nothing unpickles a
weights file that is neither the published file nor a plain state dict; a crafted file, in
params or in torch's hub cache, runs no code; missing weights stop `pipeline train` before it
trains, with the same line as `pipeline evaluate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import pipeline.stages.evaluate.stage as ev
from pipeline.cli import app
from pipeline.infra import weights as ew
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import file_hash
from pipeline.infra.params import load_params
from tests.conftest import TINY, deep_update, write_params
from tests.hostile import TouchOnLoad

DEAD = "http://127.0.0.1:9/"  # refuses at once, online or not


def crafted(path: Path, marker: Path) -> Path:
    """A torch file that looks like a state dict and runs code when fully unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fc.weight": torch.zeros(2), "x": TouchOnLoad(marker)}, path)
    return path


@pytest.fixture
def hub(offline_hub: Path) -> Path:
    """The empty hub's checkpoint folder (conftest.offline_hub: download URLs that fail)."""
    return offline_hub / "hub" / "checkpoints"


def params_with(root: Path, prepared_dir: Path, **evaluate: object) -> tuple[Params, Path]:
    over = {"data": {"dir": str(prepared_dir)}, "evaluate": {"extractors": ["inception"]}}
    path = write_params(root, deep_update(TINY, deep_update(over, {"evaluate": evaluate})))
    params = load_params(path)
    samples = ev.samples_path(params, "gan")
    samples.parent.mkdir(parents=True)
    torch.save({"images": torch.zeros(20, 1, 28, 28, dtype=torch.uint8)}, samples)
    return params, path


def test_a_crafted_weights_file_in_params_runs_nothing(
    tmp_path: Path, prepared_dir: Path, hub: Path
) -> None:
    marker = tmp_path / "code-ran"
    bad = crafted(tmp_path / "inception.pth", marker)
    other = crafted(tmp_path / "vgg.pth", marker)
    params, path = params_with(
        tmp_path, prepared_dir, inception_weights=str(bad), vgg16_weights=str(other)
    )
    with pytest.raises(PipelineError) as err:
        ev.evaluate_variant(params, "gan")
    msg = str(err.value)
    assert msg.startswith(f"evaluate.inception_weights: {bad}: not the published weights")
    assert "not a plain state dict" in msg and "\n" not in msg
    result = CliRunner().invoke(app, ["train", "gan", "--params", str(path)])
    assert result.exit_code == 1 and "evaluate.inception_weights" in result.output
    assert not marker.exists()
    assert not (tmp_path / "models" / "gan").exists()


def test_a_crafted_file_in_the_hub_cache_runs_nothing_and_is_not_blamed_on_params(
    tmp_path: Path, prepared_dir: Path, hub: Path
) -> None:
    marker = tmp_path / "code-ran"
    planted = crafted(hub / "weights-inception-2015-12-05-6726825d.pth", marker)
    crafted(hub / "vgg16-397923af.pth", marker)
    params, path = params_with(tmp_path, prepared_dir)
    with pytest.raises(PipelineError) as err:
        ev.evaluate_variant(params, "gan")
    msg = str(err.value)
    assert msg.startswith(f"{planted}: sha256 ") and "is not the published 6726825d" in msg
    assert "delete it" in msg and not msg.startswith("evaluate.")
    result = CliRunner().invoke(app, ["train", "gan", "--params", str(path)])
    assert result.exit_code == 1 and str(planted) in result.output
    assert not marker.exists()


def test_a_hub_file_with_its_published_digest_is_handed_over_as_is(
    tmp_path: Path, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    state = tmp_path / "state.pth"
    torch.save({"w": torch.arange(4.0)}, state)
    url = f"{DEAD}net-{file_hash(state)[:8]}.pth"  # a name carrying the file's own prefix
    cached = ev.hub_file(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(state.read_bytes())
    params, _ = params_with(tmp_path, prepared_dir)
    found = ev.resolve_weights(None, url, "inception_weights", params)
    assert found.path == cached and found.digest == file_hash(state)[:8]


def test_a_plain_state_dict_in_params_is_handed_over_as_a_copy(
    tmp_path: Path, prepared_dir: Path, hub: Path
) -> None:
    mine = tmp_path / "my-inception.pth"
    torch.save({"w": torch.arange(4.0)}, mine)
    params, _ = params_with(tmp_path, prepared_dir, inception_weights=str(mine))
    found = ev.resolve_weights(mine, ew.URL_INCEPTION_V3, "inception_weights", params)
    assert found.path != mine and found.path.parent == params.path("metrics/.cache/weights")
    assert found.digest == file_hash(mine)[:16]
    copy = torch.load(found.path, weights_only=True)
    assert list(copy) == ["w"] and torch.equal(copy["w"], torch.arange(4.0))


def test_a_crafted_file_at_the_copys_path_is_overwritten_before_it_is_handed_over(
    tmp_path: Path, prepared_dir: Path, hub: Path
) -> None:
    """The copies under <evaluate.cache_dir>/weights/ are a cache too: one planted at the
    path of the next copy is rewritten from the checked state dict before torch-fidelity
    (which loads with weights_only=False) gets it."""
    marker = tmp_path / "code-ran"
    mine = tmp_path / "my-inception.pth"
    torch.save({"w": torch.arange(4.0)}, mine)
    params, _ = params_with(tmp_path, prepared_dir, inception_weights=str(mine))
    planted = params.path("metrics/.cache/weights") / f"inception_weights-{file_hash(mine)[:16]}.pt"
    crafted(planted, marker)
    found = ev.resolve_weights(mine, ew.URL_INCEPTION_V3, "inception_weights", params)
    assert found.path == planted
    handed = torch.load(found.path, map_location="cpu", weights_only=False)  # as torch-fidelity
    assert not marker.exists() and list(handed) == ["w"]


def test_missing_inception_weights_stop_train_before_it_trains(
    tmp_path: Path, prepared_dir: Path, hub: Path
) -> None:
    params, path = params_with(tmp_path, prepared_dir)
    with pytest.raises(PipelineError) as err:
        ev.evaluate_variant(params, "gan")
    expected = f"Error: {err.value}"
    assert "Inception metrics need weights that cannot be had" in expected
    result = CliRunner().invoke(app, ["train", "gan", "--params", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == expected
    assert not (tmp_path / "models" / "gan").exists()  # nothing trained, nothing created


def test_the_weights_addresses_are_the_ones_the_libraries_load() -> None:
    """infra.weights writes the two URLs out (importing torch-fidelity and torchvision for
    them cost every importer ~1.5 s): they must stay the ones the libraries download."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import VGG16_Weights

    ours = (ew.URL_INCEPTION_V3, ew.VGG16_URL)
    assert ours == (URL_INCEPTION_V3, VGG16_Weights.IMAGENET1K_V1.url)
