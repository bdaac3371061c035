"""The GX service that ``dataset-platform run`` keeps warm between its runs (checks/gx_service.py,
``daemon``): the next run of the same code is served by it, with the verdict it would compute
itself; other code gets a service of its own; it ends when idle; turned off, there is none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from gx_processes import gx_services_under as _services
from test_check_scope import LAYER, _cfg
from test_gx_service import _alive, _parent
from test_gx_worker import layer_with_a_critical_failure

from dataset_platform.checks import gx_service
from dataset_platform.checks.suite_check import run_suite_check

HERE = Path(__file__).resolve().parent

#: one run of the CLI's kind: find (or start) the service, validate, say who served it
A_RUN = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from gx_processes import gx_services_under as _services
from test_check_scope import LAYER, _cfg
from dataset_platform.checks import gx_service, gx_worker
from dataset_platform.workdir import Workdir
address = gx_service.daemon()
checked = gx_worker.suite_check(_cfg(), Workdir.at(sys.argv[1]), LAYER, Path(sys.argv[2]))
served_by = gx_worker._pool().submit(os.getpid).result()
service = gx_worker._pool().submit(os.getppid).result()
print(json.dumps({"address": address, "me": os.getpid(), "served_by": served_by, "service": service,
                  "rows_validated": checked.rows_validated,
                  "critical_passed": checked.outcome.critical_passed}))
gx_worker.shutdown()
"""


def _run(tmp: Path, wd, suite, **env: str) -> dict:
    full = {**os.environ, "TMPDIR": str(tmp), gx_service.IDLE_ENV: "30", **env}
    for name in (gx_service.ADDRESS_ENV, gx_service.KEY_ENV):
        full.pop(name, None)
    r = subprocess.run([sys.executable, "-c", A_RUN, str(wd.root), str(suite), str(HERE)],
                       capture_output=True, text=True, timeout=300, env=full)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_next_run_of_the_same_code_is_served_warm_and_other_code_gets_its_own(tmp_path, private_tmp):
    wd, suite = layer_with_a_critical_failure(tmp_path)
    local = run_suite_check(_cfg(), wd, LAYER, suite)

    first = _run(private_tmp, wd, suite)
    t = time.perf_counter()
    second = _run(private_tmp, wd, suite)
    second_s = time.perf_counter() - t
    for run in (first, second):
        assert run["served_by"] != run["me"]  # not on the run's own process...
        assert run["rows_validated"] == local.rows_validated == 200  # ... with the verdict it gives itself
        assert run["critical_passed"] is local.outcome.critical_passed is False
        assert _parent(run["served_by"]) == run["service"]  # on a GX process of the service
    assert second["service"] == first["service"]  # the same service, still there after the first run
    assert _alive(first["service"]) and _services(private_tmp) == [first["service"]]
    folder = Path(first["address"]).parent
    assert folder == private_tmp / f"dpgx-{os.getuid()}"
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert os.stat(folder / Path(first["address"]).with_suffix(".key").name).st_mode & 0o777 == 0o600
    assert second_s < 30  # (no wait for a service that does not answer)

    # another setting is other code: a service of its own; the first one still serves its code
    other = _run(private_tmp, wd, suite, DATASET_PLATFORM_TEST_SETTING="x")
    assert other["service"] != first["service"] and other["address"] != first["address"]
    assert _run(private_tmp, wd, suite)["service"] == first["service"]


