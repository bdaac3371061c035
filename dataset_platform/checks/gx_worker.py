"""Great Expectations on a helper process: the ``gx_suite`` checks' validation and their Data Docs.

GX costs a run two fixed amounts that have nothing to do with the rows: its import (3-4 s of
Python, before the first suite can run) and the rendering of each check's Data Docs page (about
0.4 s a page, jinja templates compiled anew each time). On the run's own process both delay every
step after them; a +1 % refresh at 100k documents spent 6 of its 21 s there. Here one worker
process, started when a run begins (``start``), imports GX while the raw layer is loaded, then
validates each suite (``suite_check``: the step waits for the verdict, which blocks what is below;
``prefetch`` lets the asset that wrote the layer start it, so it overlaps the rest of that step)
and renders the pages (``data_docs``: queued, the step does not wait; the worker renders them while
the next assets run). A page goes to the worker only while no validation is on it (a thread of
this process hands them over one at a time): a verdict waits for at most the page being rendered,
not for every page queued before it.
``drain`` waits for the pages still queued, then renders the site's index once (each page
left it as it was: the index is half of a page's cost): the platform resource calls it when a run
ends (``defs/resources.py``), the CLI before it exits.

The worker is one process for the life of the calling process (a test session runs many
materialisations on it), dies with it (``exit_with_parent``), and gets only picklable values:
the config, the workdir, the layer and the suite's path; it reads the layer's files itself. A run
that Dagster's code server launched uses the code server's GX service instead, already warm, and
``dataset-platform run`` the service an earlier run left warm (``checks/gx_service.py``: two GX
processes, two calls in flight).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context, util
from pathlib import Path

from dataset_platform.checks.gx_service import RemotePool, connect
from dataset_platform.checks.gx_suites import SuiteOutcome

_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_DOCS: list[tuple[str, Future, str]] = []  # (suite, page, Data Docs folder)
#: (workdir, layer) -> (config, suite, layer state, future) of a suite check started ahead
_AHEAD: dict[tuple[str, str], tuple] = {}
#: the validations on the worker, the pages waiting for it to be free of them, and the thread
#: that hands the pages over (``_pager``)
_QUEUE = threading.Condition(threading.Lock())
_VALIDATING: set[Future] = set()
_PAGES: deque[tuple[Future, tuple]] = deque()
_PAGER: list[threading.Thread] = []


def _init() -> None:
    from dataset_platform.stages.base import exit_with_parent

    exit_with_parent()


def _warm() -> None:
    """Import GX, build its batch definition and validate one row once: what the first validation
    would pay (the first run of GX's validator in a process costs ~0.25 s more than the next).
    Then each suite's row-level expectations once, on a row of NULLs typed as the layer's
    contract: the first real validation of a suite on a fresh GX process still cost ~0.14 s more
    than the next (raw_pages' 300 rows: 0.22 s, then 0.09 s; after this 0.09-0.11 s the first time).
    About 0.8 s, on the GX process before its first call. A warm-up that fails is only skipped.
    First of all, the modules a call needs: unpickling its config imports ``config`` (pydantic's
    models: 0.13 s idle, ~0.2 s beside a run), which delayed the first suite of a run on each
    process of a fresh service by that much (the first run an inbox sensor launched); the files of
    rejected_documents are listed by ``runner`` (its import 0.07-0.16 s), the release's by
    ``release.materialise``."""
    import dataset_platform.checks.suite_check
    import dataset_platform.config
    import dataset_platform.release.materialise
    import dataset_platform.runner
    import dataset_platform.workdir  # noqa: F401
    from dataset_platform.checks import gx_suites
    from dataset_platform.storage import query_connection

    with gx_suites._GX_LOCK:
        gx_suites._batch_definition()
    con = query_connection()
    try:
        e = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "severity": "critical"}
        gx_suites._validate_batches(con, "SELECT 'x' AS x", ["x"], {0: e}, Path("warm-up.json"), 10, 1 << 20, 1)
        _warm_suites(con)
    finally:
        con.close()


def _warm_suites(con) -> list[str]:
    """The layers whose suites were warmed (see :func:`_warm`)."""
    from dataset_platform.checks import gx_suites
    from dataset_platform.contracts.schema import LAYERS, layer_columns

    try:
        folder = gx_suites.expectations_dir()
    except FileNotFoundError:
        return []
    warmed = []
    for layer in LAYERS:
        path = folder / f"{layer}.json"
        try:
            if not path.exists():
                continue
            row = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in layer_columns(layer))
            gx_suites.validate_relation(con, f"SELECT {row}", path)  # (verdicts on NULLs: not used)
            warmed.append(layer)
        except Exception:  # (a warm-up: the suite's own check reports what is wrong with it)
            continue
    return warmed


def _pool() -> ProcessPoolExecutor | RemotePool:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = connect()  # a run that Dagster's code server launched: its warm worker
            if _POOL is not None:
                return _POOL
            _POOL = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_init)
            _POOL.submit(_warm)
            # stopped at exit before multiprocessing joins the children: a run process that Dagster's
            # code server spawned otherwise waits for the idle worker forever and never ends
            util.Finalize(None, shutdown, kwargs={"at_exit": True}, exitpriority=10)
        return _POOL


def start() -> None:
    """Start the worker (once per process) and its import of GX, without waiting."""
    _pool()


def _suite_check(cfg, wd, layer: str, suite: Path):
    from dataset_platform.checks.suite_check import run_suite_check

    return run_suite_check(cfg, wd, layer, suite)


def _state(cfg, wd, layer: str) -> tuple | None:
    """What a suite check of ``layer`` would read: its units (files) and their identities."""
    from dataset_platform.checks.suite_check import layer_files

    files = layer_files(cfg, wd, layer)
    return None if files is None else (files.whole_sql, tuple((u.key, u.identity) for u in files.units))


def prefetch(cfg, wd, layer: str, suite: Path) -> None:
    """Start ``layer``'s suite check on the worker now, as the asset that wrote the layer ends:
    it runs while that step records its materialisation and the cheaper checks run, and
    ``suite_check`` takes its result when the layer is still as it was."""
    state = _state(cfg, wd, layer)
    if state is None:
        return
    with _LOCK:
        started = _AHEAD.get((str(wd.root), layer))
    if started is not None and started[:3] == (cfg, Path(suite), state):
        return  # (started already, on these very files: by a step before, see ``defs/quality.py``)
    future = _validate(cfg, wd, layer, Path(suite))
    with _LOCK:
        _AHEAD[(str(wd.root), layer)] = (cfg, Path(suite), state, future)


def suite_check(cfg, wd, layer: str, suite: Path):
    """``run_suite_check`` of ``layer`` on the worker (see ``checks/suite_check.py``); the
    result of ``prefetch`` when it validated the same files with the same config and suite."""
    with _LOCK:
        ahead = _AHEAD.pop((str(wd.root), layer), None)
    try:
        if ahead is not None:
            a_cfg, a_suite, a_state, future = ahead
            checked = future.result()  # (also when stale: never leave it running behind a new one)
            if a_cfg == cfg and a_suite == Path(suite) and a_state == _state(cfg, wd, layer):
                return checked
        return _validate(cfg, wd, layer, Path(suite)).result()
    except BrokenProcessPool:
        _reset()
        raise


def _validate(cfg, wd, layer: str, suite: Path) -> Future:
    """Submit a suite check; the pages wait while it is on the worker."""
    return submit(_suite_check, cfg, wd, layer, suite)


def submit(fn, *args) -> Future:
    """Run ``fn(*args)`` (a module-level function; picklable arguments) on the worker, as a check:
    the pages wait while it is on it."""
    future = _pool().submit(fn, *args)
    with _QUEUE:
        _VALIDATING.add(future)
    future.add_done_callback(_validated)
    return future


def _validated(future: Future) -> None:
    with _QUEUE:
        _VALIDATING.discard(future)
        _QUEUE.notify_all()


def data_docs(outcome: SuiteOutcome, docs_dir: Path, run_name: str) -> Path:
    """Queue the Data Docs page of ``outcome``; returns where it will be (``drain`` waits for it,
    then renders the site's index once)."""
    from dataset_platform.checks.data_docs import build_page, page_path

    _pool()  # (started, if this is its first use)
    run_time = dt.datetime.now(dt.UTC)
    page: Future = Future()
    with _QUEUE:
        _PAGES.append((page, (build_page, outcome, Path(docs_dir), run_name, run_time)))
        if not _PAGER or not _PAGER[0].is_alive():
            _PAGER[:] = [threading.Thread(target=_pager, name="gx-pages", daemon=True)]
            _PAGER[0].start()
        _QUEUE.notify_all()
    with _LOCK:
        _DOCS.append((outcome.suite, page, str(docs_dir)))
    return page_path(Path(docs_dir), outcome.suite, run_name, run_time)


def _pager() -> None:
    """Hand the queued pages to the worker one at a time, each when no validation is on it."""
    while True:
        with _QUEUE:
            while not _PAGES or _VALIDATING:
                _QUEUE.wait()
            page, call = _PAGES.popleft()
        if not page.set_running_or_notify_cancel():
            continue
        with _LOCK:
            pool = _POOL
        try:
            if pool is None:  # (never a new worker for a page: the old one was stopped or broke)
                raise RuntimeError("the GX worker stopped before the page was rendered")
            page.set_result(pool.submit(*call).result())
        except BaseException as e:  # (reported by drain)
            page.set_exception(e)


def drain(timeout: float | None = 600) -> list[str]:
    """Wait for the queued Data Docs pages, then render the index of each site they were written
    to; returns a message per page or index that failed to render."""
    from dataset_platform.checks.data_docs import build_site_index

    with _LOCK:
        pending = list(_DOCS)
        _DOCS.clear()
        pool = _POOL
    errors, sites = [], {}
    for suite, future, docs_dir in pending:
        try:
            future.result(timeout=timeout)
            sites[docs_dir] = None
        except Exception as e:  # a page is a convenience: report it, never fail the run for it
            errors.append(f"{suite}: GX Data Docs not built: {type(e).__name__}: {e}"[:500])
    for docs_dir in sites:
        try:
            if pool is None:
                raise RuntimeError("the GX worker stopped before the index was rendered")
            pool.submit(build_site_index, Path(docs_dir)).result(timeout=timeout)
        except Exception as e:
            errors.append(f"{docs_dir}: GX Data Docs index not built: {type(e).__name__}: {e}"[:500])
    return errors


def _quit() -> None:
    """End the worker at once, releasing its semaphores first as interpreter exit would."""
    import os

    util._run_finalizers(0)
    os._exit(0)


def shutdown(*, at_exit: bool = False) -> None:
    """Stop the worker once its queue is done: for a process that ends with ``os._exit``, so that the
    worker's queues and semaphores are released, not reported as leaked by multiprocessing. At a
    process's exit (``at_exit``, registered with multiprocessing's exit finalizers) the idle worker
    is killed instead: the executor may already be shut, and a process Dagster's code server spawned
    for a run would otherwise wait for its worker forever."""
    with _LOCK:
        started = _POOL is not None
    if not started:
        return
    if at_exit:
        for _, page, _ in list(_DOCS):  # queued pages are written first
            page.exception()
    else:
        drain()  # queued pages are written first, then their sites' index (a run's resource reported them)
    pool = _take_pool()
    if pool is None:
        return
    if isinstance(pool, RemotePool):  # the code server's worker: it stays for the next run
        pool.shutdown(wait=not at_exit, cancel_futures=True)
        return
    if at_exit:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        return
    pool.submit(_quit)  # idle: GX's own interpreter exit would take ~1 s
    pool.shutdown(wait=True)
    del pool
    import gc

    gc.collect()  # (the queues' semaphores are released by their finalizers)


def _take_pool() -> ProcessPoolExecutor | None:
    """The worker pool, no longer this module's (the next use starts a new one)."""
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
        _AHEAD.clear()
    return pool


def _reset() -> None:
    pool = _take_pool()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)

