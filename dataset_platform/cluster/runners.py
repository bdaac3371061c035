"""Where a list of independent tasks runs: ``run(fn, items)`` yields ``fn(item)`` for each item,
in order. Each item is a Ray task with ``pipeline.executor: ray``; else a spawned worker process
per CPU of this machine when the work pays for the workers' start; else the items run here, one
after another. ``fn`` is a module-level function and the items plain data. Nothing here imports
Dagster, nor Ray unless that executor is set."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

#: less work than this (bytes of input) runs here rather than on worker processes of this machine:
#: starting workers costs about a second (the landing's and the merge's rule)
POOL_BYTES = 64 * 1024 * 1024


class Where(str):
    """Where the tasks run, as logs and metadata say it (``ray``, ``local`` or ``local, N
    processes``), with ``workers``: the worker processes of this machine (0 on Ray or here)."""

    workers: int

    def __new__(cls, text: str, workers: int = 0) -> Where:
        obj = super().__new__(cls, text)
        obj.workers = workers
        return obj


@contextmanager
def map_runner(cfg, name: str, items: int, worth_workers: Callable[[], bool],
               placement: dict | None = None) -> Iterator[tuple[Callable, Where]]:
    """``(run, where)`` for ``items`` tasks (see the module docstring). ``name``: the Ray tasks'
    name; ``worth_workers()``: whether the work is large enough for worker processes (asked only
    when there are 2 or more items and CPUs); ``placement`` receives where each Ray task ran
    (``ray_tasks.placement_summary``). ``where``: a :class:`Where`."""
    from dataset_platform.stages.base import available_cpus, exit_with_parent

    if cfg is not None and cfg.pipeline.executor == "ray" and items:
        from dataset_platform.cluster.ray_tasks import tasks

        yield tasks(cfg, name, placement).run, Where("ray")
        return
    workers = min(available_cpus(), items)
    if workers < 2 or not worth_workers():
        yield map, Where("local")
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=exit_with_parent) as pool:
        yield pool.map, Where(f"local, {workers} processes", workers)
