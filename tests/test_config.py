from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.variants import registry
from tests.conftest import REPO, write_params


def test_repo_params_parse_and_resolve_every_variant() -> None:
    params = load_params(REPO / "params.yaml")
    assert sorted(params.variants) == ["cgan", "dcgan", "gan", "wgan", "wgan_gp"]
    for name, block in params.variants.items():
        hyper = registry.get(name).resolve(block)
        # the params file spells out the published defaults: nothing differs from the variant file
        assert hyper == registry.get(name).resolve(None), name
    assert params.path("data") == REPO / "data"


@pytest.mark.parametrize(
    ("override", "dotted", "problem"),
    [
        ({"train": {"batchsize": 64}}, "train.batchsize", "unknown key"),
        ({"train": {"batch_size": "lots"}}, "train.batch_size", "integer"),
        ({"variants": {"gan": {"lr": "fast"}}}, "variants.gan.lr", "number"),
        ({"variants": {"gan": {"betas": [0.5, 1.5]}}}, "variants.gan.betas", "[0, 1)"),
        ({"variants": {"nope": {"epochs": 1}}}, "variants.nope", "unknown variant"),
        (
            {"variants": {"wgan": {"options": {"clipp": 0.1}}}},
            "variants.wgan.options.clipp",
            "unknown option",
        ),
        ({"evaluate": {"extractors": ["inceptoin"]}}, "evaluate.extractors.0", "classifier"),
        ({"surprise": 1}, "surprise", "unknown key"),
    ],
)
def test_bad_params_name_the_dotted_key(
    tmp_path: Path, override: dict, dotted: str, problem: str
) -> None:
    path = write_params(tmp_path, override)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert f"{dotted}:" in str(err.value) and problem in str(err.value)
    # through the CLI: exit 2, one line, no traceback
    result = CliRunner().invoke(app, ["prepare", "--params", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and dotted in lines[0] and "Traceback" not in result.output


def test_missing_and_unparsable_params_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "params file not found" in result.output
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  seed: [1, 2\n")
    result = CliRunner().invoke(app, ["prepare", "--params", str(bad)])
    assert result.exit_code == 2 and "invalid YAML" in result.output and "line" in result.output


def test_relative_paths_resolve_against_the_params_file(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path / "proj", {"data": {"dir": "stuff"}}))
    assert params.path(params.data.dir) == (tmp_path / "proj" / "stuff").resolve()
