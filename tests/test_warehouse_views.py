"""Warehouse views (storage.ensure_view): created once, not looked up again while the file is as
this process left it, and created again once another process changed it."""

from __future__ import annotations

import subprocess
import sys

import duckdb

from dataset_platform.storage import ensure_view
from dataset_platform.workdir import Workdir

HOLD = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.sql(sys.argv[2])
print("holding", flush=True)
sys.stdin.readline()
con.close()
"""


def _holding(path, sql: str) -> subprocess.Popen:
    """Another process that ran ``sql`` on the warehouse and keeps it open (and locked)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), sql], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "holding"
    return p


def _views(path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()


def test_a_view_is_looked_up_once_while_the_file_is_unchanged(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    assert ensure_view(wd, "layer_a", "(SELECT 1 AS x)")
    assert "layer_a" in _views(wd.warehouse)
    other = _holding(wd.warehouse, "SELECT 1")  # the file is locked by another process now
    try:
        # known and unchanged: no need to open the file (which would wait for the lock)
        assert ensure_view(wd, "layer_a", "(SELECT 1 AS x)", wait_s=0)
        assert not ensure_view(wd, "layer_b", "(SELECT 2 AS x)", wait_s=0)  # a new view must wait
    finally:
        other.communicate("\n")
    other = _holding(wd.warehouse, "DROP VIEW layer_a")  # someone drops it
    other.communicate("\n")
    assert ensure_view(wd, "layer_a", "(SELECT 1 AS x)")  # the file changed: looked up, created again
    assert "layer_a" in _views(wd.warehouse)
