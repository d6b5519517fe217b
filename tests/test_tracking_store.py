"""The SQLite tracking store is created once, atomically (issue 28): a kill while it is
created, or several processes opening a fresh store at once, never leave one that fails every
later open with ``table ... already exists``. Real MLflow on SQLite in tmp_path."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from pipeline.infra.params import load_params
from pipeline.infra.tracking import resolve_uri
from tests.conftest import REPO, TINY, deep_update, write_params
from tests.test_crash import killed, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def params_path(tmp_path: Path, prepared_dir: Path) -> Path:
    over = deep_update(TINY, {"data": {"dir": str(prepared_dir)}, "train": {"subset": 256}})
    return write_params(tmp_path, over)


def _python(code: str, **env: str) -> subprocess.Popen[str]:
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env,
    )  # fmt: skip


def _train_statuses(params_path: Path) -> list[str]:
    params = load_params(params_path)
    c = mlflow.MlflowClient(resolve_uri(params))
    exp = c.get_experiment_by_name(params.tracking.experiment)
    runs = c.search_runs([exp.experiment_id], "tags.stage = 'train'")
    return [r.info.status for r in runs]


def test_a_kill_before_the_built_store_is_renamed_leaves_none_and_the_rerun_trains(
    params_path: Path, tmp_path: Path
) -> None:
    first = run_cli(params_path, "train", "gan", "--epochs", "1", kill_at="store-built")
    assert killed(first), first.stderr
    assert not (tmp_path / "mlflow.db").exists()  # never a half store at the store's path
    assert list(tmp_path.glob(".mlflow.db.*.tmp"))  # what the kill left: the builder's temp

    rerun = run_cli(params_path, "train", "gan", "--epochs", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert "already exists" not in rerun.stderr
    assert not list(tmp_path.glob(".mlflow.db.*.tmp*"))  # the next builder removed it
    assert _train_statuses(params_path) == ["FINISHED"]


# MLflow's own creation of a store (what every process did before), SIGKILLed right after one
# migration created its table and before Alembic recorded that migration: what a kill 10 s
# into a fresh `pipeline train` left (issue 28).
KILLED_IN_MLFLOW = """
    import os, signal, sys
    import mlflow, sqlalchemy
    from sqlalchemy import event

    @event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
    def _kill(conn, cursor, statement, *args):
        if statement.strip().upper().startswith("CREATE TABLE GUARDRAILS"):
            os.kill(os.getpid(), signal.SIGKILL)

    mlflow.MlflowClient(sys.argv[1]).search_experiments()
"""

OPEN_WITH_MLFLOW = """
    import sys, mlflow
    mlflow.MlflowClient(sys.argv[1]).search_experiments()
