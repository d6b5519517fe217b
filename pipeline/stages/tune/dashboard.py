"""``make optuna-dashboard``: the tuning studies, live, in optuna-dashboard on 127.0.0.1.

``python -m pipeline.stages.tune.dashboard [--params params.yaml] [--storage URL] [--port 8080]``
serves the storage ``pipeline tune`` uses (``tune.storage``, relative paths against the params
file's folder, as there): a ``journal://`` file is opened as Optuna's JournalStorage, an SQLite
or PostgreSQL URL is passed on. optuna-dashboard's own command takes the same storages
(``optuna-dashboard sqlite:///optuna.db``, or a journal file's path:
``optuna-dashboard optuna.journal``); this one adds the params file's resolution and listens
on 127.0.0.1 only (the trials' parameters and logs are nobody else's business).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.stages.mlflow_ui import DASHBOARD_BASE
from pipeline.stages.tune.storage import public_url, resolve_storage_url

if TYPE_CHECKING:
    import optuna

HOST = "127.0.0.1"
PORT = int(DASHBOARD_BASE.rsplit(":", 1)[1])  # `make optuna-dashboard` (OPTUNA_PORT)


def dashboard_storage(params: Params, url: str | None = None) -> str | optuna.storages.BaseStorage:
    """The storage of ``pipeline tune`` as optuna-dashboard takes it; a missing file is an
    error here (opening it would create an empty study store)."""
    resolved = resolve_storage_url(params, url)
    if resolved.startswith("journal://"):
        path = Path(resolved[len("journal://") :])
        if not path.is_file():
            raise PipelineError(f"no journal at {path}: run `pipeline tune` first")
        import optuna
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if resolved.startswith("sqlite:///") and not Path(resolved[len("sqlite:///") :]).is_file():
        raise PipelineError(f"no study store at {public_url(resolved)}: run `pipeline tune` first")
    return resolved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.stages.tune.dashboard", description=__doc__
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--storage", default=None, help="default: tune.storage")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    from pipeline.infra.params import load_params

    try:
        storage = dashboard_storage(load_params(args.params), args.storage)
        from optuna_dashboard import run_server
    except (PipelineError, ImportError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(f"optuna-dashboard on http://{HOST}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    run_server(storage, host=HOST, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
