"""GX on its worker process (checks/gx_worker.py): the same verdict as in-process, the pages
written by the time ``drain`` returns, and a page that cannot be rendered reported, not raised."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from test_check_scope import LAYER, REPO, _cfg, write_part

from dataset_platform.checks import gx_worker
from dataset_platform.checks.suite_check import run_suite_check
from dataset_platform.storage.batched import BatchedLayer
from dataset_platform.workdir import Workdir


def _worker_pid() -> int:
    return os.getpid()


def layer_with_a_critical_failure(tmp_path) -> tuple[Workdir, Path]:
    """A work folder whose LAYER has 200 rows in two parts, 50 of them without text, and the
    layer's suite copied beside it."""
    wd = Workdir.at(tmp_path / "wd").ensure()
    with BatchedLayer(wd.layer_dir(LAYER), LAYER).locked() as layer:
        write_part(layer, "src/a", range(150))
        write_part(layer, "src/b", range(150, 200), text="NULL")  # a critical failure: no text
        layer.commit()
    suite = tmp_path / f"{LAYER}.json"
    shutil.copy(REPO / "expectations" / f"{LAYER}.json", suite)
    return wd, suite


def test_the_worker_gives_the_in_process_verdict_and_writes_its_pages_by_drain(tmp_path):
    wd, suite = layer_with_a_critical_failure(tmp_path)

    remote = gx_worker.suite_check(_cfg(), wd, LAYER, suite)
    assert gx_worker._pool().submit(_worker_pid).result() != os.getpid()  # it ran elsewhere
    local = run_suite_check(_cfg(), wd, LAYER, suite)  # failing rows stay pending: validated again
    assert remote.rows_validated == local.rows_validated == 200 and remote.layer_rows == 200
    assert not remote.outcome.critical_passed and not remote.recorded
    assert [(o.type, o.kwargs, o.success, o.unexpected_count) for o in remote.outcome.outcomes] == \
        [(o.type, o.kwargs, o.success, o.unexpected_count) for o in local.outcome.outcomes]

    page = gx_worker.data_docs(remote.outcome, wd.data_docs, "run-a")
    assert page.is_relative_to(wd.data_docs / "site" / "validations" / LAYER / "run-a")
    assert gx_worker.drain() == []
    assert page.is_file() and "run-a" in (wd.data_docs / "site" / "index.html").read_text(encoding="utf-8")

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the docs folder should be")
    gx_worker.data_docs(remote.outcome, blocked, "run-b")
    errors = gx_worker.drain()
    assert len(errors) == 1 and errors[0].startswith(f"{LAYER}: GX Data Docs not built")
    assert gx_worker.drain() == []  # reported once


def test_a_check_started_ahead_is_taken_only_while_the_layer_is_as_it_was(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    with BatchedLayer(wd.layer_dir(LAYER), LAYER).locked() as layer:
        write_part(layer, "src/a", range(100))
        layer.commit()
    suite = tmp_path / f"{LAYER}.json"
    shutil.copy(REPO / "expectations" / f"{LAYER}.json", suite)

    gx_worker.prefetch(_cfg(), wd, LAYER, suite)  # as the asset step ends
    ahead = gx_worker._AHEAD[(str(wd.root), LAYER)][3]
    gx_worker.prefetch(_cfg(), wd, LAYER, suite)  # started again on the same files: the first one stays
    assert gx_worker._AHEAD[(str(wd.root), LAYER)][3] is ahead
    checked = gx_worker.suite_check(_cfg(), wd, LAYER, suite)  # the check step
    assert checked.rows_validated == 100 and checked.recorded and ahead.done()
    assert (str(wd.root), LAYER) not in gx_worker._AHEAD  # taken once

    gx_worker.prefetch(_cfg(), wd, LAYER, suite)  # nothing new: it validates no row
    with BatchedLayer(wd.layer_dir(LAYER), LAYER).locked() as layer:  # then a part arrives
        write_part(layer, "src/b", range(100, 130), text="NULL")  # with a critical failure
        layer.commit()
    checked = gx_worker.suite_check(_cfg(), wd, LAYER, suite)  # stale: validated again, as it is now
    assert [u.key for u in checked.units_validated] == ["src/b"] and checked.rows_validated == 30
    assert not checked.outcome.critical_passed


def _a_process_using_the_worker() -> None:
    gx_worker.start()
    assert gx_worker._pool().submit(_worker_pid).result() != os.getpid()


def test_a_spawned_process_that_used_the_worker_ends(tmp_path):
    """A run launched by Dagster's code server is a spawned process; once it is done it must end,
    not wait for its idle GX worker (multiprocessing joins a process's children at its exit)."""
    from multiprocessing import get_context

    p = get_context("spawn").Process(target=_a_process_using_the_worker)
    p.start()
    p.join(90)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive and p.exitcode == 0


def test_a_verdict_waits_for_the_page_being_rendered_not_for_every_page_queued(tmp_path):
    wd, suite = layer_with_a_critical_failure(tmp_path)
    first = gx_worker.suite_check(_cfg(), wd, LAYER, suite)  # (GX warm on the worker)
    for i in range(8):
        gx_worker.data_docs(first.outcome, wd.data_docs, f"run-{i}")
    with gx_worker._LOCK:
        pages = [f for _, f, _ in gx_worker._DOCS]
    checked = gx_worker.suite_check(_cfg(), wd, LAYER, suite)  # queued after eight pages
    rendered = sum(f.done() for f in pages)
    assert checked.rows_validated == 200 and not checked.outcome.critical_passed
    assert rendered <= 3, f"the verdict waited for {rendered} of 8 pages"
    assert gx_worker.drain() == []
    assert all(f.done() for f in pages)
    assert len(list((wd.data_docs / "site" / "validations" / LAYER).iterdir())) == 8


def test_the_warm_up_runs_every_suite_on_a_row_of_its_contract():
    """A GX process validates each suite's row-level expectations once before its first call (the
    first validation of a suite in a process costs more than the next); every suite must still
    run on a row typed by its layer's contract, or that suite's first check pays again."""
    from dataset_platform.checks.gx_suites import expectations_dir
    from dataset_platform.contracts.schema import LAYERS
    from dataset_platform.storage import memory_connection

    con = memory_connection()
    try:
        warmed = gx_worker._warm_suites(con)
    finally:
        con.close()
    assert warmed == [layer for layer in LAYERS if (expectations_dir() / f"{layer}.json").exists()]
    assert len(warmed) >= 10


def test_a_warm_gx_process_imports_nothing_more_for_a_call(tmp_path):
    """What a suite check's call needs (unpickling its config, listing the files of any layer) is
    imported by the warm-up: a fresh service's first calls paid 0.1-0.2 s for it."""
    import pickle
    import subprocess
    import sys

    from dataset_platform.config import demo_config_path, load_config

    cfg, wd = load_config(demo_config_path()), Workdir.at(tmp_path / "w").ensure()
    call = tmp_path / "call.pickle"
    call.write_bytes(pickle.dumps((gx_worker._state, cfg, wd)))
    code = f"""
import pickle, sys
from dataset_platform.checks import gx_worker
from dataset_platform.contracts.schema import LAYERS
gx_worker._warm()
before = set(sys.modules)
state, cfg, wd = pickle.loads(open({str(call)!r}, "rb").read())
for layer in [*LAYERS, "dataset_release"]:
    state(cfg, wd, layer)
print(sorted(m for m in set(sys.modules) - before if m.startswith("dataset_platform")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
