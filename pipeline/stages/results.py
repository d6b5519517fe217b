"""The committed results snapshot (`make results`): numbers and digits without training.

``write_snapshot`` reads a finished chain (the copy `scripts/results.sh` ran `pipeline grid` and `dvc repro` in)
and writes ``reports/results/``: ``README.md`` (the score table, one sample grid per model,
the machine, the wall time, the commit and the command), ``results.json`` (the same, for
scripts) and ``grids/<variant>.png``. It is the one generated output the repository keeps, so
it must stay small: over ``MAX_BYTES`` is an error and nothing is written. The folder is
replaced in one step (atomic_dir): a failed run leaves the previous snapshot as it was.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.infra import layout, metrics
from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, first_line
from pipeline.infra.io import atomic_dir
from pipeline.infra.units import duration

MAX_BYTES = 2_000_000  # the whole snapshot, its seeds/ pass included
SUBSNAPSHOT = "seeds"  # the second pass's snapshot (several seeds) inside the first's folder
GRIDS_PER_ROW = 3
# (column title, key in the classifier section, format); lower/higher-is-better in the title.


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the whole chain (dvc repro) first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: not valid JSON ({first_line(err)})") from None


def _columns(docs: list[metrics.MetricsDoc]) -> list[tuple[str, str, metrics.Show]]:
    """(extractor, field, Show) of every score of every extractor that ran, in the metrics
    registry's order: the table follows pipeline/infra/metrics.py, as the report does."""
    ran = [e for e in metrics.EXTRACTORS if any(d.section(e) is not None for d in docs)]
    return [(e, f, show) for e in ran for f, show in metrics.EXTRACTORS[e].scores()]


def _title(extractor: str, show: metrics.Show, several: bool) -> str:
    arrow = {"lower": " ↓", "higher": " ↑"}.get(show.better or "", "")
    return f"{extractor} {show.label}{arrow}" if several else f"{show.label}{arrow}"


def _cell(doc: metrics.MetricsDoc, extractor: str, field: str, show: metrics.Show) -> str:
    v = metrics.value(doc, extractor, field)
    if v is None:
        # not computed for this set (label accuracy without requested labels)
        return "n/a" if doc.section(extractor) is not None else "—"
    if show.fmt == "of10":
        return f"{v:.0f}/10"
    if show.fmt == "percent":
        return f"{v:.1%}"
    text = f"{v * show.scale:.{show.digits}f}"
    std = metrics.value(doc, extractor, show.std) if show.fmt == "pm" and show.std else None
    return text if std is None else f"{text} ± {std * show.scale:.{show.digits}f}"


def _small_png(src: Path, dest: Path) -> None:
    """The sample grid as an 8-bit greyscale PNG (MNIST has one channel; the grid's RGB copies
    of it triple the file), same pixels, at most compressed."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("L").save(dest, format="PNG", optimize=True)


def machine() -> dict[str, Any]:
    """Where the chain ran: CPU model and cores, torch and Python versions, the GPU if any."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def _load_doc(path: Path) -> metrics.MetricsDoc:
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the whole chain (dvc repro) first")
    return metrics.load(path)


def collect(params: Params) -> dict[str, Any]:
    """Everything the snapshot shows, read from the chain's outputs under ``params``."""
    rows = []
    for name in params.variants:
        doc = _load_doc(layout.metrics_path(params, name))
        summary_path = layout.summary_path(params, name)
        summary = _read_json(summary_path) if summary_path.is_file() else {}
        grid = layout.sample_grid(params, name)
        if not grid.is_file():
            raise PipelineError(f"{grid}: not found; run the whole chain (dvc repro) first")
        rows.append({"variant": name, "metrics": doc, "train": summary, "grid": str(grid)})
    floor = _load_doc(layout.metrics_path(params, layout.FLOOR))
    classifier = _read_json(layout.classifier_metrics(params))
    seed = params.train.first_seed
    return {"variants": rows, "floor": floor, "classifier": classifier, "seed": seed}


