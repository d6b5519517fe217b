"""Named crash points, for tests that kill a process at a moment they choose.

``PIPELINE_KILL_AT=<name>`` makes the process SIGKILL itself when it reaches
``kill_point(<name>)``; ``PIPELINE_KILL_AFTER=<n>`` lets the first ``n`` passes through that
point go by (e.g. kill at the third checkpoint replace); ``PIPELINE_KILL_SIGNAL=STOP`` stops
it there instead (alive, holding what it holds, until the test kills or continues it);
``PIPELINE_KILL_WORKER=<i>`` limits the kill to the numbered worker whose ``$PIPELINE_WORKER``
is ``i`` (``pipeline tune --jobs`` numbers its workers), so one of several dies. Unset (always, outside tests), a
crash point costs one environment lookup. The points are where a real crash would leave
something behind: the recovery code that handles them is what the tests check.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "PIPELINE_KILL_AT"
AFTER_ENV = "PIPELINE_KILL_AFTER"
SIGNAL_ENV = "PIPELINE_KILL_SIGNAL"
WORKER_ENV = "PIPELINE_WORKER"
ONLY_WORKER_ENV = "PIPELINE_KILL_WORKER"

_passes: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process here when ``$PIPELINE_KILL_AT`` names this point."""
    if os.environ.get(KILL_ENV) != name:
        return
    only = os.environ.get(ONLY_WORKER_ENV)
    if only is not None and os.environ.get(WORKER_ENV) != only:
        return
    seen = _passes.get(name, 0)
    _passes[name] = seen + 1
    if seen >= int(os.environ.get(AFTER_ENV) or 0):
        sig = signal.SIGSTOP if os.environ.get(SIGNAL_ENV) == "STOP" else signal.SIGKILL
        os.kill(os.getpid(), sig)
