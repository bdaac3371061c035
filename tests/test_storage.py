"""storage: the shared in-memory database behind ``query_connection``."""

from __future__ import annotations

import os
import threading

import duckdb
import pytest

from dataset_platform import storage
from dataset_platform.storage import query_connection


def test_query_connections_share_one_database_and_keep_their_temporary_objects():
    a, b = query_connection(), query_connection()
    try:
        a.sql("CREATE TEMP TABLE _mine AS SELECT 1 AS x")
        b.sql("CREATE TEMP TABLE _mine AS SELECT 2 AS x")  # (the same name: each cursor has its own)
        assert a.sql("SELECT x FROM _mine").fetchall() == [(1,)]
        assert b.sql("SELECT x FROM _mine").fetchall() == [(2,)]
        a.register("_arrow", duckdb.sql("SELECT 3 AS y").arrow())
        with pytest.raises(duckdb.CatalogException):
            b.sql("SELECT * FROM _arrow").fetchall()
        assert len(storage._SHARED) == 1
    finally:
        a.close()
    # the closed cursor's temporary table is gone; the other cursor still works
    assert b.sql("SELECT x FROM _mine").fetchall() == [(2,)]
    b.close()
    c = query_connection()
    try:
        assert c.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_mine'").fetchall() == [(0,)]
        assert c.sql("SELECT current_setting('preserve_insertion_order')").fetchall() == [(True,)]
    finally:
        c.close()


def test_query_connections_from_threads_at_once(tmp_path):
    path = tmp_path / "n.parquet"
    with query_connection() as con:
        con.sql(f"COPY (SELECT range AS n FROM range(100000)) TO '{path}' (FORMAT parquet)")
    sums, errors = [], []

    def read():
        try:
            with query_connection() as con:
                sums.append(con.sql(f"SELECT sum(n) FROM read_parquet('{path}')").fetchall()[0][0])
        except Exception as e:  # (reported below)
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sums == [sum(range(100000))] * 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_database():
    parent = query_connection()
    parent.sql("CREATE OR REPLACE TABLE _parent_marker AS SELECT 1 AS x")  # (persistent: seen by the parent's cursors)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's database is not used here
            try:
                with query_connection() as con:
                    seen = con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_parent_marker'")
                    os.write(w, str(seen.fetchall()[0][0]).encode())
            finally:
                os._exit(0)
        os.close(w)
        got = os.read(r, 16).decode()
        os.close(r)
        os.waitpid(pid, 0)
        assert got == "0"
        with query_connection() as con:  # the parent's own database is still there
            assert con.sql("SELECT x FROM _parent_marker").fetchall() == [(1,)]
    finally:
        parent.sql("DROP TABLE _parent_marker")
        parent.close()
