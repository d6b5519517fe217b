import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.variants.base import registry
from tests.conftest import REPO, write_params

COMMANDS = [
    "prepare",
    "classifier",
    "train",
    "sample",
    "evaluate",
    "floor",
    "noise",
    "report",
    "toy",
    "grid",
    "tune",
]


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_explains_itself(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "--params" in result.output
    # the first docstring line is the summary typer shows
    doc = app.registered_commands[COMMANDS.index(name)].callback.__doc__
    assert doc.split()[0] in result.output


def _help(*args: str) -> str:
    # wide enough that no name or flag wraps; rich draws boxes we do not test
    return CliRunner().invoke(app, [*args, "--help"], terminal_width=200).output


@pytest.mark.parametrize("name", ["train", "sample", "evaluate", "tune"])
def test_commands_taking_a_variant_list_every_registered_name(name: str) -> None:
    from pipeline.core.variants.base import registry

    out = re.sub(r"[\s│]+", " ", _help(name))  # the box may wrap the list: join its lines
    assert f"known: {', '.join(registry.names())}." in out


def test_variant_names_for_help_match_the_registry_without_importing_torch() -> None:
    from pipeline.cli import variant_names
    from pipeline.core.variants.base import registry

    assert variant_names() == registry.names()
    code = "import sys, pipeline.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [["tune"], ["train"], []])
def test_flags_show_no_value_type(args: list[str]) -> None:
    """``--apply <bool>`` read as if --apply took a value; flags get no type column."""
    out = _help(*args)
    assert "<bool>" not in out
    assert re.search(r"--help\s+Show this message", out)
    if args == ["tune"]:
        assert re.search(r"--apply\s+Write the study's best trial", out)
        assert re.search(r"--trials\s+<int>", out)  # options with values keep theirs


def test_prepare_through_the_cli(tmp_path: Path) -> None:
    path = write_params(tmp_path)
    result = CliRunner().invoke(app, ["prepare", "--params", str(path)])
    assert result.exit_code == 0, result.output
    assert "train 60,000, test 10,000" in result.output
    assert (tmp_path / "data" / "mnist" / "train.pt").is_file()


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True
    )
    assert "prepare" in out.stdout


def test_unexpected_errors_are_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.infra.data

    def boom(params: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(pipeline.infra.data, "prepare", boom)
    result = CliRunner().invoke(app, ["prepare", "--params", str(write_params(tmp_path))])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: RuntimeError: disk on fire (PIPELINE_DEBUG=1 shows the traceback)"
    ]


@pytest.mark.parametrize("name", ["train", "sample", "evaluate", "tune"])
def test_an_unknown_variant_is_named_as_such(name: str, tmp_path: Path) -> None:
    """Not "no checkpoint; run `pipeline train gna` first", which would then fail too."""
    path = write_params(tmp_path)
    result = CliRunner().invoke(app, [name, "gna", "--params", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: unknown variant 'gna' (known: {', '.join(registry.names())})"
    ]


def test_package_inits_import_nothing_heavy() -> None:
    """Every package of the stages, training and infra layers can be imported for one of its
    modules without paying for a library it does not use (the tune package once re-exported
    its study and so imported optuna and torch for a constant)."""
    root = REPO / "pipeline"
    packages = sorted(
        ".".join(p.parent.relative_to(REPO).parts)
        for p in root.rglob("__init__.py")
        if p.parent.relative_to(root).parts[:1] in {(), ("stages",), ("training",), ("infra",)}
    )
    assert "pipeline.stages.tune" in packages and "pipeline.stages.report" in packages
    heavy = ("torch", "optuna", "mlflow", "matplotlib", "scipy", "dask", "torch_fidelity")
    code = (
        f"import importlib, sys\nfor p in {packages!r}: importlib.import_module(p)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
