"""The `pipeline` command line: one thin command per DVC stage, plus tuning.

Over 300 lines: one short Typer function per command, read as the list of commands.

Commands parse options, load params.yaml once, call one library function and print a short
summary. Any :class:`PipelineError` becomes one line on stderr and a non-zero exit code
(2 for an invalid params file), never a traceback. Heavy imports (torch, mlflow, optuna)
happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from pipeline.infra.errors import PipelineError, UsageError, describe


class _FlagsAsFlags:
    """Typer (0.29) prints ``<bool>`` beside on/off flags (``--apply``, ``--help``), which
    reads as if they took a value; an empty metavar leaves their type column blank."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsAsFlags, TyperCommand):
    pass


class _Group(_FlagsAsFlags, TyperGroup):
    pass


def variant_names() -> list[str]:
    """The registered variants' names, read from the file names in pipeline/core/variants/ (one
    file per variant) so that ``--help`` does not import torch; a test checks them against
    the registry."""
    folder = Path(__file__).resolve().parent / "core" / "variants"
    return sorted(
        f.stem for f in folder.glob("*.py") if not f.stem.startswith("_") and f.stem != "base"
    )


app = typer.Typer(
    cls=_Group,
    help=(
        "Train, sample, score and compare GAN variants on MNIST.\n\n"
        "Each DVC stage in dvc.yaml calls one of these commands; `dvc repro` runs them all."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[
    Path,
    typer.Option(
        "--params", "-p", help="Parameter file; relative paths in it resolve against its folder."
    ),
]
VariantArg = Annotated[
    str,
    typer.Argument(
        metavar="VARIANT",
        help=f"Variant key under `variants:` in params.yaml; known: {', '.join(variant_names())}.",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        # No ``min=0``: Typer's range check prints a five-line usage box; _seed says it in one.
        help="Training seed of the run (one of train.seeds; default: the first). Each seed is "
        "its own run: models/VARIANT/seedS, samples/VARIANT/seedS, metrics/VARIANT/seedS.json.",
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N.")
]


def _load(params_path: Path, registry: bool = True):
    """The validated params; with ``registry``, each ``variants.<name>`` block also checked
    against the variant registry (which imports torch: the report goes without it)."""
    if not registry:
        from pipeline.infra.params import load_params

        return load_params(params_path)
    from pipeline.training.params import load_checked

    return load_checked(params_path)


def _seed(p: Any, seed: int | None) -> int:
    """``--seed``, which must be one of train.seeds (default: the first of them)."""
    from pipeline.infra.errors import ConfigError

    if seed is None:
        return p.train.first_seed
    if seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {seed})")
    if seed not in p.train.seeds:
        seeds = ", ".join(map(str, p.train.seeds))
        raise ConfigError(f"--seed {seed}: not in train.seeds ({seeds}); add it there first")
    return seed


def _echo(msg: str) -> None:
    typer.echo(msg)


def _at_least_one(**options: int | float | None) -> None:
    """Counts given on the command line must be >= 1: checked here rather than with Typer's
    ``min=`` so that the error is one line like every other (not a five-line usage box)."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1 (got {value:g})")


def command(fn: Callable[..., None] | None = None, *, group: typer.Typer | None = None) -> Any:
    """Register ``fn`` as a command (of ``app``, or of the sub-command ``group``) whose
    PipelineErrors become one line + exit code."""
    if fn is None:
        return functools.partial(command, group=group)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except PipelineError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # unexpected: one line, the traceback only on request
            if os.environ.get("PIPELINE_DEBUG"):
                raise
            typer.echo(f"Error: {describe(err)} (PIPELINE_DEBUG=1 shows the traceback)", err=True)
            raise typer.Exit(1) from None

    return (group or app).command(cls=_Command)(wrapper)


@command
def prepare(params: ParamsOpt = Path("params.yaml")) -> None:
    """Fetch MNIST (md5-checked; local mirror from $PIPELINE_MNIST_MIRROR or data.mirror) and
    write it under data/mnist as uint8 tensors, atomically."""
    from pipeline.infra.data import prepare as run

    p = _load(params)
    out = run(p)
    _echo(
        f"MNIST prepared in {out.dir}: train {out.counts['train']:,}, test {out.counts['test']:,} "
        f"images; train pixel mean {out.train_mean:.4f}"
    )


@command
def classifier(
    params: ParamsOpt = Path("params.yaml"),
    epochs: Annotated[int | None, typer.Option(help="Override classifier.epochs.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Train the MNIST CNN used as the evaluator's feature extractor (>= 99% test accuracy)."""
    from pipeline.stages.classifier import train_classifier

    _at_least_one(epochs=epochs)
    p = _load(params)
    result = train_classifier(p, epochs=epochs, device=device)
    _echo(f"classifier: test accuracy {result.test_accuracy:.4%} -> {result.path}")


@command
def train(
    variant: VariantArg,
    params: ParamsOpt = Path("params.yaml"),
    seed: SeedOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override the variant's epochs.")] = None,
    subset: Annotated[
        int | None, typer.Option(help="Train on the first N images only (smoke runs).")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Train one variant with one seed; resumes from its last checkpoint after an interruption."""
    from pipeline.infra.devices import deterministic_cublas, use_threads

    _at_least_one(epochs=epochs, subset=subset)
    p = _load(params)
    if p.train.deterministic:
        deterministic_cublas()  # before anything runs on CUDA: ATen reads it once
    from pipeline.stages.train import train_variant

    seed = _seed(p, seed)
    use_threads(p.train.threads)
    if "inception" in p.evaluate.extractors:
        # Fail before hours of training, not in the evaluate stage after them.
        from pipeline.core.variants._known import known
        from pipeline.infra.weights import check_inception_weights

        known(variant)
        check_inception_weights(p)
    result = train_variant(p, variant, seed=seed, epochs=epochs, subset=subset, device=device)
    _echo(
        f"{variant} seed {seed}: {result.epochs} epochs, {result.steps:,} steps at "
        f"{result.steps_per_s:,.1f} steps/s -> {result.checkpoint}"
    )


@command
def sample(
    variant: VariantArg,
    params: ParamsOpt = Path("params.yaml"),
    seed: SeedOpt = None,
    n: Annotated[int | None, typer.Option(help="Override sample.n.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Generate sample.n images from a trained run (uint8 tensor + preview grid); the latents
    depend on the seed, not on the variant."""
    from pipeline.stages.sample import sample_variant

    _at_least_one(n=n)
    p = _load(params)
    seed = _seed(p, seed)
    out = sample_variant(p, variant, seed=seed, n=n, device=device)
    _echo(f"{variant} seed {seed}: {out.n:,} samples -> {out.path}")


@command
def evaluate(
    variant: VariantArg,
    params: ParamsOpt = Path("params.yaml"),
    seed: SeedOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Score a run's samples (classifier and/or Inception metrics) -> metrics/VARIANT/seedS.json."""
    from pipeline.stages.evaluate.stage import evaluate_variant

    p = _load(params)
    seed = _seed(p, seed)
    path = evaluate_variant(p, variant, device=device, seed=seed)
    _echo(f"{variant} seed {seed}: metrics -> {path}")


@command
def floor(params: ParamsOpt = Path("params.yaml"), device: DeviceOpt = None) -> None:
    """Score evaluate.floor_n MNIST train images against the test set: the real-vs-real floor
    every variant is compared with -> metrics/floor.json."""
    from pipeline.stages.evaluate.stage import evaluate_floor

    p = _load(params)
    path = evaluate_floor(p, device=device)
    _echo(f"floor: metrics -> {path}")


@command
def noise(params: ParamsOpt = Path("params.yaml"), device: DeviceOpt = None) -> None:
    """Evaluation noise: re-sample the best run (lowest FID over every variant and seed)
    evaluate.noise_draws times on fresh latents and score each draw -> reports/noise.json."""
    from pipeline.stages.evaluate.noise import measure_noise

    p = _load(params)
    path = measure_noise(p, device=device)
    _echo(f"noise: {p.evaluate.noise_draws} draws -> {path}")


@command
def report(params: ParamsOpt = Path("params.yaml")) -> None:
    """Build the comparison report: reports/index.html, reports/comparison.md and plots."""
    from pipeline.stages.report import build_report

    p = _load(params, registry=False)
    out = build_report(p)
    _echo(f"report -> {out}")


@command
def toy(
    params: ParamsOpt = Path("params.yaml"),
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant", "-v", help="Only this variant (repeatable); default: toy.variants."
        ),
    ] = None,
    problem: Annotated[
        list[str] | None,
        typer.Option("--problem", help="gaussian1d or ring8 (repeatable); default: toy.problems."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu (default), auto, cuda.")] = "cpu",
) -> None:
    """The GAN paper's 1-D Gaussian and the 8-Gaussian ring for every applicable variant, in
    seconds: GIFs, modes covered, high-quality share, JS divergence -> toy/ and MLflow."""
    from pipeline.stages.toy.stage import run_toy

    p = _load(params)
    out = run_toy(p, variants=variant, problems=problem, device=device)
    for r in out.results:
        scores = ", ".join(f"{k} {v:.3g}" for k, v in r.metrics.items())
        _echo(f"{r.problem} {r.variant}: {scores} ({r.seconds:.1f} s)")
    for name, why in out.skipped.items():
        _echo(f"not applicable: {name} ({why})")
    _echo(
        f"toy: {len(out.results)} runs in {out.seconds:.1f} s on {out.workers} "
        f"process{'es' if out.workers > 1 else ''} -> {out.out_dir}"
    )


@command
def grid(
    params: ParamsOpt = Path("params.yaml"),
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a running Dask scheduler (tcp://host:8786; default grid.scheduler); "
            "without one, an embedded cluster on this machine.",
        ),
    ] = None,
) -> None:
    """Run every (variant, seed) chain DVC reports out of date (train -> sample -> evaluate,
    one worker process per chain, many at once on Dask) and record each finished chain in
    dvc.lock, so that `dvc repro` then runs only floor, noise, toy and report."""
    from pipeline.stages.grid.run import run_grid

    out = run_grid(params, scheduler=scheduler)
    for row in out.rows:
        if row.state != "done":
            _echo(f"{row.name}: failed: {row.reason}")
            continue
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in row.seconds.items())
        _echo(f"{row.name}: done in {row.wall_s:.1f} s ({stages})")
    if out.rows:
        n = len(out.rows)
        _echo(f"grid: {n - len(out.failed)}/{n} chains done and committed in {out.wall_s:.1f} s")
    if out.failed:
        names = ", ".join(r.name for r in out.failed)
        typer.echo(f"Error: {len(out.failed)} chains failed ({names}); rerun to resume", err=True)
        raise typer.Exit(1)


@command
def tune(
    variant: VariantArg,
    params: ParamsOpt = Path("params.yaml"),
    trials: Annotated[
        int | None,
        typer.Option(
            help="Finished trials to add to the study (default tune.trials); workers started "
            "with the same number share it instead of adding it each."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Stop starting new trials after this many seconds (overnight runs)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default tune.storage): sqlite:///optuna.db for one worker; "
            "postgresql://user@host/db, or journal:///shared/path.log without a server, for "
            "several workers on one study."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: tune-VARIANT).")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs per trial (default tune.epochs).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (default tune.seed).")] = None,
    device: DeviceOpt = None,
    jobs: Annotated[
        int,
        typer.Option(
            help="Trial workers on this machine sharing the study (N processes, one torch "
            "thread each on CPU, one device on CUDA); needs a journal:// or postgresql:// "
            "storage."
        ),
    ] = 1,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Write the study's best trial into variants.VARIANT of the params file "
            "(comments kept; the old block goes to reports/tuning/VARIANT/applied.json).",
        ),
    ] = False,
) -> None:
    """Optuna study over lr, Adam betas and n_critic (objective: MNIST-classifier FID).

    Resumable: the same command continues the study; Ctrl-C keeps every finished trial.
    Run the same command on several machines against one PostgreSQL (or journal) storage to
    share a study, or --jobs N for N workers on this one; `make optuna-dashboard` watches it. Results: reports/tuning/VARIANT/best.json and plots; --apply writes the best.
    """
    from pipeline.infra.devices import deterministic_cublas, use_threads

    _at_least_one(trials=trials, epochs=epochs, jobs=jobs)
    p = _load(params)
    if p.train.deterministic:
        deterministic_cublas()  # before anything runs on CUDA: ATen reads it once
    from pipeline.infra.faults import WORKER_ENV

    # each worker's trials train with train.threads; a worker of --jobs with one thread
    use_threads(1 if os.environ.get(WORKER_ENV) else p.train.threads)
    if os.environ.get(WORKER_ENV):
        import signal

        # Its parent stops it with SIGINT (Ctrl-C), even when the parent was started with
        # SIGINT ignored (a background job of a script), which a child would inherit.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if apply:
        from pipeline.stages.tune.apply import apply_best

        changes = apply_best(p, params, variant, storage=storage, study_name=study)
        _echo(f"{variant}: {changes}")
        return
    if jobs > 1:
        from pipeline.stages.tune.workers import run_workers

        given = {"--timeout": timeout, "--epochs": epochs, "--seed": seed, "--device": device}
        worker_args = [a for k, v in given.items() if v is not None for a in (k, str(v))]
        _echo(
            run_workers(
                p,
                variant,
                jobs,
                worker_args=worker_args,
                trials=trials,
                storage=storage,
                study_name=study,
                params_path=params,
            )  # fmt: skip
        )
        return
    from pipeline.stages.tune.study import run_study

    summary = run_study(
        p,
        variant,
        trials=trials,
        timeout=timeout,
        storage=storage,
        study_name=study,
        epochs=epochs,
        seed=seed,
        device=device,
        params_path=params,
    )
    _echo(summary)


