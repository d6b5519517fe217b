"""scripts/copy_project.sh: the copy `make smoke` and `make results` run in is a git repository
of its own, so DVC's comparison commands work there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, run_dvc


def _copy(dest: Path, profile: str = "smoke") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "copy_project.sh"), str(dest),
         str(REPO / "profiles" / f"{profile}.yaml")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_copy_is_its_own_git_repo_and_dvc_params_diff_shows_an_edit(tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    out = _copy(dest)
    assert out.returncode == 0, out.stdout + out.stderr
    assert Path(_git(dest, "rev-parse", "--show-toplevel")).resolve() == dest.resolve()
    assert len(_git(dest, "log", "--format=%H").splitlines()) == 1
    assert _git(dest, "status", "--porcelain") == ""  # the commit holds the whole copy
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert params["train"]["subset"] == 1024  # the profile is merged in (and committed)

    params["variants"]["gan"]["lr"] = 0.0003
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = run_dvc(dest, "params", "diff")
    rows = [line.split() for line in diff.splitlines()]
    # gan's block held no lr (the published 0.0002 lives in its file): the edit adds one
    assert ["params.yaml", "variants.gan.lr", "-", "0.0003"] in rows
    assert not any("variants.wgan" in line for line in diff.splitlines())
    run_dvc(dest, "metrics", "diff")  # fails outright without a git repository


def test_a_folder_that_is_not_an_earlier_copy_is_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "thesis.tex").write_text("precious")
    out = _copy(dest)
    assert out.returncode == 2 and "refusing to delete it" in out.stdout
    assert (dest / "thesis.tex").read_text() == "precious"
