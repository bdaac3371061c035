"""Child processes that die with their parent, and a run process's garbage collector kept off its
start-up heap. Nothing here imports Dagster (or any heavy package: the crawl process calls it
first thing).

A process killed with SIGKILL (the OOM killer, a container stop) cannot stop its children; on
Linux the kernel can signal a child when its parent dies (``PR_SET_PDEATHSIG``), and elsewhere a
thread watching the parent's pid does the same.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections.abc import Iterator

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


_FROZEN: set[str] = set()


def freeze_start_up_heap(part: str = "start-up") -> bool:
    """Keep the objects alive now (the imported modules, Dagster's definitions) out of the cyclic
    garbage collector's full collections, once per process (``gc.freeze``); True the first time.
    In a run process that had imported Dagster, DuckDB and the stages, a full collection took
    0.12 s, and one fell inside each +1 % refresh at 100k documents, in a stage or in the checks;
    after this a full collection looks only at what came later. The frozen objects are still freed
    when their last reference goes; only garbage in reference cycles among them (made before the
    freeze, or later out of frozen objects) is never collected.

    ``part``: once per part of the start-up (the run's warm-up of the stages, which imports their
    libraries, freezes what it added: ``runner.warm_up``)."""
    if part in _FROZEN:
        return False
    if not _FROZEN:  # (at exit the interpreter's last collections see them again: nothing left to
        # finalise is reported as leaked, as DuckDB's bindings do for objects never collected)
        import atexit

        atexit.register(gc.unfreeze)
    _FROZEN.add(part)
    gc.freeze()
    return True


@contextlib.contextmanager
def start_up() -> Iterator[None]:
    """Within: a process's start-up (imports, definitions), without cyclic garbage collections
    (each full one while the heap grows looks at every object imported so far: four of them took
    0.22 s of ``dataset-platform run``'s start); on exit the heap is frozen
    (:func:`freeze_start_up_heap`) and the collector runs again as it did."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_start_up_heap()
        if was:
            gc.enable()
