"""Child processes that die with their parent. Nothing here imports Dagster (or any heavy package:
the crawl process calls it first thing).

A process killed with SIGKILL (the OOM killer, a container stop) cannot stop its children; on
Linux the kernel can signal a child when its parent dies (``PR_SET_PDEATHSIG``), and elsewhere a
thread watching the parent's pid does the same.
"""

from __future__ import annotations

import os
import signal

#: the pid the child was started by, in its environment: a parent that died before the child set
#: its death signal is noticed (the child then has another parent already)
PARENT_ENV = "DATASET_PLATFORM_PARENT_PID"


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have ``sig`` sent to this process when its parent dies (``parent``: the pid it must have;
    default: its parent now, or ``$DATASET_PLATFORM_PARENT_PID``). A parent already gone: ``sig``
    at once."""
    import ctypes
    import threading

    if parent is None:
        parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(sig), 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # (the parent died before the call)
                os.kill(os.getpid(), sig)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
