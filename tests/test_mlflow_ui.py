"""pipeline/stages/mlflow_ui.py: direct links into the MLflow UI, looked up in a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import mlflow

from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri, setup, study_experiment
from pipeline.stages.mlflow_ui import experiment_links, run_url
from tests.conftest import REPO, write_params


def test_links_list_the_comparison_then_its_studies_with_their_ids(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path))
    assert experiment_links(params, "http://h:1") == []
    assert not (tmp_path / "mlflow.db").exists()  # looking does not create a store

    client = mlflow.MlflowClient(resolve_uri(params))
    client.create_experiment("someone-else")  # shifts the ids: they must be looked up
    study = setup(params, study_experiment(params, "tune-wgan_gp"))
    comparison = setup(params)
    links = experiment_links(params, "http://h:1/")
    assert links == [
        ("mnist-gan-comparison", f"http://h:1/#/experiments/{comparison}/runs"),
        ("mnist-gan-comparison/tune-wgan_gp", f"http://h:1/#/experiments/{study}/runs"),
    ]


def test_the_urls_follow_the_installed_mlflow_uis_routes() -> None:
    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    bundle = "".join(p.read_text(errors="ignore") for p in build.glob("main.*.js"))
    assert "experiments/:experimentId/runs/:runUuid" in bundle
    assert run_url("http://h:1", "7", "abc") == "http://h:1/#/experiments/7/runs/abc"


def test_the_links_command_without_a_store_says_so_and_creates_none(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = CliRunner().invoke(app, ["mlflow-links", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0 and "MLflow: no runs yet" in result.output
    assert not (tmp_path / "mlflow.db").exists()
