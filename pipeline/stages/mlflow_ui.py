"""``pipeline mlflow-links``: the MLflow UI's direct links to this project's runs.

``make mlflow-ui`` prints them before it starts the UI: the comparison's run list and one per
tuning study (``{tracking.experiment}/{study}``). Experiment ids depend on the order in which
a store created them, so they are looked up, never assumed. A store that does not exist yet
is not created.
"""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

from pipeline.infra.config import Params


def run_list_url(base: str, experiment_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{run_list_url(base, experiment_id)}/{run_id}"


UI_BASE = "http://127.0.0.1:5000"
"""Where `make mlflow-ui` (and a plain `mlflow ui`) listens by default."""

DASHBOARD_BASE = "http://127.0.0.1:8080"
"""Where `make optuna-dashboard` (pipeline.stages.tune.dashboard) listens by default, beside the
MLflow UI in the report; defined here, not in pipeline.stages.tune, so the report need not import
the tuning package."""


def _store_uri(params: Params) -> str | None:
    """The tracking URI, or None for a SQLite store that does not exist (yet)."""
    from pipeline.infra.tracking import resolve_uri

    uri = resolve_uri(params)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return None
    return uri


def experiment_id(params: Params, name: str) -> str | None:
    """The id of experiment ``name`` in the configured store; None when it (or the SQLite
    store) does not exist or the store cannot be read. Creates nothing."""
    uri = _store_uri(params)
    if uri is None or uri.startswith(("http://", "https://")):
        return None  # a server: not queried while building a report
    if uri.startswith("sqlite:///"):
        return _sqlite_experiment_id(Path(uri[len("sqlite:///") :]), name)
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        exp = mlflow.MlflowClient(uri).get_experiment_by_name(name)
    except Exception:  # an unreadable store: no links, never a failed report
        return None
    return exp.experiment_id if exp is not None else None


def _sqlite_experiment_id(path: Path, name: str) -> str | None:
    """The id of experiment ``name`` read from MLflow's SQLite store with sqlite3, read-only
    (its ``experiments`` table, as MlflowClient.get_experiment_by_name reads it): importing
    mlflow for one lookup costs the report ~1.5 s of start-up."""
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT experiment_id FROM experiments WHERE name = ?", (name,)
            ).fetchone()
    except sqlite3.Error:  # an unreadable store or not MLflow's: no links, never a failed report
        return None
    return str(row[0]) if row is not None else None


def experiment_links(params: Params, base: str) -> list[tuple[str, str]]:
    """[(experiment name, run-list URL)]: the comparison first, then its tuning studies."""
    import mlflow

    uri = _store_uri(params)
    if uri is None:
        return []
    logging.getLogger("alembic").setLevel(logging.WARNING)
    name = params.tracking.experiment
    found = mlflow.MlflowClient(uri).search_experiments(
        filter_string=f"name LIKE '{name.replace(chr(39), '')}%'"
    )
    ours = [e for e in found if e.name == name or e.name.startswith(f"{name}/")]
    ours.sort(key=lambda e: (e.name != name, e.name))
    return [(e.name, run_list_url(base, e.experiment_id)) for e in ours]
