"""MLflow at the edge: the store, the client and the run names; the trainer emits events and
pipeline/infra/recorder.py records them.

Default store: embedded SQLite (``sqlite:///mlflow.db`` beside params.yaml) with artifacts in
``mlartifacts/`` beside it; a tracking server works through ``tracking.uri`` or
``$PIPELINE_TRACKING_URI``. An unreachable server is a one-line error, not a hang.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.tracking_store import ensure_sqlite_store, sqlite_file

if TYPE_CHECKING:
    from mlflow import MlflowClient


class TrackingError(PipelineError):
    pass


def resolve_uri(params: Params) -> str:
    """The tracking URI with a relative SQLite path made absolute under the params folder."""
    uri = params.tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(params.path(uri[len(prefix) :]).resolve())
    return uri


def _check_server(uri: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or set "
            "tracking.uri / $PIPELINE_TRACKING_URI to sqlite:///mlflow.db"
        ) from None


_configured: dict[str, str] = {}
_answered: set[str] = set()  # tracking servers whose /health answered in this process


def study_experiment(params: Params, study_name: str) -> str:
    """The MLflow experiment of a tuning study's runs (its parent run and one nested run per
    trial): beside the comparison's, not in it, one per study."""
    return f"{params.tracking.experiment}/{study_name}"


def ensure_store(params: Params) -> str:
    """Create the configured SQLite store once, atomically, before any run opens it
    (pipeline/infra/tracking_store.py): MLflow's own first creation is not atomic, and a kill in it
    or two processes opening a fresh store at once brick it. A no-op for a tracking server
    and for a complete store. :func:`setup` calls it; a parent that starts several tracking
    processes (the grid) calls it once first. Returns the resolved URI."""
    uri = resolve_uri(params)
    db = sqlite_file(uri)
    if db is not None:
        ensure_sqlite_store(db, params.path(params.tracking.artifacts).resolve().as_uri())
    return uri


def check_store(params: Params) -> str:
    """Fail now, with one line, when the configured store cannot be used: a tracking server
    that does not answer, or a SQLite file that is no complete MLflow store (built here
    when missing: :func:`ensure_store`). Imports no mlflow for a complete store, so the
    trainer calls it before its output folder changes and opens the run while it trains.
    Returns the resolved URI."""
    uri = resolve_uri(params)
    if uri.startswith(("http://", "https://")) and uri not in _answered:
        # MLflow retries for minutes by default; fail fast instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(params.tracking.timeout_s)))
        _check_server(uri, params.tracking.timeout_s)
        _answered.add(uri)  # once per process, as ensure_store for a SQLite file
    ensure_store(params)
    return uri


def setup(params: Params, experiment: str | None = None) -> str:
    """Point MLflow at the configured store; return the id of ``experiment`` (default
    ``tracking.experiment``, the comparison's), created if needed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = check_store(params)
    mlflow.set_tracking_uri(uri)
    name = experiment or params.tracking.experiment
    key = f"{uri}#{name}"
    if key in _configured:
        return _configured[key]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if not uri.startswith(("http://", "https://")):
            location = params.path(params.tracking.artifacts).resolve().as_uri()
        try:
            exp_id = client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # Another process (a grid worker) created it in between: use theirs.
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    _configured[key] = exp_id
    return exp_id


def client(params: Params) -> MlflowClient:
    import mlflow

    setup(params)
    return mlflow.MlflowClient(resolve_uri(params))


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def log_metrics(
    params: Params,
    run_id: str,
    metrics: Mapping[str, float],
    artifacts: Iterable[Path] = (),
    artifact_dir: str | None = None,
    step: int = 0,
) -> None:
    """Add metrics (and files) to an existing run, e.g. evaluation scores to a training run."""
    import time

    from mlflow.entities import Metric

    c = client(params)
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(batch), 500):
        c.log_batch(run_id, metrics=batch[i : i + 500])
    for path in artifacts:
        c.log_artifact(run_id, str(path), artifact_dir)


def flat_str_params(d: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of at most 6000 chars."""
    return {k: str(v)[:6000] for k, v in d.items()}


def model_name(variant: str) -> str:
    """The MLflow logged model of a variant's run: its generator, named after the variant so
    the UI's model list tells the variants apart."""
    return f"{variant}-generator"


def run_name(variant: str, seed: int) -> str:
    """The MLflow run name of one training run: ``gan-seed0``."""
    return f"{variant}-seed{seed}"


PARENT_ROLE = "variant"
"""``role`` tag of a variant's parent run, which nests its seeds' runs in the UI."""


def variant_parent(c: MlflowClient, exp_id: str, variant: str) -> str:
    """The id of ``variant``'s parent run in the experiment, created (and finished at once:
    it holds no results, only its children) on first use. The UI's run list shows one row
    per variant that expands into its seeds' runs."""
    found = c.search_runs(
        [exp_id],
        filter_string=f"tags.role = '{PARENT_ROLE}' and tags.variant = '{variant}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        return found[0].info.run_id
    run = c.create_run(exp_id, run_name=variant, tags={"role": PARENT_ROLE, "variant": variant})
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
