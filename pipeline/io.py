"""Atomic file and directory writes (readers never see half-written output), hashing, downloads."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temp dir beside ``path``; on success it becomes ``path``.

    An existing ``path`` is moved aside first and deleted only after the swap, so a crash
    at any point leaves either the old or the new directory, never a mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
