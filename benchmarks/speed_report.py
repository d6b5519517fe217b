"""The training-speed benchmark's report: ``train_speed_<device>.json`` and ``.md``, rewritten
after every variant so that a run stopped by a time limit still leaves its figures."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

STEPS_PER_EPOCH = 60_000 // 64
LABELS = {
    "eager": "eager (train.fast off)",
    "fast": "fast",
    "plain_slopes": "fast, plain LeakyReLU",
    "graphs": "fast + CUDA graphs",
}


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _cell(x: float | None, unit: str = "") -> str:
    return "—" if x is None else f"{x}{unit}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _mode_cell(row: dict[str, Any], mode: str) -> str:
    if mode == "graphs" and "graphs_error" in row:
        return f"failed: {row['graphs_error']}"
    f = row.get(f"{mode}_steps_per_s")
    if f is None:
        return "—"
    ratio = row.get(f"{mode}_ratio")
    return f"{f}" + ("" if ratio is None else f" ({ratio}x)")


def render(doc: dict[str, Any]) -> str:
    modes = doc["modes"]
    lines = [
        f"# Training speed on {doc['device']}", "",
        f"torch {doc['torch']}; batch 64; median of {doc['repeats']} repeats of {doc['steps']} "
        f"trainer steps ({doc.get('classic_steps', doc['steps'])} classic-loop steps); "
        f"command: `{doc['command']}`", "",
        "Steps/s (ratio to the classic loop). A step is one batch (a critic step for GANs); "
        "the classic loop builds its optimisers with the library's defaults (foreach on CUDA). "
        "'—': not measured (eager and plain LeakyReLU on representative models only; plain "
        "LeakyReLU only matters under a gradient penalty). `s/epoch` is the fast path's, at 60k images.", "",
        "| variant | classic loop | " + " | ".join(LABELS[m] for m in modes)
        + " | fast G iterations/s | s/epoch |",
        "|---|" + "---:|" * (len(modes) + 3),
    ]  # fmt: skip
    for r in doc["training"]:
        fast = r.get("fast_steps_per_s")
        lines.append(
            f"| {r['variant']} | {_cell(r.get('reference_steps_per_s'))} | "
            + " | ".join(_mode_cell(r, m) for m in modes)
            + f" | {_cell(r.get('fast_g_iters_per_s'))} | "
            + f"{_cell(fast and round(STEPS_PER_EPOCH / fast, 2))} |"
        )
    lines += [
        "",
        f"## The trainer at ≥ {TARGET_RATIO:g}× the classic loop",
        "",
        *verdict_lines(doc),
    ]
    if doc.get("numerics"):
        lines += ["", f"Numerics: {doc['numerics']}."]
    if doc.get("evaluation"):
        lines += ["", "## Evaluation", ""]
        lines += [f"- {k}: {v:.2f}" for k, v in doc["evaluation"].items()]
    return "\n".join(lines) + "\n"


def write_report(doc: dict[str, Any], out: Path, tag: str) -> str:
    """Write ``train_speed_<tag>.json`` and ``.md`` under ``out``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_speed_{tag}.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = render(doc)
    (out / f"train_speed_{tag}.md").write_text(text)
    return text


TARGET_RATIO = 25.0
NUMERICS = (
    "trainer: train.tf32 off (float32 matmuls and convolutions, pipeline.infra.devices.numerics); "
    "classic loop: torch's defaults (cuDNN convolutions may use TF32 on Ampere and later, "
    "matmuls float32): a bias in the classic loop's favour for conv models"
)


def verdict_of(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its best trainer mode (graphs or fast) and whether it reaches the target
    ratio over the classic loop (None: no classic loop or no trainer figure)."""
    best = max(
        ((m, row[f"{m}_ratio"]) for m in ("graphs", "fast") if row.get(f"{m}_ratio") is not None),
        key=lambda mr: mr[1],
        default=None,
    )
    row = dict(row)
    row["best_mode"], row["best_ratio"] = best if best else (None, None)
    row["meets_target"] = None if best is None else best[1] >= TARGET_RATIO
    return row


def verdict_lines(doc: dict[str, Any]) -> list[str]:
    """One "≥ 25×: yes/no" line per model, then the models or modes not reached."""
    lines = []
    for r in doc["training"]:
        if r.get("meets_target") is None:
            why = (
                "no classic loop" if r.get("reference_steps_per_s") is None else "no trainer figure"
            )
            lines.append(f"- {r['variant']}: ≥ {TARGET_RATIO:g}×: n/a ({why})")
        else:
            lines.append(f"- {r['variant']}: ≥ {TARGET_RATIO:g}×: "
                         f"{'yes' if r['meets_target'] else 'no'} ({LABELS[r['best_mode']]}, "
                         f"{r['best_ratio']}× the classic loop)")  # fmt: skip
        lines += [f"  - {e}" for e in r.get("errors", [])]
    lines += [f"- not reached: {x}" for x in doc.get("not_reached", [])]
    return lines
