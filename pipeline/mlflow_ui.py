"""``python -m pipeline.mlflow_ui``: the MLflow UI's direct links to this project's runs.

``make mlflow-ui`` prints them before it starts the UI: the comparison's run list and one per
tuning study (``<tracking.experiment>/<study>``). Experiment ids depend on the order in which
a store created them, so they are looked up, never assumed. A store that does not exist yet
is not created.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError


def run_list_url(base: str, experiment_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{run_list_url(base, experiment_id)}/{run_id}"


def experiment_links(params: Params, base: str) -> list[tuple[str, str]]:
    """[(experiment name, run-list URL)]: the comparison first, then its tuning studies."""
    import mlflow

    from pipeline.tracking import resolve_uri

    uri = resolve_uri(params)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return []
    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = params.tracking.experiment
    found = mlflow.MlflowClient(uri).search_experiments(
        filter_string=f"name LIKE '{name.replace(chr(39), '')}%'"
    )
    ours = [e for e in found if e.name == name or e.name.startswith(f"{name}/")]
    ours.sort(key=lambda e: (e.name != name, e.name))
    return [(e.name, run_list_url(base, e.experiment_id)) for e in ours]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.mlflow_ui", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--base", default="http://127.0.0.1:5000", help="where the UI listens")
    args = ap.parse_args(argv)
    try:
        links = experiment_links(load_params(args.params), args.base)
    except PipelineError as err:
        raise SystemExit(f"Error: {err}") from None
    if not links:
        print("MLflow: no runs yet (run `make repro`, or open the store of ./smoke/ instead)")
    for name, url in links:
        print(f"MLflow runs of {name}: {url}")


if __name__ == "__main__":
    main()
