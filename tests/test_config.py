import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.variants.base import registry
from pipeline.infra.config import MIN_EVAL_IMAGES
from pipeline.infra.errors import ConfigError
from pipeline.infra.params import load_params, parse_params
from pipeline.training.params import load_checked
from tests.conftest import REPO, write_params


def test_repo_params_parse_and_resolve_every_variant() -> None:
    params = load_params(REPO / "params.yaml")
    assert sorted(params.variants) == registry.names()  # every registered variant has a block
    for name, block in params.variants.items():
        # A block holds only what differs from the published values in the variant's file.
        published = registry.get(name).resolve(None)
        for key, value in block.model_dump(exclude_unset=True).items():
            default = getattr(published, key, None)
            if key == "options":
                same = {k for k, v in value.items() if published.options.get(k) == v}
                assert not same, f"variants.{name}.options restates the published {same}"
            else:
                assert value != default, f"variants.{name}.{key} restates the published {default}"


def test_an_override_changes_only_what_it_names() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["wgan_gp"] = {"lr": 3e-4, "options": {"penalty_weight": 5.0}}
    params = parse_params(raw, REPO)
    published, tuned = (
        registry.get("wgan_gp").resolve(None),
        registry.get("wgan_gp").resolve(params.variants["wgan_gp"]),
    )
    assert tuned.lr == 3e-4 and tuned.options["penalty_weight"] == 5.0
    assert (tuned.epochs, tuned.betas, tuned.n_critic) == (
        published.epochs, published.betas, published.n_critic
    )  # fmt: skip
    assert {k: v for k, v in tuned.options.items() if k != "penalty_weight"} == {
        k: v for k, v in published.options.items() if k != "penalty_weight"
    }


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
        # no bool <-> number coercion
        ({"train": {"seeds": [0, True]}}, "train.seeds.1", "valid integer"),
        # seeds: a non-empty list of unique non-negative ints; the old single key is named
        ({"train": {"seeds": []}}, "train.seeds", "at least 1 item"),
        ({"train": {"seeds": [0, 1, 0]}}, "train.seeds", "unique"),
        ({"train": {"seeds": [0, -1]}}, "train.seeds", "non-negative"),
        ({"train": {"seeds": 3}}, "train.seeds", "valid list"),
        ({"train": {"seed": 0}}, "train", "seed was replaced by seeds"),
        ({"tune": {"n_critic": [1, True]}}, "tune.n_critic.1", "valid integer"),
        ({"train": {"batch_size": 64.0}}, "train.batch_size", "valid integer"),
        ({"variants": {"gan": {"lr": True}}}, "variants.gan.lr", "not a boolean"),
        ({"train": {"fast": 1}}, "train.fast", "valid boolean"),
        # floats are finite, everywhere
        ({"variants": {"gan": {"lr": math.inf}}}, "variants.gan.lr", "finite"),
        ({"variants": {"gan": {"betas": [0.5, math.nan]}}}, "variants.gan.betas.1", "finite"),
        (
            {"variants": {"wgan": {"options": {"clip": math.inf}}}},
            "variants.wgan.options.clip",
            "finite",
        ),
        ({"tune": {"lr": [1e-5, math.inf]}}, "tune.lr.1", "finite"),
        ({"tracking": {"timeout_s": math.inf}}, "tracking.timeout_s", "finite"),
        # options a variant's optimiser or update rule cannot use
        ({"variants": {"wgan": {"betas": [0.5, 0.9]}}}, "variants.wgan.betas", "rmsprop"),
        (
            {"variants": {"wgan": {"options": {"clip": -0.5}}}},
            "variants.wgan.options.clip",
            "greater than 0",
        ),
        (
            {"variants": {"wgan": {"options": {"clip": 0}}}},
            "variants.wgan.options.clip",
            "greater than 0",
        ),
        (
            {"variants": {"wgan_gp": {"options": {"penalty_weight": -1}}}},
            "variants.wgan_gp.options.penalty_weight",
            "greater than or equal to 0",
        ),
        # the evaluator needs at least MIN_IMAGES images per set
        ({"evaluate": {"n_real": 5}}, "evaluate.n_real", "greater than or equal to 10"),
        ({"evaluate": {"floor_n": 9}}, "evaluate.floor_n", "greater than or equal to 10"),
    ],
)
def test_bad_params_name_the_dotted_key(
    tmp_path: Path, override: dict, dotted: str, problem: str
) -> None:
    path = write_params(tmp_path, override)
    with pytest.raises(ConfigError) as err:
        load_checked(path)  # the schema, then the variant blocks against the registry
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


