"""The raw layer's loader: crawl_log per batch, per-source partitions, snapshot vs accumulate, idempotence.

Batches are written here in the landed format (dataset_platform/contracts/records.py) so every merge rule can be
exercised exactly; the crawler and the ingester have their own tests that produce such batches.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest

from dataset_platform.contracts.records import LANDED_FIELDS
from dataset_platform.ingest.load import (
    Batch,
    ingest_pending,
    is_crawl_batch,
    known_pages,
    pending_batches,
)
from dataset_platform.storage import Workdir, memory_connection, read_layer


def rec(url: str, outcome: str = "fetched", body: str | None = None, **kw) -> dict:
    r = dict.fromkeys(LANDED_FIELDS)
    r.update(url=url, fetch_url=url, outcome=outcome, fetched_at="2026-11-01T10:00:00.000000Z")
    if outcome == "fetched":
        html = body if body is not None else f"<html><body><p>{url}</p></body></html>"
        r.update(status=200, content_type="text/html", charset="utf-8", html=html, body_bytes=len(html.encode()),
                 content_hash=hashlib.md5(html.encode()).hexdigest(), etag=f'"{hashlib.md5(html.encode()).hexdigest()[:8]}"',
                 depth=0)
    r.update(kw)
    return r


_clock = [1_800_000_000_000_000_000]


def land(wd: Workdir, source: str, crawl_id: str, records: list[dict]) -> Path:
    p = wd.raw_batches(source) / f"{crawl_id}.jsonl.gz"
    p.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")
    _clock[0] += 1_000_000_000  # landing order = mtime order
    os.utime(p, ns=(_clock[0], _clock[0]))
    return p


def land_parquet(wd: Workdir, source: str, crawl_id: str, records: list[dict]) -> Path:
    """The same records as a Parquet batch (the format ingest_file lands for dump files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_platform.ingest.batchfile import batch_schema

    p = wd.raw_batches(source) / f"{crawl_id}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=batch_schema()), p)
    _clock[0] += 1_000_000_000
    os.utime(p, ns=(_clock[0], _clock[0]))
    return p


def load(wd: Workdir, source: str) -> dict:
    con = memory_connection()
    try:
        return ingest_pending(con, wd, source)
    finally:
        con.close()


def rows(wd: Workdir, layer: str, where: str = "true", cols: str = "url, crawl_id") -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT {cols} FROM {read_layer(wd, layer)} WHERE {where} ORDER BY ALL").fetchall()
    finally:
        con.close()


@pytest.fixture()
def wd(tmp_path) -> Workdir:
    return Workdir.at(tmp_path / "wd").ensure()


C1, C2, C3 = "site-20261101T100000000000Z", "site-20261102T100000000000Z", "site-20261103T100000000000Z"


def test_batch_kinds_are_told_apart_by_their_id():
    assert is_crawl_batch(Batch("site", C1, Path("x")))
    assert not is_crawl_batch(Batch("site", "site-0123456789abcdef", Path("x")))
    assert not is_crawl_batch(Batch("site", "other-20261101T100000000000Z", Path("x")))


def test_crawl_snapshot_keeps_not_modified_bodies_and_drops_gone_pages(wd):
    a, b, c, d = (f"http://s.test/{x}" for x in "abcd")
    land(wd, "site", C1, [rec(a), rec(b), rec(c), rec("http://s.test/robots-only", "robots_disallowed")])
    first = load(wd, "site")
    assert first["outcomes"] == {"fetched": 3, "robots_disallowed": 1} and first["bodies_stored"] == 3
    assert rows(wd, "raw_pages") == [(a, C1), (b, C1), (c, C1)]

    land(wd, "site", C2, [rec(a, "not_modified", status=304), rec(b, body="<p>changed</p>"),
                          rec(c, "failed:http_404", status=404), rec(d)])
    second = load(wd, "site")
    assert second["bodies_stored"] == 2  # b changed, d new; a not stored again
    assert rows(wd, "raw_pages") == [(a, C1), (b, C2), (d, C2)]  # a keeps its first body; c is gone
    assert rows(wd, "raw_pages", f"url = '{b}'", "html") == [("<p>changed</p>",)]

    land(wd, "site", C3, [rec(a, "failed:timeout"), rec(b, "not_modified"), rec(d, "not_modified")])
    load(wd, "site")
    assert rows(wd, "raw_pages") == [(a, C1), (b, C2), (d, C2)]  # a transient failure keeps the last good copy

    log = rows(wd, "crawl_log", cols="crawl_id, url, outcome")
    assert len(log) == 4 + 4 + 3  # every record of every batch, once
    assert (C2, c, "failed:http_404") in log and (C1, "http://s.test/robots-only", "robots_disallowed") in log


def test_reloading_a_batch_never_duplicates_rows(wd):
    land(wd, "site", C1, [rec(f"http://s.test/{i}") for i in range(5)])
    load(wd, "site")
    (part,) = wd.layer_files("raw_pages")  # one batch: one part
    assert part.parent.name == C1
    before = part.read_bytes(), wd.crawl_log_file("site", C1).read_bytes()
    assert pending_batches(wd, "site") == []
    assert load(wd, "site")["batches"] == []  # merged once
    (wd.raw_source("site") / "manifest.json").unlink()  # lose the record of it: the batch is merged again...
    assert load(wd, "site")["batches"] == [C1]
    assert (part.read_bytes(), wd.crawl_log_file("site", C1).read_bytes()) == before  # ...to the same bytes
    assert len(rows(wd, "raw_pages")) == 5 and len(rows(wd, "crawl_log")) == 5


def test_dump_batches_accumulate_and_newer_records_replace(wd):
    f1, f2 = "dump-" + "1" * 16, "dump-" + "2" * 16
    land(wd, "dump", f1, [rec("jsonl://a.jsonl/1", text="one", html=None, content_type="text/plain"),
                          rec("jsonl://a.jsonl/2", text="two", html=None, content_type="text/plain"),
                          rec("jsonl://a.jsonl/3", "failed:bad_json", detail="a.jsonl:3: Expecting value")])
    land(wd, "dump", f2, [rec("jsonl://a.jsonl/2", text="two, revised", html=None, content_type="text/plain",
                              fetched_at="2026-11-02T10:00:00.000000Z"),
                          rec("https://x.test/new", text="three", html=None, content_type="text/plain")])
    load(wd, "dump")
    assert rows(wd, "raw_pages", cols="url, text") == [
        ("https://x.test/new", "three"), ("jsonl://a.jsonl/1", "one"), ("jsonl://a.jsonl/2", "two, revised")]
    assert rows(wd, "crawl_log", "outcome LIKE 'failed:%'", "url, detail") == [("jsonl://a.jsonl/3", "a.jsonl:3: Expecting value")]


def test_a_url_twice_in_one_dump_keeps_the_newest_record(wd):
    fid = "dump-" + "3" * 16
    land(wd, "dump", fid, [rec("https://x.test/p", text="old", html=None, fetched_at="2026-01-01T00:00:00Z"),
                           rec("https://x.test/p", text="new", html=None, fetched_at="2026-02-01T00:00:00Z")])
    load(wd, "dump")
    assert rows(wd, "raw_pages", cols="text") == [("new",)]
    assert rows(wd, "crawl_log", cols="seq") == [(1,), (2,)]  # both records are in the log


def test_one_source_refreshes_without_touching_another(wd):
    land(wd, "site", C1, [rec("http://s.test/a")])
    land(wd, "other", "other-20261101T100000000000Z", [rec("http://o.test/a")])
    load(wd, "site")
    load(wd, "other")
    other = [*wd.raw_source("other").glob("*/data.parquet"), wd.raw_source("other") / "manifest.json"]
    st = [f.stat().st_mtime_ns for f in other]
    land(wd, "site", C2, [rec("http://s.test/b")])
    load(wd, "site")
    assert [f.stat().st_mtime_ns for f in other] == st
    assert rows(wd, "raw_pages", cols="source, url") == [("other", "http://o.test/a"), ("site", "http://s.test/b")]


def test_known_pages_carry_the_validators_for_conditional_requests(wd):
    land(wd, "site", C1, [rec("http://demo.test/a"), rec("http://elsewhere.test/b")])
    load(wd, "site")
    out = wd.root / "known.jsonl.gz"
    con = memory_connection()
    n = known_pages(con, wd, "site", out, url_rewrite=("http://demo.test", "http://127.0.0.1:8123"))
    con.close()
    with gzip.open(out, "rt") as f:
        lines = [json.loads(x) for x in f]
    assert n == 2 and {x["url"] for x in lines} == {"http://127.0.0.1:8123/a", "http://elsewhere.test/b"}
    assert all(x["etag"] and len(x["content_hash"]) == 32 for x in lines)


def test_a_batch_in_an_old_format_is_refused_with_what_to_do(wd):
    p = wd.raw_batches("site") / f"{C1}.jsonl.gz"
    p.parent.mkdir(parents=True)
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"url": "http://s.test/a", "status": 200, "html": "<p>x</p>"}) + "\n")
    with pytest.raises(ValueError, match="without url or outcome.*delete it or re-land it"):
        load(wd, "site")


