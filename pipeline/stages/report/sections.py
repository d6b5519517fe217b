"""The sections without figures of their own: hyperparameters, tuning, MLflow."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pipeline.infra import layout
from pipeline.stages.mlflow_ui import DASHBOARD_BASE, UI_BASE, experiment_id, run_list_url, run_url
from pipeline.stages.report import fmt
from pipeline.stages.report.assets import Picture, copy_asset
from pipeline.stages.report.inputs import Inputs, rel
from pipeline.stages.report.page import Section, code, footnotes, gallery, md_text, prose, table
from pipeline.stages.report.tables import Cell, plain_table

HYPER_HEADERS = [
    "Variant", "Optimizer", "lr", "Betas", "n_critic", "Options", "Epochs", "Steps",
    "Train time", "Steps/s", "Device",
]  # fmt: skip
CONFIGURED = " (configured)"


def _hyper(inputs: Inputs, acc_text: str) -> Section:
    rows = []
    for v in inputs.variants:
        hyper = fmt.get(v.summary, "hyper")
        label = v.name
        if not isinstance(hyper, dict):
            hyper = v.configured or {}
            label += CONFIGURED if v.configured else ""
        epochs = fmt.get(v.summary, "epochs")
        epochs = epochs if epochs is not None else hyper.get("epochs")
        optimizer = hyper.get("optimizer")
        betas = hyper.get("betas")
        m = fmt.MISSING
        rows.append([
            label,
            str(optimizer) if optimizer is not None else m,
            fmt.sci(hyper["lr"]) if "lr" in hyper else m,
            # RMSprop ignores the betas; showing them would suggest otherwise.
            fmt.NOT_APPLICABLE if optimizer == "rmsprop" else (fmt.sci(betas) if betas is not None else m),
            str(hyper["n_critic"]) if "n_critic" in hyper else m,
            fmt.sci(hyper["options"]) if "options" in hyper else m,
            f"{epochs:,}" if isinstance(epochs, int) else m,
            fmt.integer(fmt.num(v.summary, "steps")) or m,
            fmt.duration(fmt.num(v.summary, "train_time_s")) or m,
            fmt.fixed(fmt.num(v.summary, "steps_per_s"), 1) or m,
            str(fmt.get(v.summary, "device") or m),
        ])  # fmt: skip
    blocks = [
        prose(
            "Hyperparameters as trained (from each variant's `summary.json`); MNIST evaluator "
            f"(classifier) test accuracy: **{acc_text}**."
        ),
        table(plain_table("hyper-table", HYPER_HEADERS, rows, text_cols={1, 5, 10})),
    ]
    if any(row[0].endswith(CONFIGURED) for row in rows):
        blocks.append(footnotes([
            "(configured): no readable summary.json, so these are the hyperparameters "
            "configured in params.yaml, not those of a finished run."
        ]))  # fmt: skip
    return Section("hyper", "Hyperparameters and training", "Hyperparameters", blocks)


TUNING_HEADERS = [
    "Variant", "Study", "Trials (complete / pruned / failed)", "Defaults", "Best trial",
    "Change", "Best parameters",
]  # fmt: skip


def _tuning(inputs: Inputs, out_dir: Path) -> Section:
    params = inputs.params
    rows, figs = [], []
    for v in inputs.variants:
        if v.tuning is None and not v.tuning_plots:
            continue
        t = v.tuning or {}
        trials = t.get("trials") if isinstance(t.get("trials"), dict) else {}
        trial_text = (
            " / ".join(str(trials.get(k, 0)) for k in ("COMPLETE", "PRUNED", "FAIL"))
            if trials
            else fmt.MISSING
        )
        best, default = fmt.num(t, "best_value"), fmt.num(t, "default_value")
        change = fmt.MISSING
        if best is not None and default is not None and default != 0.0:
            change = f"{(best - default) / abs(default):+.1%}"
        best_params = t.get("best_params")
        where = t.get("mlflow") if isinstance(t.get("mlflow"), dict) else {}
        study = str(t.get("study", fmt.MISSING))
        exp_id = where.get("experiment_id")
        study_cell = Cell(study, href=run_list_url(UI_BASE, str(exp_id))) if exp_id else study
        rows.append([
            v.name, study_cell, trial_text,
            fmt.fixed(default, 3) or fmt.MISSING, fmt.fixed(best, 3) or fmt.MISSING, change,
            fmt.sci(best_params) if isinstance(best_params, dict) else fmt.MISSING,
        ])  # fmt: skip
        for plot in v.tuning_plots:
            figs.append(Picture(
                f"tuning-{v.name}-{plot.stem}", f"**{md_text(v.name)}** — {plot.stem.replace('_', ' ')}",
                copy_asset(plot, f"tuning/{v.name}/{plot.name}"), f"{plot.name} unreadable",
                f"{v.name}: {plot.stem}", sample_grid=False,
                # Tuning plots live under the tuning folder: comparison.md links them there.
                link=Path(os.path.relpath(plot, out_dir)).as_posix(),
            ))  # fmt: skip
    intro = (
        "Optuna studies (`pipeline tune VARIANT`): the objective of the best trial against the "
        "same objective with the published defaults (lower is better for the default "
        "objective, the MNIST-classifier FID). Apply a best trial with `pipeline tune VARIANT "
        "--apply`, then `dvc repro`. Study outputs live in "
        f"`{rel(layout.tuning_dir(params), params.root)}/`. Trials are scored against "
        f"{params.tune.holdout:,} MNIST *training* images held out by a fixed seed "
        f"(`tune.holdout`, `tune.holdout_seed` = {params.tune.holdout_seed}) and train on "
        "the rest: tuning never selects on the test images the scores above use."
    )
    blocks = [
        prose(intro),
        table(plain_table("tuning-table", TUNING_HEADERS, rows, text_cols={1, 6})),
    ]
    if figs:
        blocks.append(gallery(figs, wide=True))
    return Section("tuning", "Tuning: best trial vs defaults", "Tuning", blocks)


def _mlflow(inputs: Inputs) -> Section:
    from pipeline.infra.tracking import resolve_uri

    params = inputs.params
    command = f"mlflow ui --backend-store-uri {shlex.quote(resolve_uri(params))}"
    exp_id = experiment_id(params, params.tracking.experiment)
    rows = []
    for v in inputs.variants:
        run_id = fmt.get(v.summary, "run_id")
        href = run_url(UI_BASE, exp_id, str(run_id)) if exp_id and run_id else ""
        rows.append([
            v.name,
            Cell(str(run_id), code=True, href=href) if run_id else Cell(fmt.MISSING, state="missing"),
        ])  # fmt: skip
    return Section("mlflow", "Browse the runs in MLflow", "MLflow", [
        prose(
            "Every training run is logged to MLflow (parameters, per-epoch metrics, sample "
            f"grids and the model) in the experiment `{params.tracking.experiment}`. Start the "
            "UI with"
        ),
        code(command),
        prose(
            f"(or `make mlflow-ui`) and open <{UI_BASE}>; each run id below links to its run"
            + ("" if exp_id else " once the MLflow store holds this experiment")
            + ", and a tuning study to its own experiment. Runs of this report:"
        ),
        table(plain_table("runs-table", ["Variant", "MLflow run id"], rows, text_cols={1}, compact=True)),
        *([prose(
            "The tuning studies themselves (every trial, its curve and parameters, live while "
            "`pipeline tune` runs): `make optuna-dashboard` serves the "
            f"storage `{params.tune.storage}` with optuna-dashboard; open <{DASHBOARD_BASE}>."
        )] if any(v.tuning or v.tuning_plots for v in inputs.variants) else []),
    ])  # fmt: skip


def rest(inputs: Inputs, acc_text: str) -> list[Section]:
    out = [_hyper(inputs, acc_text)]
    if any(v.tuning or v.tuning_plots for v in inputs.variants):
        out.append(_tuning(inputs, layout.report_dir(inputs.params)))
    out.append(_mlflow(inputs))
    return out
