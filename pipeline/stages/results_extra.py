"""The results snapshot's two additions to its score table (pipeline/stages/results.py):

- models the profile left out (``variants: {ddpm: null}`` in profiles/lucic.yaml): a row each,
  saying why with the step rate measured on the machine (``benchmarks/step_rate.py`` writes
  the file ``pipeline results --left-out`` reads) and the hours the budget would take;
- a chain of several seeds: the report's own seeds section (intervals of the mean, paired
  tests by seed, ranks), rendered as Markdown with its plot, so the snapshot shows the
  statistics on real data in the words the report uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.infra.config import Params
from pipeline.infra.errors import PipelineError, first_line


def read_left_out(path: Path | None) -> dict[str, dict[str, Any]]:
    """``{variant: {"steps_per_s", "epochs", "steps_per_epoch", "steps", "device"}}`` from
    ``path`` (None: no model left out)."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (benchmarks/step_rate.py writes it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: not valid JSON ({first_line(err)})") from None
    need = ("steps_per_s", "epochs", "steps_per_epoch")
    if not isinstance(doc, dict):
        raise PipelineError(f"{path}: not a mapping of variants")
    bad = [k for k, v in doc.items() if not isinstance(v, dict) or any(n not in v for n in need)]
    if bad:
        raise PipelineError(f"{path}: {', '.join(bad)}: each needs {', '.join(need)}")
    return doc


def left_out_lines(left_out: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown bullet per left-out model: its measured rate and what its budget
    (``epochs`` of ``steps_per_epoch`` steps, as measured for) would take at that rate."""
    lines = []
    for name, m in sorted(left_out.items()):
        rate, epochs, per_epoch = float(m["steps_per_s"]), m["epochs"], m["steps_per_epoch"]
        steps = epochs * per_epoch
        hours = steps / rate / 3600 if rate > 0 else float("inf")
        lines.append(
            f"- **{name}**: not trained here. Measured {rate:.3g} steps/s on this machine "
            f"({m.get('device', 'cpu')}{_threads(m)}, {m.get('steps', '?')} timed steps after a warm-up "
            f"epoch, its published configuration): {epochs} epochs × {per_epoch} steps = "
            f"{steps:,} steps ≈ {hours:,.0f} h. A GPU job; no number from a smaller model "
            "stands in for it."
        )
    return lines


def _threads(m: dict[str, Any]) -> str:
    n = m.get("threads")
    return f", {n} thread{'s' if n != 1 else ''}" if n else ""


def seeds_markdown(params: Params) -> tuple[list[str], dict[str, bytes]]:
    """The report's seeds section for the chain under ``params`` as Markdown lines (heading
    level 2) and its images ``{relative path: bytes}``."""
    from pipeline.stages.report.inputs import read_inputs
    from pipeline.stages.report.page import Page
    from pipeline.stages.report.render import render_markdown
    from pipeline.stages.report.seeds import seeds_section
    from pipeline.stages.report.view import shown_extractors

    inputs = read_inputs(params)
    section, assets = seeds_section(inputs, shown_extractors(inputs))
    text = render_markdown(Page(title="", intro=[], sections=[section], footer=""))
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## "))
    return lines[start:], {a.rel: a.data for a in assets}
