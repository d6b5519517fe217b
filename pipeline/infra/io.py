"""Atomic file and directory writes (readers never see half-written output), hashing, downloads."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.infra.faults import kill_point

# The process umask, read once: temp files are created private (0600/0700), and what they
# become must get the mode a plain open()/mkdir() would have given it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# The temp files and folders of our atomic writes: ``.<name>.<8 chars of mkstemp>.tmp|.old``.
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|old)$")


def _held_by_us(fd: int, name: str) -> bool:
    """Lock a temp we just created; False when a sweep (below) took it first and deleted it
    between its creation and our lock (then the caller takes another name)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fstat(fd).st_ino == os.stat(name).st_ino
    except (BlockingIOError, FileNotFoundError):
        return False


def _new_temp(path: Path, suffix: str, folder: bool = False) -> tuple[int, Path]:
    """(an fd holding the lock, the temp) for a write of ``path``: a file or a folder."""
    for _ in range(100):
        if folder:
            name = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            fd = os.open(name, os.O_RDONLY)
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        if _held_by_us(fd, name):
            return fd, Path(name)
        os.close(fd)
    raise OSError(f"{path.parent}: could not create a temp file for {path.name}")


def remove_abandoned_temps(path: Path) -> list[Path]:
    """Delete the temps of earlier atomic writes of ``path`` that no live writer holds: a
    writer locks its temp (``flock``) for as long as it exists, so an unlocked one is what a
    kill between write and rename left. Every atomic write calls this first, so each stage
    cleans its own leftovers on its next run, with no lock of its own. Returns what went."""
    gone = []
    for name in sorted(glob.glob(glob.escape(str(path.parent / f".{path.name}.")) + "*")):
        leftover = Path(name)
        if not TEMP_NAME.match(leftover.name) or leftover.is_symlink():
            continue
        try:
            fd = os.open(leftover, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer's
        try:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            gone.append(leftover)
        finally:
            os.close(fd)
    return gone


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename.

    The file ends with the mode ``open()`` would give it (0666 less the umask), not the
    owner-only mode of a temp file, so teammates and an MLflow server can read results.
    The temp must be written in place (opened, not replaced): its lock is on that file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(path)
    fd, tmp_path = _new_temp(path, ".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        kill_point(f"replace:{path.name}")  # tests: a kill between write and rename
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temp dir beside ``path``; on success it becomes ``path``.

    An existing ``path`` is moved aside first and deleted only after the swap, so a crash
    at any point leaves either the old or the new directory, never a mix. The directory
    ends with the mode ``mkdir()`` would give it (0777 less the umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(path)
    fd, tmp = _new_temp(path, ".tmp", folder=True)
    tmp.chmod(0o777 & ~_UMASK)
    old_fd = None
    try:
        yield tmp
        kill_point(f"replace:{path.name}")
        old = None
        if path.exists():
            old_fd, old = _new_temp(path, ".old", folder=True)
            os.replace(path, old / "x")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        for held in (fd, old_fd):
            if held is not None:
                os.close(held)


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` atomically, with the same bytes for the same content.

    Saving to a path names the zip records after the file (here a random temp name); saving
    to an open file names them ``archive/``, so reruns give identical files (DVC and md5
    checks see no change where there is none)."""
    import torch

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


DOWNLOAD_TIMEOUT_S = 30  # per socket operation: an offline machine fails fast, never hangs
# What a failed download raises (callers turn it into one line): no connection, HTTP errors,
# a connection cut mid-body, timeouts, a bad URL, a failed ``check``.
DOWNLOAD_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def download(
    url: str, dest: Path, algorithm: str = "sha256", check: Callable[[str], None] | None = None
) -> str:
    """Fetch ``url`` into ``dest`` atomically; returns the hex digest of what was written.

    The connection is opened first, so offline nothing is created on disk. ``check(digest)``
    runs before ``dest`` appears and may raise to reject the file (nothing is left behind).
    Raises one of DOWNLOAD_ERRORS.
    """
    h = hashlib.new(algorithm)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, atomic_path(dest) as tmp:
        with tmp.open("wb") as f:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
        if check is not None:
            check(h.hexdigest())
    return h.hexdigest()


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
