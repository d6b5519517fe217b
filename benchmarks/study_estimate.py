"""The default study's wall time, extrapolated from the GPU check's timing probe (issue 27).

    python benchmarks/study_estimate.py STAGES.tsv PROBE_PARAMS [--bench JSON] [--eval JSON]
        [--study params.yaml] [--out estimate.json]

STAGES.tsv (scripts/gpu_check.sh): one row per stage the probe ran, ``stage variant seconds
exit``. The probe trains each of its models for a few epochs; a run's summary.json gives its
training seconds per epoch, the stage's wall time minus that its start-up overhead. The study
(params.yaml: every model x train.seeds at its published epochs) is then, one chain at a time:

    fixed stages + sum over models and seeds of
        (train overhead + epochs x s/epoch + sample + evaluate [+ Inception])

s/epoch: the probe's for a probed model, else the benchmark's steps/s (CUDA graphs when the
study uses them, else fast), else the probed models' median (named as guessed). Overheads,
sample and evaluate: the model's own where probed, else the probed median. Inception (not in
the probe: no weights there) is added from the evaluation throughput when that is given.
Prints Markdown lines for summary.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXED = ("prepare", "classifier", "floor", "report")


def read_stages(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{**r, "seconds": float(r["seconds"]), "exit": int(r["exit"])} for r in rows]


def _epochs(study: Any, name: str) -> int:
    from pipeline.core.variants.base import registry

    block = study.variants.get(name)
    return (block.epochs if block is not None and block.epochs else None) or registry.get(
        name
    ).epochs


def estimate(
    stages: list[dict[str, Any]],
    probe: Any,
    study: Any,
    bench: dict[str, Any] | None = None,
    evals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from pipeline.infra import layout

    ok = [r for r in stages if r["exit"] == 0 and r.get("part", "probe") == "probe"]
    own: dict[tuple[str, str], float] = {(r["stage"], r["variant"]): r["seconds"] for r in ok}
    epoch_s: dict[str, float] = {}
    overhead: dict[str, float] = {}
    for (stage, v), wall in own.items():
        summary = layout.summary_path(probe, v) if stage == "train" else None
        if summary is not None and summary.is_file():
            doc = json.loads(summary.read_text())
            if doc.get("epochs"):
                epoch_s[v] = doc["train_time_s"] / doc["epochs"]
                overhead[v] = max(wall - doc["train_time_s"], 0.0)

    def med(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    per_stage = {
        s: med([w for (st, _), w in own.items() if st == s]) for s in ("sample", "evaluate")
    }
    rates = {r["variant"]: r for r in (bench or {}).get("training", [])}
    graphs = bool(study.train.cuda_graphs)
    steps_per_epoch = 60_000 // study.train.batch_size
    inception = (evals or {}).get("inception_tf32" if study.evaluate.tf32 else "inception_fp32")
    with_inception = "inception" in study.evaluate.extractors and inception is not None
    seeds = len(study.train.seeds)
    rows, source = [], {"probe": [], "benchmark": [], "guessed": []}
    for name in study.variants:
        rate = rates.get(name, {})
        r = (rate.get("graphs_steps_per_s") if graphs else None) or rate.get("fast_steps_per_s")
        if name in epoch_s:
            s_epoch, src = epoch_s[name], "probe"
        elif r:
            s_epoch, src = steps_per_epoch / r, "benchmark"
        else:
            s_epoch, src = med(list(epoch_s.values())), "guessed"
        source[src].append(name)
        if s_epoch is None:
            return {"error": "no training rate measured (no probe run finished, no benchmark row)"}
        epochs = _epochs(study, name)
        train = overhead.get(name, med(list(overhead.values())) or 0.0) + epochs * s_epoch
        sample = own.get(("sample", name), per_stage["sample"] or 0.0)
        evaluate = own.get(("evaluate", name), per_stage["evaluate"] or 0.0)
        if with_inception:
            evaluate += inception["s_per_10k"] * study.sample.n / 10_000
        rows.append({"variant": name, "epochs": epochs, "s_per_epoch": round(s_epoch, 3),
                     "source": src, "train_s": round(train, 1), "sample_s": round(sample, 1),
                     "evaluate_s": round(evaluate, 1)})  # fmt: skip
    fixed = {s: own.get((s, "-")) for s in FIXED}
    if fixed["classifier"] is not None and probe.classifier.epochs:
        fixed["classifier"] *= study.classifier.epochs / probe.classifier.epochs
    fixed_s = sum(v for v in fixed.values() if v is not None)
    total = {k: seeds * sum(r[f"{k}_s"] for r in rows) for k in ("train", "sample", "evaluate")}
    return {
        "models": len(rows), "seeds": seeds, "hours": round((sum(total.values()) + fixed_s) / 3600, 2),
        "train_h": round(total["train"] / 3600, 2), "sample_h": round(total["sample"] / 3600, 2),
        "evaluate_h": round(total["evaluate"] / 3600, 2), "fixed_s": round(fixed_s, 1),
        "fixed_missing": [s for s, v in fixed.items() if v is None], "inception": with_inception,
        "overhead_train_s": med(list(overhead.values())), "per_stage": per_stage,
        "source": source, "rows": rows,
    }  # fmt: skip


def lines(est: dict[str, Any]) -> list[str]:
    if "error" in est:
        return [f"- default study: not estimated ({est['error']})"]
    src = est["source"]
    out = [
        f"- default study ({est['models']} models × {est['seeds']} seeds at their published "
        f"epochs), one chain at a time on this GPU: ≈ {est['hours']} h (training "
        f"{est['train_h']} h, sampling {est['sample_h']} h, evaluation {est['evaluate_h']} h"
        f"{' with Inception' if est['inception'] else ', classifier metrics only'}, fixed "
        f"stages {est['fixed_s']} s)",
        f"  - training rates from the probe: {', '.join(src['probe']) or 'none'}; from the "
        f"benchmark: {', '.join(src['benchmark']) or 'none'}; guessed (probed median): "
        f"{', '.join(src['guessed']) or 'none'}",
        f"  - per-stage overheads (probe medians): train start-up "
        f"{_s(est['overhead_train_s'])}, sample {_s(est['per_stage']['sample'])}, evaluate "
        f"{_s(est['per_stage']['evaluate'])}",
    ]
    if est["fixed_missing"]:
        out.append(f"  - fixed stages not measured: {', '.join(est['fixed_missing'])}")
    return out


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", type=Path)
    ap.add_argument("probe_params", type=Path)
    ap.add_argument("--bench", type=Path)
    ap.add_argument("--eval", type=Path)
    ap.add_argument("--study", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from pipeline.infra.params import load_params

    def doc(path: Path | None) -> dict[str, Any] | None:
        return json.loads(path.read_text()) if path and path.is_file() else None

    est = estimate(read_stages(args.stages), load_params(args.probe_params),
                   load_params(args.study), doc(args.bench), doc(args.eval))  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(est, indent=2) + "\n")
    print("\n".join(lines(est)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