def test_parquet_and_jsonl_batches_load_alike_in_landing_order(wd):
    land(wd, "site", C1, [rec("http://s.test/a"), rec("http://s.test/b")])
    land_parquet(wd, "site", C2, [rec("http://s.test/a", "not_modified"), rec("http://s.test/c")])
    land_parquet(wd, "site", C1, [rec("http://s.test/x")])  # the same batch id again: one batch
    assert [(b.crawl_id, b.path.name) for b in pending_batches(wd, "site")] == [
        (C1, f"{C1}.jsonl.gz"), (C2, f"{C2}.parquet")]
    out = load(wd, "site")
    assert out["batches"] == [C1, C2] and pending_batches(wd, "site") == []
    # the newest crawl (a Parquet batch) is the snapshot: a kept, b gone, c new
    assert rows(wd, "raw_pages") == [("http://s.test/a", C1), ("http://s.test/c", C2)]
    assert rows(wd, "crawl_log", cols="crawl_id, seq, url, outcome") == [
        (C1, 1, "http://s.test/a", "fetched"), (C1, 2, "http://s.test/b", "fetched"),
        (C2, 1, "http://s.test/a", "not_modified"), (C2, 2, "http://s.test/c", "fetched")]


def test_a_batch_of_several_parts_is_merged_by_tasks_with_the_bytes_of_a_merge_here(tmp_path, monkeypatch):
    """A batch cut into several parts is scattered by part, then each part sorted and written by a
    task of its own (``load.write_fresh_parts``): on worker processes the files and the manifest
    are those of the tasks run here one after another, and every page is in exactly one part."""
    from contextlib import contextmanager

    from dataset_platform.cluster import runners
    from dataset_platform.stages.base import CPUS_ENV

    records = [rec(f"http://s.test/{i}", body=f"<html><body><p>page {i} " + "word " * (i % 17) + "</p></body></html>")
               for i in range(230)]
    records.append(rec("http://s.test/3", body="<html><body><p>page 3 again, newer</p></body></html>",
                       fetched_at="2026-12-01T00:00:00.000000Z"))  # (a URL twice: the newer record is stored)
    places: list[str] = []
    real = runners.map_runner

    @contextmanager
    def watched(*args, **kwargs):
        with real(*args, **kwargs) as (run, where):
            places.append(str(where))
            yield run, where

    monkeypatch.setattr(runners, "map_runner", watched)
    trees = {}
    for cpus, pool_bytes in (("1", runners.POOL_BYTES), ("2", 0)):
        monkeypatch.setenv(CPUS_ENV, cpus)
        monkeypatch.setattr(runners, "POOL_BYTES", pool_bytes)  # (0: the small batch pays for workers)
        wd = Workdir.at(tmp_path / f"wd{cpus}").ensure()
        land(wd, "site", C1, records)
        places.clear()
        con = memory_connection()
        try:
            ingest_pending(con, wd, "site", part_rows=50)
        finally:
            con.close()
        root = wd.raw_source("site")
        trees[cpus] = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                       if p.is_file() and p.name != ".lock"}
        assert sum(1 for k in trees[cpus] if k.endswith("data.parquet")) == 5  # 230 pages, 50 a part
        assert places == (["local"] if cpus == "1" else ["local, 2 processes"])
        assert rows(wd, "raw_pages", cols="count(*), count(DISTINCT id)") == [(230, 230)]
        assert rows(wd, "raw_pages", cols="html", where="url = 'http://s.test/3'") == [
            ("<html><body><p>page 3 again, newer</p></body></html>",)]
        assert not wd.spill("raw").exists() or not any(wd.spill("raw").iterdir())  # (its scratch files gone)
    assert trees["1"] == trees["2"]
