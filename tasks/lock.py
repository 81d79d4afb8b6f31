"""One night at a time in a checkout, whichever door starts it.

    with night_lock():            # the flow holds it for the whole night; each stage's CLI
        ...                       # (what `dvc repro` runs) holds it for its stage

An advisory `flock` on `.lmsleep-night.lock` in the working directory (the project root for
`make run`, the UI's worker and `dvc repro`). The kernel drops it when its holder dies, even by
SIGKILL, so a crashed night never leaves a stale lock. A second night is refused at once with
who holds it, not queued: a queued night would run on the data the first one just changed.
(The deployments also carry a concurrency limit of 1, so Run clicks in the UI wait their turn
in Prefect instead of reaching this lock.)
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

LOCK = Path(".lmsleep-night.lock")
# Set by a process that holds the lock for the commands it starts (flows/replay.py runs
# `dvc repro`, whose stages take the lock each): they run under it instead of being refused.
HELD_BY = "LMSLEEP_NIGHT_LOCK_HELD_BY"


class NightInProgress(RuntimeError):
    pass


def _take(f, path: Path, what: str) -> bool:
    """True: taken. False: held by the process that started this one (`HELD_BY`)."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        if os.environ.get(HELD_BY) and holder.startswith(f"pid {os.environ[HELD_BY]} "):
            return False
        raise NightInProgress(f"{what} cannot start: {holder} holds {path.resolve()}; one night runs at a "
                              "time in a checkout. Wait for it to end (the lock goes with its process)") from None


@contextmanager
def night_lock(path: Path = LOCK, what: str = "a night"):
    f = open(path, "a+")
    try:
        if _take(f, path, what):
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} ({what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})")
            f.flush()
        yield
    finally:
        f.close()  # closing releases the lock (never one this process did not take)
