"""Named crash points, for tests that kill a process at a moment they choose.

``PIPELINE_KILL_AT=<name>`` makes the process SIGKILL itself when it reaches
``kill_point(<name>)``; ``PIPELINE_KILL_AFTER=<n>`` lets the first ``n`` passes through that
point go by (e.g. kill at the third checkpoint replace). Unset (always, outside tests), a
crash point costs one environment lookup. The points are where a real crash would leave
something behind: the recovery code that handles them is what the tests check.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "PIPELINE_KILL_AT"
AFTER_ENV = "PIPELINE_KILL_AFTER"

_passes: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process here when ``$PIPELINE_KILL_AT`` names this point."""
    if os.environ.get(KILL_ENV) != name:
        return
    seen = _passes.get(name, 0)
    _passes[name] = seen + 1
    if seen >= int(os.environ.get(AFTER_ENV) or 0):
        os.kill(os.getpid(), signal.SIGKILL)
