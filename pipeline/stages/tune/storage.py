"""Optuna storages: URL resolution (SQLite, PostgreSQL, journal files), heartbeats and retries."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, describe

if TYPE_CHECKING:
    import optuna


def resolve_storage_url(params: Params, url: str | None = None) -> str:
    """``url`` (default ``tune.storage``) with relative file paths made absolute.

    ``sqlite:///rel.db`` and ``journal://rel.log`` resolve against the params file's folder;
    ``sqlite:////abs.db`` and ``journal:///abs.log`` are absolute. ``postgresql://`` (or
    ``postgres://``) gets the psycopg2 driver when psycopg 3 is not installed.
    """
    url = url or params.tune.storage
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///") :]
        if rest and rest != ":memory:" and not rest.startswith(":"):
            return "sqlite:///" + str(params.path(rest).resolve())
        return url
    if url.startswith("journal://"):
        rest = url[len("journal://") :]
        if not rest:
            raise PipelineError(f"storage {url!r}: journal://PATH needs a file path")
        return "journal://" + str(params.path(rest).resolve())
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
                return "postgresql+psycopg2://" + url[len(scheme) :]
            return "postgresql://" + url[len(scheme) :]
    return url


def public_url(url: str) -> str:
    """The storage URL without a password (for logs, MLflow tags and best.json)."""
    if url.startswith("journal://") or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"


def _retry_callback(max_retry: int) -> Callable[..., None]:
    import optuna.storages as st

    cls = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    return cls(max_retry=max_retry)


def open_storage(
    params: Params,
    url: str | None = None,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna storage object for ``url`` (see :func:`resolve_storage_url`).

    RDB storages get a heartbeat (``tune.heartbeat_s``, grace ``tune.grace_s``) and a callback
    that re-queues a trial whose worker died (``tune.max_retry`` times), then calls
    ``on_stale``. Journal URLs open a JournalFileBackend (no heartbeat).
    """
    import optuna

    resolved = resolve_storage_url(params, url)
    cfg = params.tune
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if resolved.startswith("journal://"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(resolved[len("journal://") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        retry = _retry_callback(cfg.max_retry)

        def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            retry(study, trial)
            if on_stale is not None:
                on_stale(study, trial)

        engine_kwargs: dict[str, Any] = {}
        if resolved.startswith("sqlite"):
            Path(resolved[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            # The heartbeat thread writes beside the trial: wait for the lock, don't fail.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            engine_kwargs["pool_pre_ping"] = True
        kwargs: dict[str, Any] = {
            "engine_kwargs": engine_kwargs,
            "heartbeat_interval": cfg.heartbeat_s,
            "grace_period": cfg.grace_period_s(),
        }
        try:
            try:
                return optuna.storages.RDBStorage(
                    resolved, heartbeat_stale_trial_callback=stale, **kwargs
                )
            except TypeError:  # optuna < 4.9
                return optuna.storages.RDBStorage(resolved, failed_trial_callback=stale, **kwargs)
        except ImportError as err:
            raise PipelineError(
                f"storage {public_url(resolved)}: its database driver is not installed ({err})"
            ) from None
        except Exception as err:
            raise PipelineError(
                f"storage {public_url(resolved)}: cannot open it ({describe(err)})"
            ) from None


def _heartbeat_enabled(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def _fail_stale(study: optuna.Study) -> None:
    import optuna

    if not _heartbeat_enabled(study):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
