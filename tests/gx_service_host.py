"""Plays Dagster's code server for tests/test_gx_service.py: starts the GX service, then runs a
suite check in spawned processes, as the runs the code server launches do, and prints what it saw
as JSON lines. Then it waits to be killed."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path


def a_launched_run(wd_root: str, suite: str, out) -> None:
    from test_check_scope import LAYER, _cfg

    from dataset_platform.checks import gx_worker
    from dataset_platform.workdir import Workdir

    gx_worker.start()  # as definitions.py does in a launched run
    checked = gx_worker.suite_check(_cfg(), Workdir.at(wd_root), LAYER, Path(suite))
    served_by = gx_worker._pool().submit(os.getpid).result()
    served_from = gx_worker._pool().submit(os.getppid).result()  # (the service: the GX processes' parent)
    try:
        gx_worker._pool().submit(int, "not a number").result()
        raised = None
    except ValueError as e:
        raised = str(e)
    out.put({"me": os.getpid(), "served_by": served_by, "served_from": served_from, "children": [p.pid for p in mp.active_children()],
             "rows_validated": checked.rows_validated, "critical_passed": checked.outcome.critical_passed,
             "raised": raised})
    gx_worker.shutdown()


def run_once(wd_root: str, suite: str) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=a_launched_run, args=(wd_root, suite, out))
    started = time.perf_counter()
    p.start()
    seen = out.get(timeout=120)
    p.join(60)
    seen.update(exitcode=p.exitcode, seconds=round(time.perf_counter() - started, 2))
    return seen


if __name__ == "__main__":
    from multiprocessing.connection import Client

    from dataset_platform.checks import gx_service

    wd_root, suite = sys.argv[1], sys.argv[2]
    address = gx_service.serve()
    service = gx_service._STARTED["process"].pid
    print(json.dumps({"service": service, "address": address}), flush=True)
    print(json.dumps(run_once(wd_root, suite)), flush=True)
    try:
        Client(address, family="AF_UNIX", authkey=b"not the key")
        print(json.dumps({"wrong_key": "accepted"}), flush=True)
    except Exception as e:
        print(json.dumps({"wrong_key": type(e).__name__}), flush=True)
    print(json.dumps(run_once(wd_root, suite)), flush=True)
    time.sleep(600)
