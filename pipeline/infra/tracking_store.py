"""Creating the embedded SQLite tracking store once, atomically.

MLflow creates a fresh SQLite store in the first process that opens it: the initial tables,
then every Alembic migration, each committed on its own. A kill in between, or a second
process opening the same fresh file meanwhile (the grid's workers, four trainers started at
once), leaves a store on which every later open fails with ``table ... already exists``:
nothing trains until a person deletes it.

So :func:`ensure_sqlite_store` builds the store before any run opens it: under a file lock
beside it (``.<name>.lock``, waited for), MLflow's own store creation runs on a temp file
beside it (``.<name>.<random>.tmp``), which then replaces the store path in one rename. A
kill leaves either no store (and a temp file the next builder removes) or a complete one. A
store that is not at MLflow's schema head is checked under the same lock: holding no runs it
is a half-created one, rebuilt with one line saying so; holding runs it is never touched, and
the error says how to repair it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

from pipeline.infra.errors import PipelineError
from pipeline.infra.faults import kill_point
from pipeline.infra.runlock import remove_stale_temps, waiting_lock

SQLITE = "sqlite:///"

_ready: set[Path] = set()  # stores checked complete by this process


class StoreError(PipelineError):
    """The store exists but is not one the pipeline may use or rebuild."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute, as tracking.resolve_uri makes
    it), or None for any other store."""
    if not uri.startswith(SQLITE) or uri.startswith(SQLITE + ":memory:"):
        return None
    return Path(uri[len(SQLITE) :].split("?", 1)[0])


# `revision = "..."` or, in Alembic's newer template, `revision: str = "..."`
_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _head_from_files() -> str | None:
    """MLflow's schema head read from its migration scripts without importing mlflow (about
    a second and a half of imports a trainer would pay before its first step just to see
    that the store is complete); None when they cannot be read that way, and :func:`_head`
    asks Alembic instead."""
    spec = importlib.util.find_spec("mlflow")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return head_of(
        Path(spec.submodule_search_locations[0]) / "store" / "db_migrations" / "versions"
    )


def head_of(folder: Path) -> str | None:
    """The one revision of the Alembic scripts in ``folder`` that no script names as its
    ``down_revision``; None unless every script states both as literals on one line each and
    exactly one such revision exists."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in folder.glob("*.py"):
        if script.name == "__init__.py":
            continue
        found = dict(m.groups() for m in _REVISION.finditer(script.read_text()))
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):  # a form this reader does not know
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else (down or ()))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _head() -> str:
    """The schema revision this MLflow creates stores at."""
    head = _head_from_files()
    if head is not None:
        return head
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _known(revision: str) -> bool:
    """Whether this MLflow has the migration ``revision`` (False: a newer MLflow's store)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    try:
        return (
            ScriptDirectory.from_config(_get_alembic_config("")).get_revision(revision) is not None
        )
    except Exception:  # alembic raises its own errors for an unknown revision
        return False


def _inspect(db: Path) -> tuple[str | None, int]:
    """(the store's Alembic revision or None, how many runs it holds) of an existing file."""
    try:
        return _read(db)
    except sqlite3.DatabaseError as err:  # not SQLite at all, or damaged: not ours to touch
        raise StoreError(
            f"{db}: not a readable SQLite database ({err}): not touched; move it aside and "
            "rerun to start a fresh MLflow store, or point tracking.uri elsewhere"
        ) from None


def _read(db: Path) -> tuple[str | None, int]:
    con = sqlite3.connect(db, timeout=60)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        revision = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        return revision, int(runs)
    finally:
        con.close()


def _build(db: Path, artifact_uri: str) -> None:
    """MLflow's own creation of a store, on a temp file beside ``db``, renamed into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    fd, name = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    os.close(fd)
    tmp = Path(name)
    uri = SQLITE + str(tmp)
    try:
        store = SqlAlchemyStore(uri, artifact_uri)
        store.engine.dispose()  # no open connection to the file that is renamed below
        SqlAlchemyStore._engine_map.pop(uri, None)
        kill_point("store-built")  # tests: complete in the temp file, not yet in place
        for suffix in ("-journal", "-wal", "-shm"):  # never pair the new file with old logs
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}-journal").unlink(missing_ok=True)


def ensure_sqlite_store(db: Path, artifact_uri: str) -> None:
    """Make ``db`` a complete MLflow store at the schema head, or raise a one-line
    :class:`StoreError` when it is not at the head and holds runs, is at a revision this
    MLflow does not know, or is no SQLite file. Returns at once for a complete store (once
    per process: one small SQLite read)."""
    db = db.resolve()
    if db in _ready:
        return
    head = _head()
    if not db.is_file() or _inspect(db)[0] != head:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # e.g. a path under a file: the store cannot be made there
            raise StoreError(
                f"{db}: cannot create the MLflow store's folder ({err.strerror}); set "
                "tracking.uri to a writable sqlite:/// path or a tracking server"
            ) from None
        with waiting_lock(db.parent / f".{db.name}.lock"):
            # Builders hold this lock: any temp file of ours left now is a killed builder's.
            remove_stale_temps(db.parent, db.name)
            for journal in db.parent.glob(f".{db.name}.*.tmp-journal"):
                journal.unlink(missing_ok=True)
            if not db.is_file():
                _build(db, artifact_uri)
            else:
                revision, runs = _inspect(db)  # again: another process may have built it
                if revision not in (None, head) and not _known(revision):
                    raise StoreError(
                        f"{db}: MLflow store at schema revision {revision}, which this MLflow "
                        f"does not know (a newer MLflow made it): not touched. Use that MLflow "
                        "version, or point tracking.uri at another store"
                    )
                if revision != head and runs:
                    raise StoreError(
                        f"{db}: MLflow store at schema revision {revision}, not {head} (an "
                        f"upgrade was interrupted, or another MLflow version made it), holding "
                        f"{runs} runs: not touched. Back it up, then run `mlflow db upgrade "
                        f"{SQLITE}{db}`; if that fails, move the file aside (its runs stay "
                        "readable there) and rerun to start a fresh store"
                    )
                if revision != head:
                    print(
                        f"{db}: half-created MLflow store (schema revision {revision}, no "
                        "runs; a process was killed while creating it): rebuilding it",
                        file=sys.stderr,
                    )
                    _build(db, artifact_uri)
    _ready.add(db)