config_app = typer.Typer(
    cls=_Group, help="The params file: merge a profile into it.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@command(group=config_app)
def merge(
    target: Annotated[Path, typer.Argument(help="The params file, rewritten in place.")],
    profile: Annotated[Path, typer.Argument(help="The overrides, e.g. profiles/smoke.yaml.")],
) -> None:
    """Merge a profile into a params file (mappings key by key, anything else replaced) and
    validate the result; an invalid result writes nothing."""
    from pipeline.infra.params import merge_profile

    merge_profile(target, profile)
    _echo(f"{target}: merged with {profile}")


@command
def results(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="The snapshot folder (replaced as a whole).")] = Path(
        "reports/results"
    ),
    run_command: Annotated[
        str, typer.Option("--command", help="The command that produced the chain.")
    ] = "make results",
    commit: Annotated[str, typer.Option(help="The commit the chain ran at.")] = "unknown",
    profile: Annotated[str, typer.Option(help="The profile merged into params.yaml.")] = "",
    wall_time: Annotated[float | None, typer.Option(help="Seconds the chain took, in all.")] = None,
    attempts: Annotated[int, typer.Option(help="How many runs it took (resumes).")] = 1,
    left_out: Annotated[
        Path | None,
        typer.Option(help="Step rates of the models the profile left out (step_rate.py)."),
    ] = None,
) -> None:
    """Write the results snapshot (reports/results/: README, results.json, one grid per
    model) from a finished chain; `make results` runs the chain and then this."""
    from pipeline.stages.results import write_snapshot

    dest = write_snapshot(
        _load(params), out, command=run_command, commit=commit, profile=profile,
        wall_time_s=wall_time, attempts=attempts, left_out=left_out,
    )  # fmt: skip
    _echo(f"results snapshot -> {dest}")


@command
def mlflow_links(
    params: ParamsOpt = Path("params.yaml"),
    base: Annotated[str, typer.Option(help="Where the MLflow UI listens.")] = (
        "http://127.0.0.1:5000"
    ),
) -> None:
    """Print the MLflow UI's direct links to this project's runs (the comparison's run list,
    one per tuning study); `make mlflow-ui` prints them before it starts the UI."""
    from pipeline.stages.mlflow_ui import experiment_links

    links = experiment_links(_load(params), base)
    if not links:
        _echo("MLflow: no runs yet (run `make repro`, or open the store of ./smoke/ instead)")
    for name, url in links:
        _echo(f"MLflow runs of {name}: {url}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
