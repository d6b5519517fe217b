"""``pipeline grid``: the out-of-date (variant, seed) chains at once on Dask, each finished
chain recorded in dvc.lock by the client, one at a time.

A chain that fails (an exception, a worker that died) is reported with a one-line reason
and not committed; the others go on. A rerun asks DVC again, so it runs exactly what was not
recorded: training resumes from its checkpoint, MLflow continues the same run (run_id.txt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live

from pipeline.infra.config import Params
from pipeline.infra.errors import describe
from pipeline.infra.faults import kill_point
from pipeline.stages.grid import plan as dvcplan
from pipeline.stages.grid.view import ChainRow, table
from pipeline.training.params import load_checked


@dataclass
class GridResult:
    rows: list[ChainRow] = field(default_factory=list)
    wall_s: float = 0.0
    engine: str = ""
    upstream_ran: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ChainRow]:
        return [r for r in self.rows if r.state != "done"]


def _prepare_tracking(p: Params, variants: set[str]) -> None:
    """Create the MLflow store, the experiment and each variant's parent run here, once,
    before any worker opens them: two workers creating a fresh SQLite store at once break it
    (see DESIGN's known traps), and two seeds of a variant starting together would each
    create the variant's parent run."""
    from pipeline.infra import tracking

    exp_id = tracking.setup(p)
    c = tracking.client(p)
    for v in sorted(variants):
        tracking.variant_parent(c, exp_id, v)


def _epochs(p: Params, variant: str) -> int:
    """The variant's training epochs: its params block over its published default."""
    from pipeline.core.variants.base import registry

    return registry.get(variant).resolve(p.variants[variant]).epochs


def _finish(row: ChainRow, fut, root: Path, fp: dvcplan.Fingerprint, chain) -> None:
    """Record a finished future: commit its chain, or say why not."""
    try:
        out = fut.result()
    except Exception as err:  # the chain's own error, or KilledWorker: one line, no traceback
        row.state, row.reason = "failed", describe(err)
        return
    row.seconds, row.wall_s = out["seconds"], out["wall_s"]
    kill_point("grid-commit")  # tests: a chain finished, not yet recorded
    changed = fp.changed()
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        row.state = "failed"
        row.reason = (
            f"not committed: {changed[0]}{more} changed while the grid ran; rerun `pipeline grid`"
        )
        return
    try:
        dvcplan.commit(root, chain)
    except Exception as err:
        row.state, row.reason = "failed", f"dvc commit failed: {describe(err)}"
        return
    row.state, row.stage = "done", ""


def run_grid(
    params_file: Path, scheduler: str | None = None, console: Console | None = None
) -> GridResult:
    """Run every chain DVC reports out of date; returns each chain's outcome and times."""
    from distributed import wait

    from pipeline.infra.layout import curves_path
    from pipeline.stages.grid.chain import TOPIC, run_chain
    from pipeline.stages.grid.cluster import start

    console = console or Console()
    t0 = time.time()
    params_file = params_file.resolve()
    p = load_checked(params_file)
    root = p.root.resolve()
    result = GridResult()
    work = dvcplan.plan(root, list(p.variants), list(p.train.seeds))
    if work.stale_upstream:
        console.print(f"grid: dvc repro {' '.join(work.stale_upstream)} (the chains read them)")
        dvcplan.repro_upstream(root, work.stale_upstream)
        result.upstream_ran = work.stale_upstream
    if not work.chains:
        console.print("grid: every (variant, seed) chain is up to date")
        result.wall_s = time.time() - t0
        return result
    _prepare_tracking(p, {c.variant for c in work.chains})
    fingerprint = dvcplan.Fingerprint(params_file, work.deps)
    rows = {
        c.name: ChainRow(c.name, c.stages, _epochs(p, c.variant), curves_path(p, c.variant, c.seed))
        for c in work.chains
    }
    result.rows = list(rows.values())
    engine = start(p, scheduler, chains=len(work.chains))
    result.engine = engine.description
    console.print(f"grid: {len(rows)} chains on {engine.description}", soft_wrap=True)
    title = f"pipeline grid: {len(rows)} chains on {engine.description}"
    if engine.dashboard:
        title += f" - dashboard {engine.dashboard}"

    def on_event(event: tuple[float, dict]) -> None:
        msg = event[1]
        row = rows.get(msg.get("chain", ""))
        if row is not None and row.state in ("queued", "running"):
            row.on_stage(msg["stage"], msg["time"])

    try:
        engine.client.subscribe_topic(TOPIC, on_event)
        futures = {
            engine.client.submit(
                run_chain, str(params_file), c.variant, c.seed, c.stages,
                engine.threads, engine.device, key=f"chain-{c.name}-{t0:.0f}", pure=False,
            ): c
            for c in work.chains
        }  # fmt: skip
        pending = set(futures)
        with Live(table(result.rows, title, t0), console=console, refresh_per_second=2) as live:
            while pending:
                try:
                    done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:  # none finished in this half second: refresh the view
                    done = set()
                for fut in done:
                    chain = futures[fut]
                    row = rows[chain.name]
                    _finish(row, fut, root, fingerprint, chain)
                    line = f"{row.name}: {row.state}" + (f" ({row.reason})" if row.reason else "")
                    live.console.print(line)
                live.update(table(result.rows, title, t0))
        console.line()  # off a terminal the last frame ends without one
    finally:
        engine.close()
    result.wall_s = time.time() - t0
    return result
