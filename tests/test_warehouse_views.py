"""Warehouse views (storage.ensure_view): published once, by a new file renamed over the old one;
published again when someone changed the file; never waiting on a reader."""

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


def test_a_view_is_published_once_and_again_when_someone_dropped_it(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    ensure_view(wd, "layer_a", "(SELECT 1 AS x)")
    assert "layer_a" in _views(wd.warehouse)
    before = wd.warehouse.stat().st_ino
    ensure_view(wd, "layer_a", "(SELECT 1 AS x)")  # unchanged: the file is not written again
    assert wd.warehouse.stat().st_ino == before
    other = _holding(wd.warehouse, "DROP VIEW layer_a")  # someone drops it by hand
    other.communicate("\n")
    ensure_view(wd, "layer_a", "(SELECT 1 AS x)")  # the file changed: written again from the list
    assert "layer_a" in _views(wd.warehouse)


def test_a_reader_holding_the_warehouse_open_never_delays_or_stales_a_publish(tmp_path):
    """Issue 19, probe 6: a read-only connection held by an analyst's notebook made a run wait
    740 s, report success and leave the views pointing at the previous release. Now the views are
    published at once; the reader keeps the views it had, a new connection sees the new ones."""
    import time

    wd = Workdir.at(tmp_path / "wd").ensure()
    ensure_view(wd, "release", "(SELECT 'v1' AS version)")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(wd.warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "v1"  # it holds the file open, read-only
        t0 = time.monotonic()
        ensure_view(wd, "release", "(SELECT 'v2' AS version)", wait_s=0)
        ensure_view(wd, "other", "(SELECT 3 AS x)", wait_s=0)
        assert time.monotonic() - t0 < 5  # (it used to wait 60 s a view, then give up)
        con = duckdb.connect(str(wd.warehouse), read_only=True)
        try:
            assert con.sql("SELECT version FROM release").fetchall() == [("v2",)]
            assert con.sql("SELECT x FROM other").fetchall() == [(3,)]
        finally:
            con.close()
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "v1"  # the open connection still reads what it opened
    finally:
        reader.communicate("\n")


READER = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.sql("SELECT version FROM release").fetchall()[0][0], flush=True)
sys.stdin.readline()
print(con.sql("SELECT version FROM release").fetchall()[0][0], flush=True)
sys.stdin.readline()
con.close()
"""