def test_a_service_ends_when_idle_and_a_later_run_starts_a_new_one(tmp_path, private_tmp):
    wd, suite = layer_with_a_critical_failure(tmp_path)
    first = _run(private_tmp, wd, suite, **{gx_service.IDLE_ENV: "1"})
    deadline = time.monotonic() + 20
    while (_alive(first["service"]) or _alive(first["served_by"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(first["service"]) and not _alive(first["served_by"])  # its GX processes with it
    assert not Path(first["address"]).exists()  # its address and key are removed with it
    assert not Path(first["address"]).with_suffix(".key").exists()
    assert not Path(first["address"]).with_suffix(".log").exists()
    again = _run(private_tmp, wd, suite, **{gx_service.IDLE_ENV: "1"})
    assert again["service"] != first["service"] and again["rows_validated"] == 200


def test_files_a_killed_service_left_are_swept_when_a_service_for_other_code_starts(tmp_path, private_tmp):
    import fcntl

    wd, suite = layer_with_a_critical_failure(tmp_path)
    live = _run(private_tmp, wd, suite, DATASET_PLATFORM_TEST_SETTING="live")
    killed = _run(private_tmp, wd, suite, DATASET_PLATFORM_TEST_SETTING="old")
    os.kill(killed["service"], signal.SIGKILL)  # (as a machine's restart leaves them)
    deadline = time.monotonic() + 20
    while (_alive(killed["service"]) or _alive(killed["served_by"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = Path(killed["address"])
    folder = left.parent
    assert [p.suffix for p in sorted(folder.glob(f"{left.stem}.*"))] == [".key", ".lock", ".log", ".sock"]
    busy = folder / "0123456789abcdef.lock"  # a service being started for other code: its lock is held
    with open(busy, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        new = _run(private_tmp, wd, suite)  # a service for this code starts: the sweep
        assert busy.exists()
    assert new["service"] not in (killed["service"], live["service"])
    assert list(folder.glob(f"{left.stem}.*")) == []  # the killed one's address, key, log and lock
    assert _has_files(folder, live["address"]) and _alive(live["service"])  # a live one keeps its files
    assert _has_files(folder, new["address"])


def _has_files(folder: Path, address: str) -> bool:
    stem = Path(address).stem
    return all((folder / f"{stem}{s}").exists() for s in (".sock", ".key", ".lock"))


def test_turned_off_no_service_is_started_and_the_run_uses_its_own_worker(tmp_path, private_tmp):
    wd, suite = layer_with_a_critical_failure(tmp_path)
    run = _run(private_tmp, wd, suite, **{gx_service.IDLE_ENV: "0"})
    assert run["address"] is None and run["served_by"] != run["me"] and run["rows_validated"] == 200
    assert _services(private_tmp) == [] and not (private_tmp / f"dpgx-{os.getuid()}").exists()


def test_a_bad_idle_setting_says_what_to_give(monkeypatch):
    monkeypatch.setenv(gx_service.IDLE_ENV, "soon")
    with pytest.raises(ValueError, match="DATASET_PLATFORM_GX_IDLE='soon': give the seconds"):
        gx_service.idle_seconds()
    monkeypatch.delenv(gx_service.IDLE_ENV)
    assert gx_service.idle_seconds() == gx_service.DEFAULT_IDLE


def test_a_folder_that_others_can_enter_is_not_used(monkeypatch, private_tmp):
    shared = private_tmp / f"dpgx-{os.getuid()}"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # (read TMPDIR again)
    monkeypatch.setenv(gx_service.IDLE_ENV, "30")
    monkeypatch.delenv(gx_service.ADDRESS_ENV, raising=False)
    assert gx_service.daemon() is None
    assert list(shared.iterdir()) == []


def test_the_same_interpreter_by_another_name_is_the_same_code(tmp_path):
    """`python3` and `python3.11` (the CLI's entry script) are one interpreter: one service."""
    link = tmp_path / "python-by-another-name"
    link.symlink_to(os.path.realpath(sys.executable))
    code = "from dataset_platform.checks import gx_service; print(gx_service.fingerprint())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATASET_PLATFORM_GX")}
    prints = {subprocess.run([exe, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
              for exe in (sys.executable, str(link))}
    assert len(prints) == 1 and len(next(iter(prints))) == 16


def test_a_run_has_two_calls_in_flight_on_the_service(private_tmp, monkeypatch):
    """Two calls at once run side by side, on two GX processes: the first waits for a file that
    only the second creates (one after the other, the first would time out)."""
    import concurrent.futures

    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv(gx_service.IDLE_ENV, "30")
    for name in (gx_service.ADDRESS_ENV, gx_service.KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    assert gx_service.daemon() is not None
    pool = gx_service.connect()
    flag = private_tmp / "flag"
    try:
        waiting = pool.submit(subprocess.run, ["sh", "-c", f"until [ -e {flag} ]; do sleep 0.05; done"],
                              timeout=60, check=True)
        creating = pool.submit(subprocess.run, ["touch", str(flag)], check=True)
        done, _ = concurrent.futures.wait([waiting, creating], timeout=90)
        assert len(done) == 2 and waiting.result().returncode == 0 and creating.result().returncode == 0
        assert pool.submit(os.getppid).result() in _services(private_tmp)
    finally:
        pool.shutdown()
