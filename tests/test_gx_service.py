"""The GX worker that Dagster's code server keeps warm for the runs it launches
(checks/gx_service.py): every launched run is served by the same service, with the verdict it
would compute itself, and that process ends with the code server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from test_check_scope import LAYER, _cfg
from test_gx_worker import layer_with_a_critical_failure

from dataset_platform.checks import gx_service
from dataset_platform.checks.suite_check import run_suite_check

HERE = os.path.dirname(os.path.abspath(__file__))


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:  # (a zombie is not alive)
        return f.read().split(") ", 1)[1][0] != "Z"


def test_launched_runs_share_the_code_servers_worker_which_ends_with_it(tmp_path):
    wd, suite = layer_with_a_critical_failure(tmp_path)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    for name in (gx_service.ADDRESS_ENV, gx_service.KEY_ENV):
        env.pop(name, None)
    host = subprocess.Popen([sys.executable, os.path.join(HERE, "gx_service_host.py"), str(wd.root), str(suite)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [json.loads(host.stdout.readline()) for _ in range(4)]
    finally:
        host.kill()
        host.wait()
    started, first, wrong_key, second = lines
    service = started["service"]

    local = run_suite_check(_cfg(), wd, LAYER, suite)
    gx_processes = set()
    for run in (first, second):
        assert run["exitcode"] == 0
        assert run["served_by"] != run["me"]  # the code server's worker, not one of its own:
        assert run["served_from"] == service  # one of its service's GX processes
        gx_processes.add(run["served_by"])
        assert run["children"] == []  # it started no worker process
        assert run["rows_validated"] == local.rows_validated == 200
        assert run["critical_passed"] is local.outcome.critical_passed is False
        assert run["raised"] == "invalid literal for int() with base 10: 'not a number'"  # errors come back
    assert wrong_key == {"wrong_key": "AuthenticationError"}  # a process without the key is refused...
    # ... and the service still served the next run (above); killed with its code server, it ends
    deadline = time.monotonic() + 10
    while (_alive(service) or any(map(_alive, gx_processes))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(service) and not any(map(_alive, gx_processes))  # its GX processes with it
    folder = Path(started["address"]).parent
    deadline = time.monotonic() + 5
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert folder.name.startswith("dataset-platform-gx-") and not folder.exists()  # and its private folder


def test_without_a_reachable_service_a_run_uses_a_worker_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv(gx_service.ADDRESS_ENV, str(tmp_path / "gone.sock"))
    monkeypatch.setenv(gx_service.KEY_ENV, os.urandom(32).hex())
    assert gx_service.connect() is None
    monkeypatch.delenv(gx_service.ADDRESS_ENV)
    assert gx_service.connect() is None


def test_only_a_code_server_process_starts_the_service(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dagster", "api", "grpc", "--lazy-load-user-code"])
    assert gx_service.is_code_server()
    for argv in (["/venv/bin/dataset-platform", "run"], ["/venv/bin/dagster", "dev"], ["pytest"]):
        monkeypatch.setattr(sys, "argv", argv)
        assert not gx_service.is_code_server()
