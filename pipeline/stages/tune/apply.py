"""--apply: write a study's best trial into the params file (ruamel round-trip), keeping the old
block.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.variants._known import known
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import write_json, write_text
from pipeline.infra.params import parse_params
from pipeline.stages.tune.common import (
    OBJECTIVE,
    _quiet_optuna,
    default_study_name,
    results_dir,
    tune_command,
)
from pipeline.stages.tune.results import study_results
from pipeline.stages.tune.space import block_updates
from pipeline.stages.tune.storage import open_storage, public_url, resolve_storage_url
from pipeline.training.params import load_checked

if TYPE_CHECKING:
    pass


# --apply


def _yaml_float(representer: Any, value: float) -> Any:
    # repr() round-trips exactly; YAML 1.1 (PyYAML, which load_params uses) needs a dot in
    # the mantissa and a signed exponent to read "1e-05" as a float.
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mant, exp = text.split("e")
        text = f"{mant}.0e{exp}"
    if "e" in text and text.split("e")[1][0] not in "+-":
        mant, exp = text.split("e")
        text = f"{mant}e+{exp}"
    if text in ("inf", "-inf", "nan"):
        text = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _edit_params_text(text: str, variant: str, updates: dict[str, Any], comment: str) -> str:
    """The params file with ``variants.<variant>`` updated; comments and layout kept."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y = YAML()  # round-trip mode
    y.preserve_quotes = True
    y.width = 4096
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    y.representer.add_representer(float, _yaml_float)
    doc = y.load(text)
    if doc is None:
        doc = CommentedMap()
    variants = doc.get("variants")
    if variants is None:
        variants = doc["variants"] = CommentedMap()
    block = variants.get(variant)
    if block is None:
        block = variants[variant] = CommentedMap()
    if not block:  # `gan: {}` (the published defaults): the tuned keys go one per line
        block.fa.set_block_style()
    for key, value in updates.items():
        if key == "betas":
            seq = block.get("betas")
            if isinstance(seq, CommentedSeq) and len(seq) == len(value):
                for i, b in enumerate(value):  # in place: the list keeps its style
                    seq[i] = float(b)
            else:
                seq = CommentedSeq([float(b) for b in value])
                seq.fa.set_flow_style()
                block["betas"] = seq
        elif key == "options":
            options = block.get("options")
            if options is None:
                options = CommentedMap()
                options.fa.set_flow_style()
                block["options"] = options
            for k, val in value.items():
                options[k] = float(val)
        else:
            block[key] = value
    variants.yaml_add_eol_comment(comment, variant)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _show(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_show(i) for i in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_show(i)}" for k, i in x.items()) + "}"
    return str(x)


def apply_best(
    params: Params,
    params_path: Path | str,
    variant: str,
    *,
    storage: str | None = None,
    study_name: str | None = None,
) -> str:
    """Write the study's best trial into ``variants.<variant>`` of ``params_path``.

    Sets lr, betas, n_critic and options as tuned (epochs stay); comments and layout of the
    file are kept; the block it replaces goes to ``<tune.out_dir>/<variant>/applied.json`` (the
    published defaults also stay in pipeline/core/variants/<variant>.py). Returns what changed, in
    one line. When the variant trains with these values already (defaults won, or applied
    before), nothing is written: ``applied.json`` keeps the block from before the change.
    """
    import optuna
    import yaml

    v = known(variant)
    params_path = Path(params_path)
    name = study_name or default_study_name(variant)
    url = resolve_storage_url(params, storage)
    # Hints repeat the user's --params/--study/--storage: they must name this very study.
    run_cmd = tune_command(variant, params_path=params_path, storage=storage, study_name=name)
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix) and not Path(url[len(prefix) :]).is_file():
            raise PipelineError(f"no tuning storage at {url[len(prefix) :]}; run `{run_cmd}` first")
    with _quiet_optuna():
        store = open_storage(params, url)
        try:
            study = optuna.load_study(storage=store, study_name=name)
        except KeyError:
            raise PipelineError(
                f"no study {name!r} in {public_url(url)}; run `{run_cmd}` first"
            ) from None
        doc = study_results(study, variant)
    if doc["best_value"] is None:
        raise PipelineError(
            f"study {name!r} has no complete trial yet; nothing to apply (continue it with "
            f"`{run_cmd}`)"
        )
    updates = block_updates(doc["best_params"])
    old_block = params.variants.get(variant)
    previous = old_block.model_dump(mode="json", exclude_unset=True) if old_block else {}
    resolved_before = v.resolve(old_block)
    before = {
        "lr": resolved_before.lr,
        "betas": list(resolved_before.betas),
        "n_critic": resolved_before.n_critic,
        "options": {k: resolved_before.options.get(k) for k in updates.get("options", {})},
    }
    applied_path = results_dir(params, variant) / "applied.json"
    source = f"study {name} trial {doc['best_trial']}, {OBJECTIVE} {doc['best_value']:.3f}"
    if all(before[k] == val for k, val in updates.items()):
        # Nothing to change: rewriting applied.json would replace the block from before tuning
        # with the tuned one (and the params file's comment would point at that lost record).
        values = "; ".join(f"{k} {_show(val)}" for k, val in updates.items())
        kept = f"{params_path} and {applied_path}" if applied_path.is_file() else str(params_path)
        return (
            f"{values} ({source}): these are the values {variant} trains with already; "
            f"nothing written ({kept} kept as they are); nothing for `dvc repro` to retrain"
        )

    text = params_path.read_text()
    default = doc["default_value"]
    comment = (
        f"tuned: {name} trial {doc['best_trial']}, FID {doc['best_value']:.2f}"
        + (f" (defaults {default:.2f})" if default is not None else "")
        + f" at {doc['epochs_per_trial']} epochs; old block in applied.json"
    )
    new_text = _edit_params_text(text, variant, updates, comment)
    # What load_params will read back must be exactly the trial's values.
    new_params = parse_params(
        yaml.safe_load(new_text), params_path.resolve().parent, params_path.name
    )
    hyper = v.resolve(new_params.variants.get(variant))
    check = {"lr": hyper.lr, "betas": list(hyper.betas), "n_critic": hyper.n_critic}
    for key, value in updates.items():
        got = hyper.options if key == "options" else check[key]
        if key == "options":
            got = {k: hyper.options[k] for k in value}
        if got != value:
            raise PipelineError(f"{params_path}: writing variants.{variant}.{key} failed")

    write_json(
        applied_path,
        {
            "variant": variant,
            "study": name,
            "trial": doc["best_trial"],
            "value": doc["best_value"],
            "default_value": default,
            "applied": updates,
            "previous_block": previous,
            "published_defaults": {
                "lr": v.lr,
                "betas": list(v.betas),
                "n_critic": v.n_critic,
                "options": v.default_options(),
            },
            "params_file": str(params_path.resolve()),
            "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    write_text(params_path, new_text)
    load_checked(params_path)  # fail loudly (one line) should the result not validate

    changes = "; ".join(f"{k} {_show(before[k])} -> {_show(val)}" for k, val in updates.items())
    return (
        f"wrote best trial to {params_path}: {changes} ({source}); previous block -> "
        f"{applied_path}; `dvc repro` retrains {variant}"
    )
