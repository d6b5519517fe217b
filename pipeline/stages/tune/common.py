"""Names shared by the tuning modules: study/trial attribute keys, the objective's name, small
helpers.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.infra import layout
from pipeline.infra.config import Params

if TYPE_CHECKING:
    pass


OBJECTIVE = "classifier_fid"


MAX_FAILURES_IN_A_ROW = 3
"""A worker stops after this many of its trials failed in a row (a setup problem, not bad luck)."""


# Study user attrs
ATTR_VARIANT = "variant"


ATTR_BUDGET = "budget"


ATTR_SESSION = "session"


ATTR_PARENT = "mlflow_parent_run_id"  # + ":" + the tracking store digest, see parent_attr()


PENDING = "pending"


# Trial user attrs
ATTR_ROLE = "role"  # "defaults" on the enqueued published-defaults trial


ATTR_PID = "pid"


ATTR_HOST = "host"


ATTR_RUN = "mlflow_run_id"


ATTR_FAIL = "fail_reason"


ATTR_PRUNE = "prune_reason"


PARENT_WAIT_S = 30.0  # how long a joining worker waits for the creator's MLflow parent run


def _poll(get: Callable[[], Any], seconds: float, done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + seconds
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = get()
    return value


def default_study_name(variant: str) -> str:
    return f"tune-{variant}"


def tune_command(
    variant: str,
    *,
    params_path: Path | str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    apply: bool = False,
) -> str:
    """The ``pipeline tune`` command line that acts on the same study, shell-quoted.

    Repeats the options the user gave that are not the defaults: ``--params`` (unless it is
    ./params.yaml), ``--study`` (unless it is ``tune-<variant>``) and ``--storage`` (as given,
    its password masked), so a printed hint never falls back to another study.
    """
    from pipeline.stages.tune.storage import public_url

    args = ["pipeline", "tune", variant]
    if params_path is not None and Path(params_path).resolve() != Path("params.yaml").resolve():
        args += ["--params", str(params_path)]
    if study_name and study_name != default_study_name(variant):
        args += ["--study", study_name]
    if storage:
        args += ["--storage", public_url(storage)]
    if apply:
        args.append("--apply")
    return shlex.join(args)


def results_dir(params: Params, variant: str) -> Path:
    return layout.tuning_results(params, variant)


SCRATCH_PREFIX = "tune-"


def scratch_dir(params: Params) -> Path:
    """Where trials train (one locked scratch folder each, deleted after the trial): the
    project's tuning cache, not the system temp folder, so a killed worker's folder is found
    and removed when the next study starts."""
    return params.path(params.tune.out_dir) / ".cache" / "trials"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own one line per trial instead
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)
