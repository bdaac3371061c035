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


#: a code server's part: start the service in a temporary folder of the test's, say where, wait
A_CODE_SERVER = """
import sys, time
from dataset_platform.checks import gx_service
print(gx_service.serve(), flush=True)
time.sleep(300)
"""


def _code_server(tmp: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    for name in (gx_service.ADDRESS_ENV, gx_service.KEY_ENV):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-c", A_CODE_SERVER], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    return proc, Path(proc.stdout.readline().strip()).parent


def _gone(folder: Path, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not folder.exists()


def test_a_service_stopped_with_its_process_group_deletes_its_folder(private_tmp):
    """Ctrl-C in ``dagster dev``, or a service manager stopping the group: the signal reaches the
    service itself, before its code server has ended."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        proc, folder = _code_server(private_tmp)
        try:
            assert folder.name.startswith(gx_service.PRIVATE_PREFIX) and (folder / "gx.sock").exists()
            os.killpg(proc.pid, sig)
            assert _gone(folder), f"{signal.Signals(sig).name}: the service left {sorted(folder.iterdir())}"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_the_folder_of_a_killed_service_is_swept_when_the_next_one_starts(private_tmp, monkeypatch):
    import signal

    killed_proc, killed = _code_server(private_tmp)
    os.killpg(killed_proc.pid, signal.SIGKILL)  # (nothing of the group can clean up)
    killed_proc.wait()
    time.sleep(0.5)
    assert (killed / "gx.key").exists()  # what SIGKILL leaves
    live_proc, live = _code_server(private_tmp)
    try:
        young = private_tmp / f"{gx_service.PRIVATE_PREFIX}starting"  # a service being started now
        young.mkdir(mode=0o700)
        monkeypatch.setattr("tempfile.tempdir", str(private_tmp))
        assert gx_service.sweep_private() == []  # every folder is younger than STALE_AFTER
        old = time.time() - gx_service.STALE_AFTER - 1
        for folder in (killed, live):
            os.utime(folder, (old, old))
        assert gx_service.sweep_private() == [killed]  # the live service answers: it keeps its folder
        assert not killed.exists() and (live / "gx.sock").exists() and young.exists()
        # and the code server's start sweeps (its own folder is young, so it is the only one kept)
        os.utime(young, (old, old))
        again_proc, again = _code_server(private_tmp)
        try:
            assert _gone(young) and again.exists() and live.exists()
        finally:
            os.killpg(again_proc.pid, signal.SIGKILL)
            again_proc.wait()
    finally:
        os.killpg(live_proc.pid, signal.SIGKILL)
        live_proc.wait()
