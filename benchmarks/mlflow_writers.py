"""N processes writing to one embedded SQLite MLflow store at once, as the grid's chains do
(reports/benchmarks/grid_cpu.md): each creates a run, logs its params, then EPOCHS batches of
metrics and a small artifact per epoch, and finishes it. Far denser than real chains (no
training between writes). Prints the writes that failed (e.g. "database is locked") and the
wall time. Usage: python benchmarks/mlflow_writers.py [N] [EPOCHS] [DEST]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path


def _writer(uri: str, exp_id: str, k: int, epochs: int, folder: str, out: mp.Queue) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    c = MlflowClient(uri)
    errors: list[str] = []
    art = Path(folder) / f"grid{k}.txt"
    art.write_text("x" * 4096)

    def attempt(fn, *args, **kw) -> None:
        try:
            fn(*args, **kw)
        except Exception as err:  # counted, not retried: what a writer would see
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:120]}")

    run = c.create_run(exp_id, run_name=f"w{k}")
    rid = run.info.run_id
    attempt(c.log_batch, rid, params=[Param(f"p{i}", str(i)) for i in range(60)])
    for e in range(1, epochs + 1):
        now = int(time.time() * 1000)
        attempt(c.log_batch, rid, metrics=[Metric(f"m{i}", float(e), now, e) for i in range(10)])
        attempt(c.log_artifact, rid, str(art), "grids")
    attempt(c.set_terminated, rid, "FINISHED")
    out.put((k, rid, errors))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    dest = Path(sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="mlflow-writers-"))
    dest.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    uri = f"sqlite:///{dest / 'mlflow.db'}"
    c = MlflowClient(uri)  # the store and experiment first, in one process (as the grid does)
    exp_id = c.create_experiment("writers", artifact_location=(dest / "art").as_uri())
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    t0 = time.perf_counter()
    procs = [
        ctx.Process(target=_writer, args=(uri, exp_id, k, epochs, str(dest), q)) for k in range(n)
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    errors = [e for _, _, errs in results for e in errs]
    runs = c.search_runs([exp_id])
    finished = sum(r.info.status == "FINISHED" for r in runs)
    complete = sum(
        len(c.get_metric_history(r.info.run_id, "m0")) == epochs and len(r.data.params) == 60
        for r in runs
    )
    print(
        f"{n} writers x {epochs} epochs (10 metrics + 1 artifact each): {wall:.1f} s; "
        f"{len(errors)} failed writes; runs FINISHED {finished}/{n}, complete {complete}/{n}"
    )
    for e in sorted(set(errors))[:5]:
        print("  ", e)


if __name__ == "__main__":
    main()
