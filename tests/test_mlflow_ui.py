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


def test_the_reports_experiment_lookup_reads_sqlite_without_importing_mlflow(
    tmp_path: Path,
) -> None:
    """The report's links need one experiment id: read from the store with sqlite3, equal to
    MlflowClient's answer, in a process that never imports mlflow (its ~1.5 s of start-up)."""
    import subprocess
    import sys

    root = tmp_path / "a project"  # a space in the store's path: the URI must quote it
    root.mkdir()
    params = load_params(write_params(root))
    client = mlflow.MlflowClient(resolve_uri(params))
    client.create_experiment("someone-else")
    comparison = setup(params)
    code = (
        "import sys\n"
        "from pipeline.infra.params import load_params\n"
        "from pipeline.stages.mlflow_ui import experiment_id\n"
        f"p = load_params({str(root / 'params.yaml')!r})\n"
        "print(experiment_id(p, p.tracking.experiment), experiment_id(p, 'nobody'),\n"
        "      'mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(comparison), "None", "False"]
    assert client.get_experiment_by_name(params.tracking.experiment).experiment_id == comparison

    (root / "mlflow.db").write_bytes(b"not a database at all" * 100)  # unreadable: no links
    from pipeline.stages.mlflow_ui import experiment_id

    assert experiment_id(params, params.tracking.experiment) is None