"""


def test_a_store_killed_inside_mlflows_own_migration_is_rebuilt_with_one_line(
    params_path: Path, tmp_path: Path
) -> None:
    uri = resolve_uri(load_params(params_path))
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_IN_MLFLOW), uri],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed(child), child.stderr  # type: ignore[arg-type]
    # The brick, as the issue saw it: plain MLflow cannot open it any more.
    plain = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OPEN_WITH_MLFLOW), uri],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plain.returncode != 0 and "already exists" in plain.stderr, plain.stderr[-2000:]

    rerun = run_cli(params_path, "train", "gan", "--epochs", "1")
    assert rerun.returncode == 0, rerun.stderr
    said = [line for line in rerun.stderr.splitlines() if "half-created MLflow store" in line]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'mlflow.db'}: ")
    assert said[0].endswith("no runs; a process was killed while creating it): rebuilding it")
    assert _train_statuses(params_path) == ["FINISHED"]


def test_a_store_with_runs_is_never_rebuilt_and_the_error_says_how_to_repair_it(
    params_path: Path, tmp_path: Path
) -> None:
    assert run_cli(params_path, "train", "gan", "--epochs", "1").returncode == 0
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)  # as if an upgrade of this store had been interrupted
    con.execute("UPDATE alembic_version SET version_num = 'ae8bbe7743c9'")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    out = run_cli(params_path, "train", "gan", "--seed", "0", "--epochs", "2")
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"{db}: MLflow store at schema revision ae8bbe7743c9, not " in lines[0]
    assert "holding 2 runs: not touched" in lines[0]  # the variant's parent run and its seed's
    assert f"`mlflow db upgrade sqlite:///{db}`" in lines[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# One process of the grid: import, wait for the others, then open the store and log a run.
OPEN_AT_ONCE = """
    import sys, time
    from pathlib import Path
    from mlflow import MlflowClient
    from pipeline.infra.params import load_params
    from pipeline.infra.tracking import resolve_uri, setup

    params, ready, go = load_params(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    exp = setup(params)
    c = MlflowClient(resolve_uri(params))
    run = c.create_run(exp)
    c.log_metric(run.info.run_id, "x", 1.0)
    c.set_terminated(run.info.run_id)
"""


def test_four_processes_opening_a_fresh_store_at_once_all_succeed(
    params_path: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = []
    for i in range(4):
        ready = tmp_path / f"ready{i}"
        code = textwrap.dedent(OPEN_AT_ONCE)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, str(params_path), str(ready), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        )
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    go.touch()  # all four open the fresh store now
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "already exists" not in err
    params = load_params(params_path)
    c = mlflow.MlflowClient(resolve_uri(params))
    exp = c.get_experiment_by_name(params.tracking.experiment)
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_store_of_a_newer_mlflow_is_never_rebuilt(tmp_path: Path) -> None:
    """Not at this MLflow's head but at a revision it does not know, even with no runs: a
    newer MLflow's store, not a half-created one."""
    from pipeline.infra.tracking_store import StoreError, ensure_sqlite_store

    artifacts = (tmp_path / "mlartifacts").as_uri()
    ensure_sqlite_store(tmp_path / "a.db", artifacts)  # built here: complete, no runs
    (tmp_path / "b.db").write_bytes((tmp_path / "a.db").read_bytes())
    con = sqlite3.connect(tmp_path / "b.db")
    con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    con.commit()
    con.close()
    before = (tmp_path / "b.db").read_bytes()
    with pytest.raises(StoreError, match="which this MLflow does not know .* not touched"):
        ensure_sqlite_store(tmp_path / "b.db", artifacts)
    assert (tmp_path / "b.db").read_bytes() == before


# A trainer checks the store before its output folder changes and opens its MLflow run while
# the first epoch trains: the check must not import mlflow (about 1.5 s of a CPU start-up).
CHECK_ONLY = """
    import sys
    from pipeline.infra.params import load_params
    from pipeline.infra.tracking import check_store
    from pipeline.infra.tracking_store import _head_from_files

    print(check_store(load_params(sys.argv[1])), _head_from_files(), "mlflow" in sys.modules)
"""


def test_checking_a_complete_store_imports_no_mlflow_and_reads_mlflows_own_head(
    params_path: Path,
) -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    from pipeline.infra.tracking import ensure_store

    params = load_params(params_path)
    uri = ensure_store(params)  # built by MLflow itself
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK_ONLY), str(params_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [uri, _get_latest_schema_revision(), "False"]


def test_a_run_that_cannot_be_opened_fails_the_training_with_that_error(
    params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the run happens in a thread beside the first epoch; its error must reach the
    trainer (not end as a logging warning) and leave no run marked."""
    from pipeline.infra.errors import PipelineError
    from pipeline.infra.recorder import TrainRecorder
    from pipeline.stages.train import train_variant

    def refuse(self: TrainRecorder, spec: object, out_dir: Path) -> None:
        raise PipelineError("the store went away")

    monkeypatch.setattr(TrainRecorder, "_open", refuse)
    with pytest.raises(PipelineError, match="the store went away"):
        train_variant(load_params(params_path), "gan", epochs=1, progress=False)
    assert not (params_path.parent / "models" / "gan" / "seed0" / "checkpoint.pt").exists()


def test_the_head_reader_knows_both_alembic_templates_and_refuses_what_it_cannot_read(
    tmp_path: Path,
) -> None:
    """head_of reads `revision = "a"` and `revision: str = "a"` (Alembic's newer template),
    merges included; a script it cannot read, or two heads, give None (Alembic decides)."""
    from pipeline.infra.tracking_store import head_of

    def script(name: str, text: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))

    (tmp_path / "__init__.py").write_text("")
    script("a", 'revision = "aaa"\ndown_revision = None\n')
    script("b", 'revision: str = "bbb"\ndown_revision: Union[str, None] = "aaa"\n')
    script("c", 'revision = "ccc"\ndown_revision = "aaa"\n')
    assert head_of(tmp_path) is None  # two heads: bbb and ccc
    script("d", 'revision: str = "ddd"\ndown_revision = ("bbb", "ccc")\n')  # their merge
    assert head_of(tmp_path) == "ddd"
    script("e", 'revision = "eee"\ndown_revision = (\n    "ddd",\n)\n')  # over lines
    assert head_of(tmp_path) is None


def test_a_tracking_server_is_asked_for_its_health_once_per_process(
    params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_store (the trainer's, then every MLflow client's through setup) asks a server's
    /health once per process; another address is asked on its own."""
    import http.server
    import threading

    from pipeline.infra.errors import PipelineError
    from pipeline.infra.tracking import check_store

    hits: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's API)
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("PIPELINE_TRACKING_URI", uri)
        params = load_params(params_path)
        assert check_store(params) == check_store(params) == uri
        assert hits == ["/health"]
    finally:
        server.shutdown()
        server.server_close()
    assert check_store(params) == uri  # answered before, in this process: not asked again
    monkeypatch.setenv("PIPELINE_TRACKING_URI", uri + "/")  # another address: asked
    with pytest.raises(PipelineError, match="unreachable"):
        check_store(load_params(params_path))
