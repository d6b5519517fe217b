"""Evaluation noise: the best run re-scored on fresh latent draws (the ``noise`` stage).

The spread over seeds mixes two sources: training (another seed, another generator) and the
metric itself (another set of ``sample.n`` latents, another score). This stage measures the
second alone: the best run among every (variant, seed) in params (lowest FID of the first
configured extractor, classifier before Inception) is sampled ``evaluate.noise_draws`` more
times, each draw with its own latents (:func:`pipeline.training.sampling.latent_seed` with draw 1..K),
and each draw is scored like the stage's samples. Output: ``layout.noise_path`` (JSON):
the run, how it was picked, its scored sample's document and one document per draw.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.infra import checkpoint as ckpt
from pipeline.infra import layout
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError
from pipeline.infra.io import write_json
from pipeline.infra.metrics import MetricsDoc, load, value


def best_run(params: Params) -> tuple[str, int, MetricsDoc, str] | None:
    """(variant, seed, its metrics, the field it was picked by) of the lowest FID among the
    runs of params that have a metrics file; None when none has one."""
    extractor = next(e for e in ("classifier", "inception") if e in params.evaluate.extractors)
    best: tuple[float, str, int, MetricsDoc] | None = None
    for name in params.variants:
        for seed in params.train.seeds:
            path = layout.metrics_path(params, name, seed)
            if not path.is_file():
                continue
            doc = load(path)
            fid = value(doc, extractor, "fid")
            if fid is not None and math.isfinite(fid) and (best is None or fid < best[0]):
                best = (fid, name, seed, doc)
    if best is None:
        return None
    return best[1], best[2], best[3], f"{extractor}.fid"


def measure_noise(params: Params, device: str | None = None) -> Path:
    """Re-sample and re-score the best run ``evaluate.noise_draws`` times -> noise.json."""
    from pipeline.infra.devices import numerics, precision_tag, resolve_device
    from pipeline.stages.evaluate.scoring import score
    from pipeline.training.restore import load_nets
    from pipeline.training.sampling import generate, latent_seed

    k = params.evaluate.noise_draws
    out: dict[str, Any] = {"draws": [], "n_draws": k}
    found = best_run(params) if k else None
    if k and found is None:
        raise PipelineError(
            f"no metrics under {layout.metrics_dir(params)}; run the evaluate stages first"
        )
    if found is not None:
        name, seed, doc, picked_by = found
        path = layout.variant_dir(params, name, seed) / ckpt.CHECKPOINT
        dev = resolve_device(device or params.sample.device)
        variant, nets, cfg = load_nets(path, dev)
        out.update(variant=name, seed=seed, picked_by=picked_by, scored=doc.to_json())
        # One TF32 rule: generators at train.tf32 (as sample), features at evaluate.tf32.
        out["precision"] = {"sample": precision_tag(dev, params.train.tf32)}
        for draw in range(1, k + 1):
            z_seed = latent_seed(params.sample.seed, seed, draw)
            with numerics(params.train.tf32):
                images, labels = generate(
                    variant, nets, params.sample.n, cfg["z_dim"], z_seed,
                    params.sample.batch_size, dev,
                )  # fmt: skip
            d = score(params, name, images, labels, device)
            out["draws"].append({"draw": draw, "latent_seed": z_seed, **d.to_json()})
    target = layout.noise_path(params)
    write_json(target, out)
    return target
