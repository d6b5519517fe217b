"""A study's results for the report: best.json (best trial vs defaults, trials by state) and
Optuna's plots.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.infra.config import Params
from pipeline.infra.errors import describe
from pipeline.infra.io import write_json
from pipeline.stages.tune.common import ATTR_BUDGET, ATTR_ROLE, OBJECTIVE, _log, results_dir

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Counts:
    complete: int
    pruned: int
    fail: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study: optuna.Study) -> Counts:
    from optuna.trial import TrialState as S

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return Counts(*(states.count(s) for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING, S.WAITING)))


def _fmt_params(p: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={one(v)}" for k, v in p.items())


def study_results(
    study: optuna.Study, variant: str, mlflow: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``best.json`` document (see the module docstring); ``mlflow``: where the study's
    runs are (experiment name and id, parent run id), for links from the report."""
    from optuna.trial import TrialState as S

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
    defaults = [t for t in trials if t.user_attrs.get(ATTR_ROLE) == "defaults"]
    default_value = next((t.value for t in defaults if t.state == S.COMPLETE), None)
    durations = [
        t.duration.total_seconds()
        for t in trials
        if t.state in (S.COMPLETE, S.PRUNED) and t.duration is not None
    ]
    mean_s = sum(durations) / len(durations) if durations else None
    budget = study.user_attrs.get(ATTR_BUDGET, {})
    return {
        "variant": variant,
        "study": study.study_name,
        "objective": f"{OBJECTIVE} (minimize)",
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "best_trial": best.number if best else None,
        "default_value": default_value,
        "default_params": dict(defaults[0].params) if defaults else None,
        "trials": {
            s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")
        },
        "epochs_per_trial": budget.get("epochs"),
        "sample_n": budget.get("sample_n"),
        # One worker's throughput: 3600 / mean duration of the finished (complete or pruned) trials.
        "trials_per_hour": round(3600.0 / mean_s, 3) if mean_s else None,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"mlflow": mlflow} if mlflow else {}),
    }


PLOTS = ("optimization_history", "intermediate_values", "param_importances")
"""The plots write_results makes (``<name>.png`` beside best.json)."""


def _plot(fn: Callable[[], Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = fn()
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.tight_layout()
    from pipeline.infra.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_results(
    params: Params,
    study: optuna.Study,
    variant: str,
    plots: bool = True,
    mlflow: dict[str, Any] | None = None,
) -> Path:
    """``best.json`` (+ the plots) under ``<tune.out_dir>/<variant>/``; returns best.json."""
    from optuna.visualization import matplotlib as ovm

    out = results_dir(params, variant)
    doc = study_results(study, variant, mlflow)
    path = out / "best.json"
    write_json(path, doc)
    if not plots:
        return path
    n_complete = doc["trials"]["COMPLETE"]
    jobs: list[tuple[str, Callable[[], Any]]] = []
    if n_complete:
        jobs.append(("optimization_history", lambda: ovm.plot_optimization_history(study)))
        jobs.append(("intermediate_values", lambda: ovm.plot_intermediate_values(study)))
    if n_complete >= 2 and len(doc["best_params"]) > 1:
        jobs.append(("param_importances", lambda: ovm.plot_param_importances(study)))
    for name, fn in jobs:
        try:
            _plot(fn, out / f"{name}.png")
        except Exception as err:  # e.g. importances of constant parameters
            _log(f"warning: {name} plot not written ({describe(err)})")
            (out / f"{name}.png").unlink(missing_ok=True)
    # A plot this study has none of (yet) may be left from another study (--study) or an older
    # state of this one: the report shows every PNG here beside best.json, so remove it.
    written = {name for name, _ in jobs}
    for name in PLOTS:
        if name not in written:
            (out / f"{name}.png").unlink(missing_ok=True)
    return path
