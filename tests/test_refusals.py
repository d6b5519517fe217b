"""Inputs the pipeline refuses with one line naming the file or option (issue 12, items 5, 6,
9): a corrupt or crafted prepared MNIST file, an empty params file, a directory given as the
params file, and zero counts on the command line."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.infra.data import DataError, load_split
from pipeline.infra.params import load_params
from tests.conftest import TINY, deep_update, write_params
from tests.hostile import TouchOnLoad


def _one_line(output: str) -> str:
    """The one error line (MLflow may log its own INFO lines while creating a store)."""
    lines = [line for line in output.strip().splitlines() if " INFO " not in line]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture
def own_data(tmp_path: Path, prepared_dir: Path) -> Path:
    """A params file whose data folder is a private copy of the prepared data (to break)."""
    shutil.copytree(prepared_dir, tmp_path / "data")
    return write_params(tmp_path, deep_update(TINY, {"data": {"dir": "data"}}))


@pytest.mark.parametrize("kind", ["truncated", "crafted", "wrong-content"])
def test_a_bad_prepared_file_names_itself_and_the_fix(
    own_data: Path, tmp_path: Path, kind: str
) -> None:
    train_pt = tmp_path / "data" / "mnist" / "train.pt"
    touched = tmp_path / "code-ran"
    if kind == "truncated":
        train_pt.write_bytes(train_pt.read_bytes()[:1000])
    elif kind == "crafted":
        with train_pt.open("wb") as f:
            pickle.dump({"images": TouchOnLoad(touched)}, f)
    else:
        torch.save({"images": torch.zeros(3, 28, 28), "labels": torch.zeros(3)}, train_pt)
    params = load_params(own_data)
    with pytest.raises(DataError) as err:
        load_split(params, "train")
    msg = str(err.value)
    assert str(train_pt) in msg and "run `pipeline prepare` to rebuild" in msg
    assert not touched.exists()
    # through a command that reads it: one line, no traceback
    result = CliRunner().invoke(app, ["train", "gan", "--params", str(own_data)])
    assert result.exit_code == 1
    line = _one_line(result.output)
    assert str(train_pt) in line and "pipeline prepare" in line
    assert not touched.exists()


@pytest.mark.parametrize("content", ["", "# only a comment\n", "\n\n"])
def test_an_empty_params_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(content)
    result = CliRunner().invoke(app, ["train", "gan", "--params", str(path)])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert "params.yaml" in line and "empty" in line
    assert not (tmp_path / "models").exists()


def test_an_explicit_empty_mapping_still_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("{}\n")
    assert load_params(path).train.batch_size == 64


def test_a_directory_as_params_file_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", "--params", str(tmp_path)])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert str(tmp_path) in line and "is a directory" in line and "not found" not in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["train", "gan", "--epochs", "0"], "--epochs"),
        (["train", "gan", "--subset", "0"], "--subset"),
        (["sample", "gan", "--n", "0"], "--n"),
        (["classifier", "--epochs", "0"], "--epochs"),
        (["tune", "gan", "--trials", "0"], "--trials"),
        (["tune", "gan", "--epochs", "-1"], "--epochs"),
    ],
)
def test_zero_counts_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], option: str
) -> None:
    path = write_params(tmp_path)
    result = CliRunner().invoke(app, [*args, "--params", str(path)])
    assert result.exit_code == 2
    assert _one_line(result.output).startswith(f"Error: {option} must be >= 1")


@pytest.mark.parametrize("command", [["train", "gan"], ["sample", "gan"], ["evaluate", "gan"]])
def test_a_negative_seed_is_a_one_line_usage_error(tmp_path: Path, command: list[str]) -> None:
    """Not Typer's five-line range box: one line, like every other bad value."""
    path = write_params(tmp_path)
    result = CliRunner().invoke(app, [*command, "--seed", "-1", "--params", str(path)])
    assert result.exit_code == 2
    assert _one_line(result.output) == "Error: --seed must be >= 0 (got -1)"
