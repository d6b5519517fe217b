"""The search space (lr, Adam betas, n_critic, the variant's own hook), the defaults trial, the
pruner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.core.hyper import Hyper
from pipeline.core.variants.base import Variant
from pipeline.infra.config import TuneConfig

if TYPE_CHECKING:
    import optuna


def suggest(
    trial: optuna.Trial, variant: Variant, base_hyper: Hyper, tune_cfg: TuneConfig
) -> Hyper:
    """The trial's hyperparameters: ``base_hyper`` with the tuned fields drawn from ``trial``.

    Parameter names: ``lr`` (log-uniform), ``beta1``/``beta2`` (Adam only), ``n_critic``
    (critic variants only) and whatever the variant's ``tune_space`` suggests (into options).
    Works with any trial-like object, e.g. ``optuna.trial.FixedTrial``.
    """
    lr = trial.suggest_float("lr", *tune_cfg.lr, log=True)
    betas = tuple(base_hyper.betas)
    if base_hyper.optimizer == "adam":
        betas = (
            trial.suggest_float("beta1", *tune_cfg.beta1),
            trial.suggest_float("beta2", *tune_cfg.beta2),
        )
    n_critic = base_hyper.n_critic
    if variant.tunes_n_critic:
        n_critic = trial.suggest_int("n_critic", *tune_cfg.n_critic)
    options = dict(base_hyper.options)
    if variant.tune_space is not None:
        options.update(variant.tune_space(trial))
    return Hyper(
        epochs=base_hyper.epochs,
        lr=lr,
        betas=betas,  # type: ignore[arg-type]
        n_critic=n_critic,
        optimizer=base_hyper.optimizer,
        options=options,
    )


def default_trial_params(variant: Variant) -> dict[str, Any]:
    """The published defaults (``Variant.resolve(None)``) as trial parameters (for enqueueing).

    Option defaults are all listed; the ones the variant's ``tune_space`` does not suggest are
    ignored by Optuna.
    """
    hyper = variant.resolve(None)
    out: dict[str, Any] = {"lr": hyper.lr}
    if hyper.optimizer == "adam":
        out["beta1"], out["beta2"] = hyper.betas
    if variant.tunes_n_critic:
        out["n_critic"] = hyper.n_critic
    if variant.tune_space is not None:
        out.update(hyper.options)
    return out


def block_updates(trial_params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters -> the fields of a ``variants.<name>`` params block."""
    out: dict[str, Any] = {}
    options: dict[str, float] = {}
    for key, value in trial_params.items():
        if key == "lr":
            out["lr"] = float(value)
        elif key == "n_critic":
            out["n_critic"] = int(value)
        elif key not in ("beta1", "beta2"):
            options[key] = float(value)
    if "beta1" in trial_params or "beta2" in trial_params:
        out["betas"] = [float(trial_params["beta1"]), float(trial_params["beta2"])]
    if options:
        out["options"] = options
    return out


def make_pruner(tune_cfg: TuneConfig) -> optuna.pruners.BasePruner:
    """Median rule with start-up trials and warm-up epochs, tolerant of one noisy epoch."""
    import optuna

    median = optuna.pruners.MedianPruner(
        n_startup_trials=tune_cfg.pruner_startup_trials,
        n_warmup_steps=tune_cfg.pruner_warmup_epochs,
    )
    if tune_cfg.pruner_patience == 0:
        return median
    return optuna.pruners.PatientPruner(median, patience=tune_cfg.pruner_patience)
