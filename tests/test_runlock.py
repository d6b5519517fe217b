"""Folder locks and leftovers of killed writers (pipeline/infra/runlock.py), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.infra.faults import KILL_ENV
from pipeline.infra.runlock import (
    FolderLockedError,
    folder_lock,
    lock_file,
    remove_abandoned,
    remove_stale_temps,
    scratch_folder,
)

HOLD = """
import sys
from pathlib import Path
from pipeline.infra.runlock import folder_lock, scratch_folder
mode, target = sys.argv[1], Path(sys.argv[2])
if mode == "lock":
    with folder_lock(target):
        print("held", flush=True)
        sys.stdin.readline()
else:
    with scratch_folder(target, "tune-x-", "tuning trial") as folder:
        print(folder, flush=True)
        sys.stdin.readline()
"""


def _holder(mode: str, target: Path) -> tuple[subprocess.Popen[str], str]:
    """A child holding a lock until its stdin closes (or it is killed); returns its first line."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, mode, str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "gan"
    child, line = _holder("lock", folder)
    try:
        assert line == "held"
        with pytest.raises(FolderLockedError) as err, folder_lock(folder):
            pass
        assert str(folder) in str(err.value) and f"pid {child.pid}" in str(err.value)
    finally:
        child.kill()
        child.wait()
    # SIGKILL releases it: the next writer gets in, and may re-enter in the same process
    with folder_lock(folder), folder_lock(folder):
        assert lock_file(folder).read_text().strip() == str(os.getpid())
    assert not folder.exists()  # the lock sits beside the folder, not in it


KILLED_WRITE = """
import sys
from pathlib import Path
from pipeline.infra.io import atomic_dir, write_text
target = Path(sys.argv[1])
if target.suffix:
    write_text(target, "half")
else:
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("half")
"""


def _killed_write(target: Path) -> None:
    """A child SIGKILLed between writing ``target``'s temp and renaming it."""
    out = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(target)],
        env={**os.environ, KILL_ENV: f"replace:{target.name}",
             "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL


def test_stale_temps_of_killed_atomic_writes_are_removed_and_nothing_else(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    (folder / "grids").mkdir(parents=True)
    keep = [folder / "checkpoint.pt", folder / ".hidden.tmp", folder / "grids" / "x.png"]
    for path in keep:
        path.write_text("x")
    _killed_write(folder / "checkpoint.pt")
    _killed_write(folder / "grids" / "epoch_0001.png")
    _killed_write(folder / "samples")
    left = sorted(p for p in folder.rglob(".*") if p not in keep)
    assert len(left) == 3, left  # two temp files and one temp folder
    assert remove_stale_temps(folder) == left
    assert sorted(folder.rglob("*")) == sorted([*keep, folder / "grids"])
    assert (folder / "checkpoint.pt").read_text() == "x"


def test_abandoned_scratch_folders_go_and_live_ones_stay(tmp_path: Path) -> None:
    live, live_folder = _holder("scratch", tmp_path)
    dead, dead_folder = _holder("scratch", tmp_path)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert Path(dead_folder).is_dir() and Path(live_folder).is_dir()
        assert remove_abandoned(tmp_path, "tune-") == [Path(dead_folder)]
        assert not Path(dead_folder).exists() and not lock_file(Path(dead_folder)).exists()
        assert Path(live_folder).is_dir()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait()
    # a scratch folder that ends normally removes itself and its lock
    assert sorted(tmp_path.iterdir()) == []
    with scratch_folder(tmp_path, "tune-y-", "trial") as folder:
        assert folder.is_dir() and lock_file(folder).is_file()
    assert sorted(tmp_path.iterdir()) == []
