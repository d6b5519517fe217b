"""One writer per output folder, and what a killed writer leaves behind.

``folder_lock(folder)`` takes an advisory lock (``flock``) on ``.<name>.lock`` beside the
folder: a second trainer on the same folder (two ``dvc repro``s, a rerun while an orphaned
trainer still runs) is refused with one line instead of training into it at once. The lock
file sits beside the folder, not in it, so it survives the folder being moved aside or
swapped, and stays out of the folder's DVC hash. The kernel releases the lock when its holder
dies, however it dies; the file itself stays (deleting a lock file that another process may
be opening would let two holders in).

``remove_stale_temps(folder)`` deletes the temp files and folders of our own atomic writes
(``pipeline.infra.io``: ``.<name>.<8 random chars>.tmp`` / ``.old``) that a kill between write and
rename left behind. Only call it while holding the folder's lock: then no live writer owns them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.infra.errors import PipelineError
from pipeline.infra.io import TEMP_NAME

# tempfile.mkstemp/mkdtemp names: prefix + 8 characters of "abcdefghijklmnopqrstuvwxyz0123456789_"
_OUR_TEMP = TEMP_NAME

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, depth): re-entrant per process


class FolderLockedError(PipelineError):
    """Another live process holds the folder's lock."""


def lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def folder_lock(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold the lock of ``folder`` (re-entrant within this process); refuse with one line,
    naming the holder's pid, when another process holds it."""
    path = lock_file(folder)
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _try_lock(path)
        if fd is None:
            try:
                holder = path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise FolderLockedError(
                f"{folder}: another {what} is writing to it (pid {holder}, lock {path}); "
                "wait for it to finish or stop it, then rerun"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[path] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held[path]
        if depth > 1:
            _held[path] = (fd, depth - 1)
        else:
            del _held[path]
            os.close(fd)  # releases the lock


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting for it: for short critical sections
    that every process must pass through in turn (creating a shared store), not refuse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (see the module docstring)


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Delete our atomic-write leftovers anywhere under ``folder`` (only those of the file
    ``name`` when given: a shared folder holds other writers' temps); returns what went."""
    if not folder.is_dir():
        return []
    gone = []
    pattern = f".{name}.*" if name is not None else ".*"
    for path in sorted(folder.glob(pattern) if name is not None else folder.rglob(pattern)):
        if not _OUR_TEMP.match(path.name) or not (path.is_file() or path.is_dir()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        gone.append(path)
    return gone


def _new_locked_file(parent: Path, prefix: str) -> tuple[int, Path]:
    """A new lock file ``parent/.<prefix><random>.lock`` and an fd holding its lock.

    A sweeping :func:`remove_abandoned` may see the file between its creation and our
    ``flock``, lock it itself and delete it: then take another name rather than fail."""
    for _ in range(100):
        fd, name = tempfile.mkstemp(prefix=f".{prefix}", suffix=".lock", dir=parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(name).st_ino:  # still the file at that name
                return fd, Path(name)
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
    raise FolderLockedError(f"{parent}: could not create a locked scratch folder")


@contextmanager
def scratch_folder(parent: Path, prefix: str, what: str) -> Iterator[Path]:
    """A fresh folder ``parent/<prefix><random>``, locked while in use and deleted after; a
    process killed meanwhile leaves it to :func:`remove_abandoned`. The lock is held before
    the folder exists, so the folder never exists unlocked. ``what`` names the user in a
    refusal of :func:`folder_lock` on it (which re-enters this lock in this process)."""
    parent.mkdir(parents=True, exist_ok=True)
    fd, lock = _new_locked_file(parent, prefix)
    folder = parent / lock.name[1 : -len(".lock")]
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[lock] = (fd, 1)
    try:
        with folder_lock(folder, what):  # re-entrant: counts on the lock taken above
            folder.mkdir()
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        del _held[lock]
        os.close(fd)


def remove_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Delete the scratch folders ``parent/<prefix>*`` (see :func:`scratch_folder`) whose lock
    no live process holds, with their lock files; returns the folders that went."""
    if not parent.is_dir():
        return []
    gone = []
    for lock in sorted(parent.glob(f".{prefix}*.lock")):
        fd = _try_lock(lock)
        if fd is None:
            continue  # in use
        folder = parent / lock.name[1 : -len(".lock")]
        try:
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
        gone.append(folder)
    return gone
