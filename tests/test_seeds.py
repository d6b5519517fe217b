"""Seeds as a dimension of the pipeline: one run folder, MLflow run, sample and metrics file per
(variant, seed); latents per seed, shared by every variant; the CLI's --seed."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.infra import layout
from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from pipeline.stages import sample as sampling
from pipeline.stages.train import train_variant


def test_each_seed_is_its_own_run_folder_and_mlflow_run_under_one_parent(
    tiny_params_path: Path,
) -> None:
    params = load_params(tiny_params_path)
    runs = {s: train_variant(params, "gan", seed=s, epochs=1, subset=128, progress=False)
            for s in (0, 1)}  # fmt: skip
    for s, r in runs.items():
        assert (
            r.out_dir
            == layout.variant_dir(params, "gan", s)
            == tiny_params_path.parent / "models" / "gan" / f"seed{s}"
        )
        assert json.loads((r.out_dir / "config.json").read_text())["seed"] == s
    a, b = (torch.load(r.checkpoint, weights_only=True)["nets"]["generator"] for r in runs.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # another seed, other weights
    client = mlflow.MlflowClient(resolve_uri(params))
    got = [client.get_run(layout.read_run_id(r.out_dir)) for r in runs.values()]
    assert [(r.info.run_name, r.data.tags["variant"], r.data.tags["seed"]) for r in got] == [
        ("gan-seed0", "gan", "0"), ("gan-seed1", "gan", "1")
    ]  # fmt: skip
    parents = {r.data.tags["mlflow.parentRunId"] for r in got}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["role"] == "variant" and parent.info.run_name == "gan"
    # rerunning seed 1 resumes nothing and touches neither run: exact identity per seed
    mtimes = {s: r.checkpoint.stat().st_mtime_ns for s, r in runs.items()}
    again = train_variant(params, "gan", seed=1, epochs=1, subset=128, progress=False)
    assert again.steps == runs[1].steps
    assert {s: r.checkpoint.stat().st_mtime_ns for s, r in runs.items()} == mtimes


def test_latents_depend_on_the_seed_not_on_the_variant(
    tiny_params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(tiny_params_path)
    seen: dict[tuple[str, int], int] = {}
    real = sampling.generate

    def spy(variant, nets, n, z_dim, seed, batch_size, device):  # type: ignore[no-untyped-def]
        seen[(variant.name, current[0])] = seed
        return real(variant, nets, n, z_dim, seed, batch_size, device)

    monkeypatch.setattr(sampling, "generate", spy)
    current = [0]
    for name in ("gan", "lsgan"):
        for s in (0, 2):
            train_variant(params, name, seed=s, epochs=1, subset=128, track=False, progress=False)
            current[0] = s
            out = sampling.sample_variant(params, name, seed=s)
            assert (
                out.path == tiny_params_path.parent / "samples" / name / f"seed{s}" / "samples.pt"
            )
    assert seen[("gan", 0)] == seen[("lsgan", 0)] != seen[("gan", 2)] == seen[("lsgan", 2)]
    assert seen[("gan", 0)] == sampling.latent_seed(params.sample.seed, 0)
    # the streams are independent, not neighbours: seed + 1 is not the next seed's stream
    assert sampling.latent_seed(1234, 1) not in {
        sampling.latent_seed(1234, 0) + k for k in range(3)
    }


def test_the_cli_takes_a_seed_from_train_seeds(tiny_params_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "--seed" in help_text and "default: the first" in help_text
    bad = runner.invoke(app, ["train", "gan", "--seed", "7", "--params", str(tiny_params_path)])
    assert bad.exit_code == 2
    assert "--seed 7: not in train.seeds (0, 1, 2)" in bad.output
    missing = runner.invoke(
        app, ["sample", "gan", "--seed", "2", "--params", str(tiny_params_path)]
    )
    assert missing.exit_code == 1 and "run `pipeline train gan --seed 2` first" in missing.output
