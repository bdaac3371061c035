"""The GX services a test started, found by their command line (Linux /proc), and a short
private temporary folder to start them in (tests/test_gx_daemon.py, tests/test_gx_service.py)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def private_tmp():
    """A short temporary folder of the test's own (a Unix socket's address is at most 108 bytes);
    every service started under it is stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="dpgx-t", dir="/tmp"))
    yield folder
    for pid in gx_services_under(folder):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def gx_services_under(tmp: Path) -> list[int]:
    """The pids of the services listening under ``tmp`` (by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dataset_platform.checks.gx_service" in cmd and any(str(tmp).encode() in c for c in cmd):
            pids.append(int(entry.name))
    return pids


