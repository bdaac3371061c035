"""Warehouse views (storage.ensure_view): published once, by a new file renamed over the old one;
published again when someone changed the file; never waiting on a reader."""

from __future__ import annotations

import os
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


# ---------------------------------------------------------------- views relative to the work folder

PLAIN = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
if sys.argv[2]:
    con.sql(sys.argv[2])
out = {}
for (v,) in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall():
    try:
        out[v] = con.sql(f"SELECT count(*) FROM {v}").fetchall()[0][0]
    except duckdb.Error as e:
        out[v] = type(e).__name__
print(json.dumps(out))
"""


def _plain_counts(warehouse, setting: str = "", cwd=None) -> dict:
    """Every view's row count, read by a plain DuckDB connection in another process (nothing of
    the platform imported), after ``setting``, from the folder ``cwd``."""
    import json

    out = subprocess.run([sys.executable, "-c", PLAIN, str(warehouse), setting], cwd=cwd, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def _counts(wd: Workdir) -> dict:
    from dataset_platform.storage import warehouse_connection

    con = warehouse_connection(wd)
    try:
        names = [v for (v,) in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
        return {v: con.sql(f"SELECT count(*) FROM {v}").fetchall()[0][0] for v in names}
    finally:
        con.close()


def test_a_moved_work_folder_keeps_every_view_working(tmp_path):
    """Issue 20: the views held absolute paths, so a moved (or differently mounted) work folder
    broke them. They are relative to the work folder now: the platform's connection sets DuckDB's
    file_search_path to it; a user does the same, or opens the warehouse from inside the folder."""
    import random

    from graphkit import TOPICS, config, crawl_record, document, land_crawl, page, refresh, write_jsonl

    rng = random.Random(7)
    first = tmp_path / "first"
    wd = Workdir.at(first / "wd").ensure()
    cfg = config(first)
    write_jsonl(wd.inbox("news") / "drop.jsonl", [
        {"url": f"https://news.test/{i}", "title": f"Story {i}", "text": document(rng, sorted(TOPICS)[i % 3])}
        for i in range(40)] + [{"url": "https://news.test/short", "title": "Short", "text": "Too short."}])
    land_crawl(wd, "site", "20270101T000000", [
        crawl_record(f"http://site.test/p{i}", html=page(f"Page {i}", document(rng, "garden"))) for i in range(10)]
        + [crawl_record("http://site.test/gone", "failed:http_404", status=404)])
    refresh(cfg, wd)
    before = _counts(wd)
    contract = {"raw_pages", "crawl_log", "extracted_documents", "cleaned_documents", "scored_documents",
                "deduplicated_documents",
                "duplicate_clusters", "labelled_documents", "human_annotations", "decontaminated_documents",
                "rejected_documents", "dataset_release"}
    assert set(before) == contract and before["dataset_release"] > 0 and before["rejected_documents"] > 0
    # no path of the work folder in the views, nor in the list they are published from
    sqls = _views(wd.warehouse)
    assert all(str(wd.root) not in sql for sql in sqls.values()) and "'layers/" in sqls["raw_pages"]
    assert str(wd.root) not in (wd.root / "warehouse.views.json").read_text()

    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    os.rename(first, moved)  # the whole folder, as a user moves it
    new = Workdir.at(moved / "wd")
    assert _counts(new) == before  # through the platform's own connection
    assert _plain_counts(new.warehouse, f"SET file_search_path = '{new.root}'", cwd=tmp_path) == before
    assert _plain_counts("warehouse.duckdb", cwd=new.root) == before  # opened from inside the work folder
    # without either, the relative paths cannot be found (which is why the setting is documented)
    assert set(_plain_counts(new.warehouse, cwd=tmp_path).values()) >= {"IOException"}

    # the pipeline goes on in the moved folder: a new batch, every layer refreshed, views still relative
    write_jsonl(new.inbox("news") / "drop2.jsonl", [
        {"url": f"https://news.test/n{i}", "title": f"New {i}", "text": document(rng, "harbour")} for i in range(5)])
    refresh(config(moved), new)
    after = _counts(new)
    assert after["raw_pages"] == before["raw_pages"] + 5
    assert all(str(new.root) not in sql for sql in _views(new.warehouse).values())
    assert _plain_counts(new.warehouse, f"SET file_search_path = '{new.root}'", cwd=tmp_path) == after


def test_a_warehouse_with_absolute_views_is_rewritten_relative(tmp_path):
    """A warehouse published before the views were relative: the next publish rewrites them all."""
    from dataset_platform.storage import relative_to_workdir, sql_str

    wd = Workdir.at(tmp_path / "wd").ensure()
    f = wd.layers / "a" / "data.parquet"
    f.parent.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 1 AS x) TO {sql_str(f)} (FORMAT parquet)")
    con = duckdb.connect(str(wd.warehouse))
    con.sql(f"CREATE VIEW old_a AS SELECT * FROM read_parquet({sql_str(f)})")  # as an older version wrote it
    con.close()
    ensure_view(wd, "b", f"read_parquet({sql_str(f)})")
    views = _views(wd.warehouse)
    assert set(views) == {"old_a", "b"} and all(str(wd.root) not in sql for sql in views.values())
    assert relative_to_workdir(wd, f"read_parquet({sql_str(f)})") == "read_parquet('layers/a/data.parquet')"
    outside = tmp_path / "other.parquet"  # a path outside the work folder stays as it is
    assert relative_to_workdir(wd, f"read_parquet({sql_str(outside)})") == f"read_parquet({sql_str(outside)})"
