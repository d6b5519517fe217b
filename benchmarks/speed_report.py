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
        f"steps; command: `{doc['command']}`", "",
        "Steps/s (ratio to the classic loop). A step is one batch (a critic step for GANs); "
        "the classic loop builds its optimisers with the library's defaults (foreach on CUDA). "
        "'—': not measured (no classic loop for that family; plain LeakyReLU only matters "
        "under a gradient penalty). `s/epoch` is the fast path's, at 60k images.", "",
        "| variant | classic loop | " + " | ".join(LABELS[m] for m in modes)
        + " | fast G iterations/s | s/epoch |",
        "|---|" + "---:|" * (len(modes) + 3),
    ]  # fmt: skip
    for r in doc["training"]:
        fast = r.get("fast_steps_per_s")
        lines.append(
            f"| {r['variant']} | {_cell(r['reference_steps_per_s'])} | "
            + " | ".join(_mode_cell(r, m) for m in modes)
            + f" | {_cell(r.get('fast_g_iters_per_s'))} | "
            + f"{_cell(fast and round(STEPS_PER_EPOCH / fast, 2))} |"
        )
    if doc["evaluation"]:
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