def _table(data: dict[str, Any]) -> list[str]:
    rows, floor = data["variants"], data["floor"]
    cols = _columns([r["metrics"] for r in rows] + [floor])
    several = len({e for e, _, _ in cols}) > 1
    head = ["model", "epochs", *(_title(e, show, several) for e, _, show in cols)]
    head += ["G updates", "train time", "device"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["train"]
        cells = [r["variant"], str(t.get("epochs", "—"))]
        cells += [_cell(r["metrics"], e, f, show) for e, f, show in cols]
        g = t.get("g_iters")
        cells += [f"{g:,}" if isinstance(g, int) else "—"]
        cells += [(duration(t.get("train_time_s")) or "—"), str(t.get("device", "—"))]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["*real vs real (floor)*", "—", *(_cell(floor, e, f, s) for e, f, s in cols)]
    lines.append("| " + " | ".join([*cells, "—", "—", "—"]) + " |")
    return lines


def render(
    data: dict[str, Any],
    meta: dict[str, Any],
    left_out: list[str] | None = None,
    seeds: list[str] | None = None,
) -> str:
    """The snapshot's README.md: ``left_out`` (Markdown bullets, results_extra.left_out_lines)
    after the table, ``seeds`` (the report's seeds section) after the samples."""
    rows = data["variants"]
    n_gen = {r["metrics"].n_generated for r in rows}
    n_real = {r["metrics"].n_real for r in rows}
    mach = meta["machine"]
    gpu = f", GPU {mach['gpu']}" if mach.get("gpu") else ", no GPU"
    wall = meta["wall_time_s"]
    wall_txt = "not measured" if wall is None else f"{wall / 3600:.2f} h ({wall:.0f} s)"
    if meta.get("attempts", 1) > 1:
        wall_txt += f", over {meta['attempts']} attempts (interrupted and resumed)"
    acc = data["classifier"].get("test_accuracy")
    lines = [
        "# Results snapshot",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} from commit `{meta['commit']}` "
        f"with `{meta['profile']}` merged into params.yaml. Regenerate it with the same "
        "command; it replaces this folder.",
        "",
        f"- machine: {mach['cpu']}, {mach['cpu_cores']} cores{gpu}; {mach['os']}, "
        f"Python {mach['python']}, torch {mach['torch']}",
        f"- wall time of the whole chain (`pipeline grid` + `dvc repro`): {wall_txt}",
        f"- protocol: {', '.join(map(str, sorted(n_gen, key=str)))} generated images per model "
        f"against {', '.join(map(str, sorted(n_real, key=str)))} MNIST test images, "
        + (
            f"one training seed ({data.get('seed', 0)}, the first of train.seeds); "
            if not seeds
            else f"the table shows seed {data.get('seed', 0)}, the first of train.seeds; "
            "every seed's are in the seeds section below; "
        )
        + "FID, KID, IS, precision and recall on the MNIST-classifier's features"
        + (f" (test accuracy {acc:.2%})" if acc is not None else "")
        + (", and on Inception-v3's" if any(r["metrics"].inception for r in rows) else ""),
        "- n/a: not computed for that model (label accuracy needs a conditional model)",
        "",
        *_table(data),
        "",
        *([*left_out, ""] if left_out else []),
        "## Samples (first 100 of each model's samples, the same seed for every model)",
        "",
    ]
    # side by side, a few per row: a table of images (Markdown has no other layout)
    for i in range(0, len(rows), GRIDS_PER_ROW):
        chunk = [r["variant"] for r in rows[i : i + GRIDS_PER_ROW]]
        images = [f"![{v} samples](grids/{v}.png)" for v in chunk]
        lines += ["| " + " | ".join(chunk) + " |", "|" + ":---:|" * len(chunk)]
        lines += ["| " + " | ".join(images) + " |", ""]
    if seeds:
        lines += seeds
    return "\n".join(lines)


def write_snapshot(
    params: Params,
    dest: Path,
    *,
    command: str,
    commit: str,
    profile: str,
    wall_time_s: float | None,
    attempts: int = 1,
    left_out: Path | None = None,
) -> Path:
    """Write the snapshot of the chain under ``params`` to ``dest`` (replaced atomically; a
    snapshot in its ``seeds/`` subfolder, the second pass of `make results`, is kept).
    ``left_out``: the step rates of the models the profile left out (results_extra)."""
    from pipeline.stages import results_extra

    data = collect(params)
    rates = results_extra.read_left_out(left_out)
    left = results_extra.left_out_lines(rates)
    seeds, seed_assets = (
        results_extra.seeds_markdown(params) if len(params.train.seeds) > 1 else ([], {})
    )
    meta = {
        "command": command,
        "commit": commit,
        "profile": profile,
        "date": time.strftime("%Y-%m-%d"),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 1),
        "attempts": attempts,
        "machine": machine(),
    }
    sizes = sum(Path(r["grid"]).stat().st_size for r in data["variants"])
    if sizes > MAX_BYTES * 0.9:
        raise PipelineError(
            f"the sample grids take {sizes / 1e6:.1f} MB; the snapshot must stay under "
            f"{MAX_BYTES / 1e6:.0f} MB"
        )
    doc = {
        **meta,
        "classifier": data["classifier"],
        "floor": data["floor"].to_json(),
        "variants": [
            {"variant": r["variant"], "metrics": r["metrics"].to_json(), "train": r["train"]}
            for r in data["variants"]
        ],
        "left_out": rates,
    }
    if seeds:  # every seed's scores, for scripts (the table shows the first seed's)
        doc["per_seed"] = {
            r["variant"]: {
                str(seed): _load_doc(layout.metrics_path(params, r["variant"], seed)).to_json()
                for seed in params.train.seeds
            }
            for r in data["variants"]
        }
    with atomic_dir(dest) as tmp:
        (tmp / "grids").mkdir()
        for r in data["variants"]:
            _small_png(Path(r["grid"]), tmp / "grids" / f"{r['variant']}.png")
        for rel, blob in seed_assets.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(blob)
        (tmp / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        (tmp / "README.md").write_text(render(data, meta, left, seeds) + "\n")
        kept = dest / SUBSNAPSHOT
        if (kept / "results.json").is_file():
            shutil.copytree(kept, tmp / SUBSNAPSHOT)
        total = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        if total > MAX_BYTES:
            raise PipelineError(
                f"the snapshot is {total / 1e6:.2f} MB, over {MAX_BYTES / 1e6:.0f} MB"
            )
    return dest