def test_numbers_keep_the_yaml_forms_people_write(tmp_path: Path) -> None:
    """Ints where floats go, PyYAML's string "1e-3", a zero penalty: still accepted."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "train: {seeds: [7, 3]}\n"
        "variants:\n"
        "  gan: {lr: 1, betas: [0, 0.9]}\n"
        "  cgan: {lr: 1e-3}\n"
        "  wgan: {options: {clip: 1}}\n"
        "  wgan_gp: {options: {penalty_weight: 0}}\n"
        f"evaluate: {{n_real: {MIN_EVAL_IMAGES}, floor_n: {MIN_EVAL_IMAGES}}}\n"
    )
    params = load_params(path)
    assert params.train.seeds == [7, 3] and params.train.first_seed == 7
    assert params.variants["gan"].lr == 1.0 and params.variants["gan"].betas == (0.0, 0.9)
    assert params.variants["cgan"].lr == 1e-3
    assert params.variants["wgan"].options == {"clip": 1.0}
    assert params.evaluate.n_real == params.evaluate.floor_n == MIN_EVAL_IMAGES


def _one_line_exit_2(path: Path, *needles: str) -> str:
    result = CliRunner().invoke(app, ["prepare", "--params", str(path)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_params_file_not_utf8_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("train:\n  seed: 1  # café\n".encode("latin-1"))
    line = _one_line_exit_2(bad, str(bad), "line 2", "not valid UTF-8")
    assert "UnicodeDecodeError" not in line


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("train:\n  seed: 1\nsample:\n  n: 10\ntrain:\n  seed: 2\n", "'train'", "line 5"),
        ("train:\n  seed: 1\n  batch_size: 8\n  seed: 2\n", "'seed'", "line 4"),
        ("variants: {gan: {lr: 0.1}, gan: {lr: 0.2}}\n", "'gan'", "line 1"),
    ],
)
def test_duplicate_keys_name_the_file_key_and_line(
    tmp_path: Path, text: str, key: str, line: str
) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    _one_line_exit_2(path, str(path), "duplicate key", key, line)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "variants:\n"
        "  gan: &adam {lr: 0.001, betas: [0.5, 0.999]}\n"
        "  cgan:\n    <<: *adam\n    lr: 0.002\n"
    )
    params = load_params(path)
    assert params.variants["cgan"].lr == 0.002 and params.variants["cgan"].betas == (0.5, 0.999)


def test_profile_merge_cli(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "merge", str(target), str(REPO / "profiles/smoke.yaml")],
        check=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    smoke = yaml.safe_load((REPO / "profiles/smoke.yaml").read_text())
    assert load_params(target).evaluate.n_real == smoke["evaluate"]["n_real"]


def test_profile_merge_rejects_duplicate_keys(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    before = target.read_text()
    profile = tmp_path / "profile.yaml"
    profile.write_text("train: {seed: 1}\ntrain: {seed: 2}\n")
    result = CliRunner().invoke(app, ["config", "merge", str(target), str(profile)])
    assert result.exit_code == 2
    err = result.output.strip()
    assert str(profile) in err and "duplicate key 'train'" in err and "line 2" in err
    assert target.read_text() == before  # nothing merged


def test_a_profile_that_makes_the_params_invalid_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    before = target.read_text()
    profile = tmp_path / "profile.yaml"
    profile.write_text("train: {batch_size: -3}\n")
    result = CliRunner().invoke(app, ["config", "merge", str(target), str(profile)])
    assert result.exit_code == 2 and "train.batch_size" in result.output
    assert result.output.strip().count("\n") == 0
    assert target.read_text() == before


def test_config_merge_and_the_reports_params_load_without_torch(tmp_path: Path) -> None:
    """The schema and the loader sit in infra with no registry behind them: `pipeline config
    merge` and the report's params load never import torch (the registry check, which does,
    runs only for the commands that train, sample or score)."""
    target = write_params(tmp_path, {})
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"train": {"batch_size": 32}}))
    code = (
        "import sys; from pipeline.cli import app; "
        f"app(['config', 'merge', {str(target)!r}, {str(profile)!r}], standalone_mode=False); "
        f"from pipeline.infra.params import load_params; load_params({str(target)!r}); "
        "import pipeline.stages.report; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert load_params(target).train.batch_size == 32
    # the registry check still refuses an unknown variant where it runs
    bad = write_params(tmp_path / "bad", {"variants": {"nope": {"epochs": 1}}})
    assert load_params(bad).variants["nope"].epochs == 1
    with pytest.raises(ConfigError, match="unknown variant"):
        load_checked(bad)
