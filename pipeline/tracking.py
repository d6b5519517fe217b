"""MLflow at the edge: the trainer emits events, this module records them.

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

from pipeline.config import Params
from pipeline.errors import PipelineError

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


def setup(params: Params) -> str:
    """Point MLflow at the configured store; return the experiment id (created if needed)."""
    import mlflow

    uri = resolve_uri(params)
    if uri.startswith(("http://", "https://")):
        # MLflow retries for minutes by default; fail fast instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(params.tracking.timeout_s)))
        _check_server(uri, params.tracking.timeout_s)
    mlflow.set_tracking_uri(uri)
    name = params.tracking.experiment
    key = f"{uri}#{name}"
    if key in _configured:
        return _configured[key]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if not uri.startswith(("http://", "https://")):
            location = params.path(params.tracking.artifacts).resolve().as_uri()
        exp_id = client.create_experiment(name, artifact_location=location)
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
