"""Checks started ahead: a check's computation begins as the asset that wrote its table ends, and
the check takes that result when what it read is still as it was.

An asset step ends in its checks (``defs/quality.py``: ``materialise_and_check``), but the step
still has work after the table is written: recording the materialisation, its metadata, the
dataset card. The ``gx_suite`` checks already start there on the GX worker (``gx_worker.prefetch``).
The others that cost most start there too (``start``): the release's invariants on a thread of
this process (DuckDB queries, which run outside the GIL, so they overlap the rest of the step
instead of following it: at 1M documents, 1.3 s of a +1 % refresh's checks) and the PII scan of
the new cleaned parts (on the GX worker it queued behind the suites: 0.90 s against 0.33 s at 1M). The check
then calls ``result`` with the same key and the state of what it reads *now*; the result of the
head start is used only when that state is the one it started on, and a head start that raised
is computed again (the check then raises or reports as it would have). Nothing here imports
Dagster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
#: key -> (state it started on, its future)
_AHEAD: dict[Hashable, tuple[Any, Future]] = {}


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:  # two threads: the release's four invariants (DuckDB queries, outside the
            # GIL) two at a time; one after another they waited 0.71-0.84 s at the end of a 1M
            # refresh, 0.27-0.29 s side by side
            _POOL = ThreadPoolExecutor(2, thread_name_prefix="checks-ahead")
        return _POOL


def start(key: Hashable, state: Any, fn: Callable[..., Any], *args: Any) -> None:
    """Start ``fn(*args)`` now, on this module's thread, for the check that will ask for ``key``
    on ``state``."""
    future = _pool().submit(fn, *args)
    with _LOCK:
        _AHEAD[key] = (state, future)


def result(key: Hashable, state: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``: the value started ahead under ``key`` when it started on ``state`` and
    returned, else computed now."""
    with _LOCK:
        ahead = _AHEAD.pop(key, None)
    if ahead is not None:
        started_on, future = ahead
        try:
            value = future.result()  # (also when stale: never leave it running beside a new one)
        except Exception:
            value = future = None
        if future is not None and started_on == state:
            return value
    return fn(*args)


def pending() -> int:
    """Head starts no check has taken yet (their checks were not run, or not yet)."""
    with _LOCK:
        return len(_AHEAD)


def forget() -> None:
    """Drop the head starts no check took (at a run's end: the next run starts its own)."""
    with _LOCK:
        ahead = list(_AHEAD.values())
        _AHEAD.clear()
    for _, future in ahead:
        future.cancel()
