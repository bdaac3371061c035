"""Ingesting files (dataset_platform/ingest/files.py): real WARC files from the shared corpus, JSONL and
Parquet files written here, and the CLI, as a user runs it.

Expectations for the corpus WARC files are read at test time from the corpus's own
``records_index.jsonl`` and ``manifest.jsonl`` (what each file holds), never pasted here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_CORPUS, shared_corpus

from dataset_platform.contracts.records import LANDED_FIELDS
from dataset_platform.ingest.files import (
    DEFAULT_FETCHED_AT,
    batch_id_for,
    ingest_file,
    kind_for_path,
    quarantine_path_for,
)
from dataset_platform.ingest.load import (
    Batch,
    batch_sql,
    ingest_pending,
    is_crawl_batch,
    load_batch,
)
from dataset_platform.storage import Workdir, memory_connection, read_layer

REPO = Path(__file__).resolve().parents[1]
HTML = ("text/html", "application/xhtml+xml")
MD5 = re.compile(r"^[0-9a-f]{32}$")
PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
URL_OK = re.compile(r"^(?:https?|warc|jsonl|parquet)://")  # the raw_pages suite's critical url rule

_WARC_DIR = SHARED_CORPUS / "warc"
# Collected from the corpus when it is there; otherwise one placeholder whose test skips (or fails in CI).
WARC_FILES = sorted(p.name for p in _WARC_DIR.glob("*.w*") if ".warc" in p.name) if _WARC_DIR.is_dir() else ["(absent)"]


def read_batch(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_outcomes(path: Path, source: str = "t") -> dict[str, int]:
    con = memory_connection()
    try:
        return load_batch(con, Batch(source, batch_id_for(path, source), path))
    finally:
        con.close()


def expected_outcome(r: dict) -> str | None:
    """What the index says a record should land as (None: not a URL record)."""
    media = (r.get("content_type") or "").split(";")[0].strip().lower()
    if r["type"] == "revisit":
        return "not_modified"
    if r["type"] == "resource":
        return "fetched" if media in HTML else "not_html"
    if r["type"] != "response":
        return None
    status = int(r["http_status"])
    if 200 <= status < 300:
        return "fetched" if media in HTML else "not_html"
    if status == 304:
        return "not_modified"
    if 300 <= status < 400:
        return "redirected"
    return f"failed:http_{status}"


def corpus_index(folder: Path, name: str) -> tuple[list[dict], dict]:
    with open(folder / "records_index.jsonl", encoding="utf-8") as f:
        index = [r for r in map(json.loads, f) if r["file"] == name]
    with open(folder / "manifest.jsonl", encoding="utf-8") as f:
        manifest = next(m for m in map(json.loads, f) if m["file"] == name)
    return index, manifest


# ----------------------------------------------------------------------------- the corpus WARC files


@pytest.mark.parametrize("name", WARC_FILES)
def test_corpus_warc_lands_as_its_index_predicts(name, tmp_path):
    folder = shared_corpus("warc")
    path = folder / name
    index, manifest = corpus_index(folder, name)
    assert index, f"{name} is not in records_index.jsonl"
    truncated = "truncated" in manifest["description"].lower()

    out = tmp_path / "batch.jsonl.gz"
    summary = ingest_file(path, source="corpus", kind=kind_for_path(path), output_path=out)
    recs = read_batch(out)
    assert all(list(r) == sorted(LANDED_FIELDS) for r in recs)
    assert summary.records == len(recs)
    assert summary.outcomes == dict(Counter(r["outcome"] for r in recs))
    assert summary.bytes_read == path.stat().st_size

    url_records = [r for r in index if expected_outcome(r)]
    expected = [(r["uri"], expected_outcome(r)) for r in url_records]
    corrupt = [r for r in recs if r["outcome"] == "failed:corrupt_file"]
    landed = [r for r in recs if r["outcome"] != "failed:corrupt_file"]
    if truncated:
        # every record before the break, then one record saying where and how the file broke
        assert len(corrupt) == 1 and recs[-1] is corrupt[0]
        assert re.fullmatch(rf"warc://{re.escape(name)}#offset=\d+", corrupt[0]["url"])
        assert "cut short" in corrupt[0]["detail"] and corrupt[0]["fetched_at"] == DEFAULT_FETCHED_AT
        assert summary.errors and name in summary.errors[0]
        expected, url_records = expected[:-1], url_records[:-1]  # the record the file broke in
    else:
        assert not corrupt and not summary.errors
    assert [(r["url"], r["outcome"]) for r in landed] == expected
    assert Counter(r["outcome"] for r in landed) == Counter(o for _, o in expected)

    # the records that are not URLs are counted by WARC type
    assert sum(summary.skipped.values()) + len(url_records) + (1 if truncated else 0) == len(index)
    assert summary.skipped == dict(Counter(r["type"] for r in index if not expected_outcome(r)))
    if name.endswith((".wat.gz", ".wet.gz")):
        assert recs == [] and summary.skipped.get("warcinfo", 0) >= 1
        assert set(summary.skipped) - {"warcinfo"} == ({"metadata"} if ".wat" in name else {"conversion"})

    for r, ix in zip(landed, url_records, strict=True):
        assert URL_OK.match(r["url"]) and r["fetch_url"] == r["url"]
        if PLAIN_DATE.match(ix["date"]):
            assert r["fetched_at"] == ix["date"]
        else:  # e.g. ClueWeb's "YYYY-MM-DDDThh:mm:ss-zzzz" (day of the year): read, not replaced
            assert datetime.fromisoformat(r["fetched_at"]).year == int(ix["date"][:4])
            assert r["fetched_at"] != DEFAULT_FETCHED_AT
        if ix["type"] in ("response", "revisit") and ix.get("http_status"):
            assert r["status"] == int(ix["http_status"])
        if r["outcome"] in ("fetched", "not_html"):
            assert MD5.match(r["content_hash"]) and r["body_bytes"] >= 0
            headers = json.loads(r["headers"]) if r["headers"] else {}
            assert "set-cookie" not in headers and all(k == k.lower() for k in headers)
            if "content-encoding" not in headers:  # payload as stored (de-chunked)
                assert r["body_bytes"] == ix["payload_bytes"]
            else:  # decompressed, or stored decompressed already (the header kept): not smaller
                assert r["body_bytes"] >= ix["payload_bytes"]
        if r["outcome"] == "fetched":
            assert isinstance(r["html"], str) and r["html"].strip() and r["charset"]
            assert r["content_type"] in HTML and r["text"] is None
        else:
            assert r["html"] is None
        if r["outcome"] == "redirected":
            assert r["detail"].startswith(("http://", "https://"))
        if r["outcome"] == "not_modified":
            assert r["detail"] and r["content_hash"] is None

    if recs:  # the loader takes the batch as it is
        assert load_outcomes(out) == summary.outcomes


def test_corpus_batches_merge_into_the_raw_layer(tmp_path):
    folder = shared_corpus("warc")
    wd = Workdir.at(tmp_path / "wd").ensure()
    fetched: set[str] = set()
    for i, name in enumerate(["cc-sample-resiliparse.warc.gz", "pywb-iana.warc.gz", "clipped-resiliparse.warc.gz"]):
        path = folder / name
        out = wd.raw_batches("cc") / f"{batch_id_for(path, 'cc')}.jsonl.gz"
        ingest_file(path, source="cc", kind="warc", output_path=out)
        os.utime(out, ns=(1_800_000_000_000_000_000 + i, 1_800_000_000_000_000_000 + i))
        fetched |= {r["url"] for r in read_batch(out) if r["outcome"] == "fetched"}
    con = memory_connection()
    try:
        counters = ingest_pending(con, wd, "cc")
    finally:
        con.close()
    assert len(counters["batches"]) == 3
    assert not any(is_crawl_batch(Batch("cc", b, Path("x"))) for b in counters["batches"])
    assert counters["outcomes"]["failed:corrupt_file"] == 1
    check = duckdb.connect()
    try:
        urls = {u for (u,) in check.sql(f"SELECT url FROM {read_layer(wd, 'raw_pages')}").fetchall()}
        bad = check.sql(
            f"SELECT count(*) FROM {read_layer(wd, 'raw_pages')} WHERE content_hash IS NULL OR html IS NULL "
            "OR fetched_at IS NULL OR NOT regexp_matches(url, '^https?://')"
        ).fetchall()[0][0]
    finally:
        check.close()
    assert urls == fetched and bad == 0


# ----------------------------------------------------------------------------- WARC cases written here


def _write_warc(path: Path, records: list[tuple], gzip_it: bool = True) -> list[int]:
    """records: (type, uri, status line or None, headers, body bytes); returns each record's offset."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    offsets = []
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gzip_it)
        for i, (rtype, uri, status, headers, body) in enumerate(records):
            offsets.append(f.tell())
            http = StatusAndHeaders(status, headers, protocol="HTTP/1.1") if status else None
            warc_headers = {"WARC-Date": f"2026-01-02T03:04:{i:02d}Z"}
            if rtype == "resource":
                warc_headers["Content-Type"] = dict(headers).get("Content-Type", "application/octet-stream")
            rec = writer.create_warc_record(uri, rtype, payload=io.BytesIO(body), http_headers=http,
                                            warc_headers_dict=warc_headers)
            writer.write_record(rec)
    return offsets


def test_warc_statuses_sizes_and_odd_records(tmp_path):
    page = "<html><head><title>Café</title></head><body><p>Grüße aus dem Garten.</p></body></html>".encode()
    gz = gzip.compress(page, mtime=0)
    records = [
        ("response", "http://w.test/ok", "200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                                    ("Set-Cookie", "a=b"), ("ETag", '"e1"')], page),
        ("response", "http://w.test/gz", "200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], gz),
        ("response", "http://w.test/bad-gz", "200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
         gz[:40] + bytes(b ^ 0x5A for b in gz[40:])),
        ("response", "http://w.test/missing", "404 Not Found", [("Content-Type", "text/html")], b"nope"),
        ("response", "http://w.test/moved", "301 Moved", [("Location", "/new")], b""),
        ("response", "http://w.test/lost", "302 Found", [], b""),
        ("response", "http://w.test/same", "304 Not Modified", [], b""),
        ("response", "http://w.test/pic.png", "200 OK", [("Content-Type", "image/png")], b"\x89PNG...."),
        ("response", "http://w.test/big", "200 OK", [("Content-Type", "text/html")], b"<p>" + b"x" * 5000 + b"</p>"),
        ("resource", "http://w.test/res", None, [("Content-Type", "text/html")], page),
        ("resource", "dns:w.test", None, [("Content-Type", "text/dns")], b"w.test. 300 IN A 10.0.0.1"),
        ("metadata", "http://w.test/ok", None, [("Content-Type", "application/warc-fields")], b"via: x\r\n"),
    ]
    path = tmp_path / "cases.warc.gz"
    _write_warc(path, records)
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="warc", output_path=out, max_body_bytes=4096)
    got = {r["url"]: r for r in read_batch(out)}
    assert {u: r["outcome"] for u, r in got.items()} == {
        "http://w.test/ok": "fetched", "http://w.test/gz": "fetched", "http://w.test/bad-gz": "failed:bad_record",
        "http://w.test/missing": "failed:http_404", "http://w.test/moved": "redirected",
        "http://w.test/lost": "failed:http_302", "http://w.test/same": "not_modified",
        "http://w.test/pic.png": "not_html", "http://w.test/big": "too_large", "http://w.test/res": "fetched",
    }
    ok = got["http://w.test/ok"]
    assert ok["html"] == page.decode() and ok["charset"] == "utf-8" and ok["status"] == 200
    assert ok["content_hash"] == hashlib.md5(page).hexdigest() and ok["body_bytes"] == len(page)
    assert json.loads(ok["headers"])["etag"] == '"e1"' and "set-cookie" not in json.loads(ok["headers"])
    assert ok["etag"] == '"e1"' and ok["fetched_at"] == "2026-01-02T03:04:00Z"
    assert got["http://w.test/gz"]["html"] == page.decode()  # Content-Encoding undone
    assert got["http://w.test/gz"]["content_hash"] == hashlib.md5(page).hexdigest()
    assert "content-encoding gzip" in got["http://w.test/bad-gz"]["detail"]
    assert got["http://w.test/moved"]["detail"] == "http://w.test/new"
    assert got["http://w.test/lost"]["detail"] == "no Location header"
    assert got["http://w.test/same"]["detail"] == "http_304"
    assert got["http://w.test/pic.png"]["html"] is None and got["http://w.test/pic.png"]["body_bytes"] == 8
    assert "max_body_bytes=4096" in got["http://w.test/big"]["detail"] and got["http://w.test/big"]["html"] is None
    assert got["http://w.test/res"]["status"] is None and got["http://w.test/res"]["html"] == page.decode()
    assert s.skipped == {"metadata": 1, "resource:non_http_uri": 1} and not s.errors
    assert load_outcomes(out) == s.outcomes


def test_uncompressed_warc_cut_inside_a_record_lands_the_records_before_it(tmp_path):
    body = b"<html><body><p>hello</p></body></html>"
    records = [("response", f"http://w.test/{i}", "200 OK", [("Content-Type", "text/html")], body) for i in range(3)]
    whole = tmp_path / "whole.warc"
    _write_warc(whole, records, gzip_it=False)
    data = whole.read_bytes()
    third = data.index(b"WARC/1.0", data.index(b"http://w.test/2") - 400)
    for cut in (third + 30, len(data) - 10):  # inside the third record's headers / payload
        path = tmp_path / f"cut-{cut}.warc"
        path.write_bytes(data[:cut])
        out = tmp_path / f"cut-{cut}.jsonl.gz"
        s = ingest_file(path, source="t", kind="warc", output_path=out)
        recs = read_batch(out)
        assert [r["url"] for r in recs[:-1]] == ["http://w.test/0", "http://w.test/1"]
        assert recs[-1]["outcome"] == "failed:corrupt_file"
        assert recs[-1]["url"] == f"warc://{path.name}#offset={third}" and s.errors


def test_corrupt_gzip_member_lands_the_records_before_it(tmp_path):
    body = b"<html><body><p>" + b"lorem ipsum " * 400 + b"</p></body></html>"
    records = [("response", f"http://w.test/{i}", "200 OK", [("Content-Type", "text/html")], body) for i in range(4)]
    path = tmp_path / "flip.warc.gz"
    offsets = _write_warc(path, records)
    data = bytearray(path.read_bytes())
    middle = (offsets[2] + offsets[3]) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="warc", output_path=out)
    recs = read_batch(out)
    assert [r["url"] for r in recs[:-1]] == ["http://w.test/0", "http://w.test/1"]
    assert recs[-1]["outcome"] == "failed:corrupt_file"
    assert recs[-1]["url"] == f"warc://flip.warc.gz#offset={offsets[2]}" and "gzip" in recs[-1]["detail"]
    assert len(s.errors) == 1 and load_outcomes(out) == {"fetched": 2, "failed:corrupt_file": 1}


# ----------------------------------------------------------------------------- JSON Lines


def test_jsonl_bad_lines_are_quarantined_and_the_rest_loads(tmp_path):
    lines = [
        json.dumps({"url": "https://j.test/1", "text": "First document.", "title": "One",
                    "fetched_at": "2025-05-06T07:08:09+02:00"}),
        '{"url": "https://j.test/2", "text": "unterminated',
        "",
        "   ",
        '["a", "list"]',
        json.dumps({"url": "https://j.test/3", "title": "no body"}),
        json.dumps({"text": "No url here.", "fetched_at": 1767225600}),
        json.dumps({"url": "https://j.test/4", "html": "<p>Only html</p>"}),
        json.dumps({"url": "https://j.test/5", "text": "Ünïcödé 中文", "title": "Five"}, ensure_ascii=False),
    ]
    path = tmp_path / "dump.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "dump-0123456789abcdef.jsonl.gz"
    messages: list[str] = []
    s = ingest_file(path, source="t", kind="jsonl", output_path=out, log=messages.append)
    recs = read_batch(out)
    assert [(r["url"], r["outcome"]) for r in recs] == [
        ("https://j.test/1", "fetched"),
        ("jsonl://dump.jsonl#line=2", "failed:bad_json"),
        ("jsonl://dump.jsonl#line=5", "failed:bad_json"),
        ("https://j.test/3", "failed:bad_record"),
        ("jsonl://dump.jsonl#line=7", "fetched"),
        ("https://j.test/4", "fetched"),
        ("https://j.test/5", "fetched"),
    ]
    first = recs[0]
    assert first["text"] == "First document." and first["html"] is None and first["title"] == "One"
    assert first["fetched_at"] == "2025-05-06T05:08:09Z" and first["charset"] == "utf-8"
    assert first["content_hash"] == hashlib.md5(b"First document.").hexdigest() and first["body_bytes"] == 15
    assert first["status"] is None and first["depth"] is None and first["content_type"] == "text/plain"
    assert recs[1]["detail"].startswith("Unterminated string") and "array" in recs[2]["detail"]
    assert "no text or html" in recs[3]["detail"]
    assert recs[4]["fetched_at"] == "2026-01-01T00:00:00Z"
    assert recs[5]["html"] == "<p>Only html</p>" and recs[5]["text"] is None and recs[5]["content_type"] == "text/html"
    assert recs[6]["body_bytes"] == len("Ünïcödé 中文".encode()) and recs[6]["fetched_at"] == DEFAULT_FETCHED_AT

    q = quarantine_path_for(out)
    assert q.name == "dump-0123456789abcdef.quarantine.jsonl" and str(q) == s.quarantine_path
    quarantined = [json.loads(x) for x in q.read_text(encoding="utf-8").splitlines()]
    assert [(x["file"], x["line"]) for x in quarantined] == [("dump.jsonl", 2), ("dump.jsonl", 5), ("dump.jsonl", 6)]
    assert [x["raw"] for x in quarantined] == [lines[1], lines[4], lines[5]]  # nothing is lost
    assert all(x["error"] for x in quarantined) and s.quarantined == 3
    assert s.outcomes == {"fetched": 4, "failed:bad_json": 2, "failed:bad_record": 1}
    assert any("7 records" in m for m in messages)
    # the loader never takes the quarantine file for a batch, and loads the batch
    wd = Workdir.at(tmp_path / "wd").ensure()
    folder = wd.raw_batches("t")
    folder.mkdir(parents=True, exist_ok=True)
    ingest_file(path, source="t", kind="jsonl", output_path=folder / out.name)
    con = memory_connection()
    try:
        counters = ingest_pending(con, wd, "t")
    finally:
        con.close()
    assert counters["batches"] == ["dump-0123456789abcdef"] and counters["bodies_stored"] == 4


def test_truncated_gzip_jsonl_lands_readable_lines_then_a_corrupt_file_record(tmp_path):
    text = "".join(json.dumps({"url": f"https://g.test/{i}", "text": f"document number {i} " * 20}) + "\n"
                   for i in range(4000))
    data = gzip.compress(text.encode(), mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="jsonl", output_path=out)
    recs = read_batch(out)
    good = recs[:-1]
    assert good and all(r["outcome"] == "fetched" for r in good)
    assert [r["url"] for r in good] == [f"https://g.test/{i}" for i in range(len(good))]
    last = recs[-1]
    assert last["outcome"] == "failed:corrupt_file" and last["url"] == f"jsonl://cut.jsonl.gz#line={len(good) + 1}"
    assert "truncated" in last["detail"] and s.errors
    assert load_outcomes(out) == {"fetched": len(good), "failed:corrupt_file": 1}


def test_jsonl_lines_read_as_the_standard_library_reads_them(tmp_path):
    """Lines are parsed by orjson first; where it refuses a line or reads a number otherwise (integers
    beyond 64 bits), the standard library's reading is the one that lands."""
    lines = [
        '{"url": "https://s.test/1", "text": 123456789012345678901234567890, "title": 1.5}',
        '{"url": "https://s.test/2", "text": "x", "date": 1767225600.5}',
        '{"url": "https://s.test/3", "text": "x", "date": 1767225600123}',
        '{"url": "https://s.test/4", "text": "lone \\ud800 surrogate"}',
        '{"url": "https://s.test/5", "text": "x", "date": NaN}',
        '\ufeff{"url": "https://s.test/6", "text": "a BOM on line 6"}',
        '{"url": "https://s.test/7", "text": "x"} trailing',
        '{"url": "https://s.test/8", "text": "x", "url": "https://s.test/8b", "date": "2026-13-01T00:00:00Z"}',
        '{"url": "https://s.test/9", "text": "x", "date": "2026-01-01T00:00:00.000000Z"}',
    ]
    path = tmp_path / "s.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b'{"text": "bad \xff utf-8"}\n')
    out = tmp_path / "s.parquet"
    s = ingest_file(path, source="t", kind="jsonl", output_path=out, fields={"fetched_at": "date"})
    recs = pq.read_table(out).to_pylist()
    got = {r["url"]: r for r in recs}
    assert got["https://s.test/1"]["text"] == "123456789012345678901234567890"
    assert got["https://s.test/1"]["title"] == "1.5"
    assert got["https://s.test/2"]["fetched_at"] == "2026-01-01T00:00:00.500000Z"
    assert got["https://s.test/3"]["fetched_at"] == "2026-01-01T00:00:00.123000Z"
    assert got["https://s.test/4"]["text"] == "lone \ufffd surrogate"
    assert got["jsonl://s.jsonl#line=5"]["detail"] == "NaN is not valid JSON"
    assert got["https://s.test/6"]["outcome"] == "fetched"  # json reads a BOM on any line
    assert got["jsonl://s.jsonl#line=7"]["detail"].startswith("Extra data")
    assert got["https://s.test/8b"]["fetched_at"] == DEFAULT_FETCHED_AT and "unreadable" in got["https://s.test/8b"]["detail"]
    assert got["https://s.test/9"]["fetched_at"] == "2026-01-01T00:00:00Z"
    assert got["jsonl://s.jsonl#line=10"]["detail"].startswith("UnicodeDecodeError")
    assert s.outcomes == {"fetched": 7, "failed:bad_json": 3} and s.quarantined == 3


# ----------------------------------------------------------------------------- Parquet


def test_parquet_with_a_field_mapping_and_several_row_groups(tmp_path):
    n = 2500
    table = pa.table({
        "link": [f"https://p.test/{i}" if i % 10 else None for i in range(n)],
        "body": [f"Body of row {i}." if i % 50 != 7 else None for i in range(n)],
        "headline": [f"Row {i}" for i in range(n)],
        "crawled": pa.array([1_767_225_600 + i for i in range(n)], pa.timestamp("s", tz="UTC")),
        "extra": list(range(n)),
    })
    path = tmp_path / "dump.parquet"
    pq.write_table(table, path, row_group_size=1000)
    assert pq.ParquetFile(path).num_row_groups == 3
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="parquet", output_path=out,
                    fields={"url": "link", "text": "body", "title": "headline", "fetched_at": "crawled"})
    recs = read_batch(out)
    assert len(recs) == n == s.records
    assert recs[0]["url"] == "parquet://dump.parquet#row=1" and recs[1]["url"] == "https://p.test/1"
    assert recs[1]["text"] == "Body of row 1." and recs[1]["title"] == "Row 1"
    assert recs[1]["fetched_at"] == "2026-01-01T00:00:01Z"
    assert recs[7]["outcome"] == "failed:bad_record" and "'body'" in recs[7]["detail"]
    assert s.outcomes == {"fetched": n - n // 50, "failed:bad_record": n // 50}
    assert load_outcomes(out) == s.outcomes


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "+05:30"])
def test_parquet_timestamps_land_as_iso_utc(tmp_path, unit, tz):
    """A timestamp column is turned into ISO strings by Arrow (dates from 1970 on) or value by value
    (before 1970); each must be what Python's datetime gives for the instant (a fraction only when not
    zero), a null the default date."""
    from datetime import UTC, timedelta

    from dataset_platform.ingest.readers.dumps import _iso_utc_column

    per = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    late = 253402200000 * per if unit != "ns" else 2**62  # the last day of 9999 (or as late as ns go)
    recent = [None, 0, 1767225600 * per, 1767225600 * per + per // 4, 951782400 * per + 7, late]
    for name, values in (("recent", recent), ("old", [*recent, -86400 * per, -1 * per - per // 2])):
        path = tmp_path / f"{name}.parquet"
        column = pa.array(values, pa.timestamp(unit, tz))
        pq.write_table(pa.table({"url": [f"https://t.test/{i}" for i in range(len(values))],
                                 "text": ["x"] * len(values), "at": column}), path)
        out = tmp_path / f"{name}-batch.parquet"
        s = ingest_file(path, source="t", kind="parquet", output_path=out, fields={"fetched_at": "at"})
        assert s.outcomes == {"fetched": len(values)}
        expected = [DEFAULT_FETCHED_AT]
        for v in values[1:]:
            dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v * 10**6 // per)
            expected.append(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ"))
        assert pq.read_table(out).column("fetched_at").to_pylist() == expected
        if name == "recent" and unit != "ns":  # the Arrow path, not the one value by value
            assert _iso_utc_column(column).to_pylist() == [None, *expected[1:]]


def _parquet_rows(tmp_path: Path, name: str, table: pa.Table, fields: dict | None = None) -> list[dict]:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    out = tmp_path / f"{name}-batch.parquet"
    ingest_file(path, source="t", kind="parquet", output_path=out, fields=fields)
    return pq.read_table(out).to_pylist()


def test_plain_parquet_batches_land_as_row_by_row(tmp_path):
    """A record batch whose rows are all plain (http(s) url, text, timestamp) is landed by Arrow
    column by column; one odd row sends the batch row by row. The plain rows must land alike."""
    from dataset_platform.ingest.readers.dumps import _plain_batch

    n = 300
    plain = {"url": [f"https://p.test/{i}" for i in range(n)], "body": [f"Text {i} ünï 中文." for i in range(n)],
             "head": [f"T{i}" if i % 7 else None for i in range(n)],
             "at": pa.array([1_767_225_600_000 + i * 1001 for i in range(n)], pa.timestamp("ms"))}
    fields = {"text": "body", "title": "head", "fetched_at": "at"}
    table = pa.table(plain)
    batch = table.to_batches()[0]
    assert _plain_batch(batch, {"url": "url", "text": "body", "title": "head", "fetched_at": "at"}, "at") is not None
    fast = _parquet_rows(tmp_path, "plain", table, fields)
    odd = pa.table({k: (v.to_pylist() if isinstance(v, pa.Array) else v) + [None] for k, v in plain.items()},
                   schema=table.schema)  # a last row without url: row by row
    slow = _parquet_rows(tmp_path, "odd", odd, fields)
    assert fast == slow[:-1] and slow[-1]["url"] == f"parquet://odd.parquet#row={n + 1}"
    assert fast[1]["content_hash"] == hashlib.md5("Text 1 ünï 中文.".encode()).hexdigest()
    assert fast[1]["fetched_at"] == "2026-01-01T00:00:01.001000Z" and fast[0]["title"] is None
    html_only = _parquet_rows(tmp_path, "html", pa.table({"url": plain["url"][:3], "html": ["<p>a</p>"] * 3}))
    assert [(r["content_type"], r["html"], r["text"]) for r in html_only] == [("text/html", "<p>a</p>", None)] * 3


@pytest.mark.parametrize("space", [chr(c) for c in range(0x3001) if chr(c).isspace()])
def test_plain_parquet_batches_strip_and_blank_as_python_does(tmp_path, space):
    """Every character str.strip() strips: after a url it is stripped, a text of them is blank."""
    rows = _parquet_rows(tmp_path, "url", pa.table({"url": ["https://w.test/a" + space, "https://w.test/b"],
                                                    "text": ["Text.", "Text."]}))
    assert [r["url"] for r in rows] == ["https://w.test/a", "https://w.test/b"]
    rows = _parquet_rows(tmp_path, "text", pa.table({"url": ["https://w.test/a", "https://w.test/b"],
                                                     "text": ["Text.", space * 3], "html": [None, "<p>h</p>"]}))
    assert [(r["outcome"], r["content_type"], r["text"]) for r in rows] == [
        ("fetched", "text/plain", "Text."), ("fetched", "text/html", None)]


def test_parquet_mapped_column_missing_is_a_clear_error(tmp_path):
    path = tmp_path / "dump.parquet"
    pq.write_table(pa.table({"link": ["https://p.test/1"], "body": ["x"]}), path)
    out = tmp_path / "b.jsonl.gz"
    with pytest.raises(ValueError, match=r"permalink.*columns are \['link', 'body'\]"):
        ingest_file(path, source="t", kind="parquet", output_path=out, fields={"url": "permalink", "text": "body"})
    with pytest.raises(ValueError, match="no text column"):
        ingest_file(path, source="t", kind="parquet", output_path=out)
    assert not list(tmp_path.glob("b.*"))  # nothing half-written


def test_damaged_parquet_row_group_loses_only_itself(tmp_path):
    n = 3000
    path = tmp_path / "dump.parquet"
    pq.write_table(pa.table({"url": [f"https://p.test/{i}" for i in range(n)],
                             "text": [f"text of row {i} " * 8 for i in range(n)]}), path, row_group_size=1000)
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)  # row group 1, column "text"
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + chunk.total_compressed_size] = b"\xab" * chunk.total_compressed_size
    path.write_bytes(bytes(data))
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="parquet", output_path=out)
    recs = read_batch(out)
    corrupt = [r for r in recs if r["outcome"] == "failed:corrupt_file"]
    assert len(corrupt) == 1 and corrupt[0]["url"] == "parquet://dump.parquet#row=1001"
    fetched = [r["url"] for r in recs if r["outcome"] == "fetched"]
    assert fetched == [f"https://p.test/{i}" for i in [*range(1000), *range(2000, 3000)]]
    assert len(s.errors) == 1 and load_outcomes(out) == {"fetched": 2000, "failed:corrupt_file": 1}


def test_unreadable_parquet_lands_one_corrupt_file_record(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    out = tmp_path / "b.jsonl.gz"
    s = ingest_file(path, source="t", kind="parquet", output_path=out)
    recs = read_batch(out)
    assert [(r["url"], r["outcome"]) for r in recs] == [("parquet://broken.parquet", "failed:corrupt_file")]
    assert s.errors and recs[0]["detail"]


# ----------------------------------------------------------------------------- ids, kinds, determinism


def test_kind_and_batch_id(tmp_path):
    assert kind_for_path("a/b/CC-MAIN.warc.gz") == "warc" and kind_for_path("x.warc") == "warc"
    assert kind_for_path("x.warc.wet.gz") == "warc" and kind_for_path("x.jsonl.gz") == "jsonl"
    assert kind_for_path("x.jsonl") == "jsonl" and kind_for_path("x.parquet") == "parquet"
    with pytest.raises(ValueError, match=r"\.warc\.gz.*\.jsonl.*\.parquet"):
        kind_for_path("notes.txt")
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"text": "a"}\n' * 100_000)
    bid = batch_id_for(f, "src")
    assert bid == "src-" + hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    assert not is_crawl_batch(Batch("src", bid, f))
    assert not re.fullmatch(r"src-\d{8}T\d{6,}Z", bid)


def test_same_input_gives_byte_identical_batches(tmp_path):
    jsonl = tmp_path / "a" / "d.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(50)) + "oops\n", encoding="utf-8")
    inputs = [jsonl]
    if _WARC_DIR.is_dir():
        inputs.append(_WARC_DIR / "pywb-iana.warc.gz")
    for path in inputs:
        copy = tmp_path / "b" / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        os.utime(copy, (1, 1))  # another place and time: same bytes
        outs = []
        for i, p in enumerate((path, copy)):
            o = tmp_path / f"out{i}-{path.name}.jsonl.gz"
            ingest_file(p, source="t", kind=kind_for_path(p), output_path=o)
            outs.append(o.read_bytes())
        assert outs[0] == outs[1]
        assert gzip.decompress(outs[0])  # a valid gzip file, mtime 0, no file name
        assert outs[0][4:8] == b"\0\0\0\0" and not outs[0][3] & 0x08


# ----------------------------------------------------------------------------- the Parquet batch


def loaded(path: Path, source: str = "t") -> list[tuple]:
    """A batch file's rows as the loader reads them (``batch_sql``), every column, in seq order;
    ``load_batch`` must accept it."""
    con = memory_connection()
    try:
        batch = Batch(source, "t-0123456789abcdef", path)
        load_batch(con, batch)
        return con.sql(f"SELECT * FROM ({batch_sql(batch)}) ORDER BY seq").fetchall()
    finally:
        con.close()


def test_parquet_batch_loads_as_the_gzip_jsonl_batch_of_the_same_file(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        json.dumps({"url": "https://j.test/1", "text": "One.", "title": "T", "date": "2025-05-06T07:08:09+02:00"})
        + "\n{not json\n" + json.dumps({"url": "ftp://j.test/2", "html": "<p>Two</p>", "date": 1767225600}) + "\n"
        + json.dumps({"url": "https://j.test/3", "title": "no body"}) + "\n"
        + json.dumps({"text": "Ünïcödé 中文 \ud800", "date": "not a date"}, ensure_ascii=True) + "\n",
        encoding="utf-8",
    )
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"link": ["https://p.test/1", None, "https://p.test/3"], "body": ["x", "y", None],
                             "html": [None, None, "<p>z</p>"]}), parquet, row_group_size=2)
    inputs = [(jsonl, {"fetched_at": "date"}), (parquet, {"url": "link", "text": "body"})]
    if _WARC_DIR.is_dir():
        inputs.append((_WARC_DIR / "pywb-iana.warc.gz", None))
        inputs.append((_WARC_DIR / "clipped-resiliparse.warc.gz", None))
    for path, fields in inputs:
        kind = kind_for_path(path)
        a = ingest_file(path, source="t", kind=kind, output_path=tmp_path / f"{path.name}.jsonl.gz", fields=fields)
        b = ingest_file(path, source="t", kind=kind, output_path=tmp_path / f"{path.name}.parquet", fields=fields)
        assert (a.records, a.outcomes, a.skipped, a.errors, a.quarantined) == \
            (b.records, b.outcomes, b.skipped, b.errors, b.quarantined)
        rows = loaded(tmp_path / f"{path.name}.parquet")
        assert rows == loaded(tmp_path / f"{path.name}.jsonl.gz") and len(rows) == a.records > 0
        assert [r[2] for r in rows] == list(range(1, len(rows) + 1))  # seq: record order
        if a.quarantined:  # the quarantine file beside either batch, the same lines
            qa, qb = quarantine_path_for(tmp_path / f"{path.name}.jsonl.gz"), quarantine_path_for(
                tmp_path / f"{path.name}.parquet")
            assert qb.name == f"{path.name}.quarantine.jsonl" and qa == qb == Path(b.quarantine_path)
    schema = pq.read_schema(tmp_path / "d.jsonl.parquet")
    assert schema.names == list(LANDED_FIELDS)
    assert str(schema.field("status").type) == "int32" and str(schema.field("body_bytes").type) == "int64"


def test_parquet_batch_row_groups_are_bounded_and_bytes_repeat(tmp_path):
    from dataset_platform.ingest.batchfile import ROW_GROUP_ROWS

    n = 2 * ROW_GROUP_ROWS + 123
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps({"url": f"https://m.test/{i}", "text": f"t{i}"}) + "\n" for i in range(n)),
                   encoding="utf-8")
    outs = []
    for i in range(2):
        out = tmp_path / f"many{i}.parquet"
        s = ingest_file(src, source="t", kind="jsonl", output_path=out)
        assert s.records == n and not list(tmp_path.glob("*.part"))
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()  # the same input gives the same bytes
    meta = pq.ParquetFile(outs[0]).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 123]
    rows = loaded(outs[0])
    assert [(r[2], r[4]) for r in rows] == [(i + 1, f"https://m.test/{i}") for i in range(n)]


def test_a_file_lands_once_as_a_parquet_batch_and_earlier_jsonl_batches_count(tmp_path):
    from dataset_platform.config import DumpSource
    from dataset_platform.ingest.refresh import ingest_source_files

    wd = Workdir.at(tmp_path / "wd").ensure()
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text(json.dumps({"url": "https://o.test/1", "text": "Old."}) + "\n", encoding="utf-8")
    new.write_text(json.dumps({"url": "https://n.test/1", "text": "New."}) + "\n", encoding="utf-8")
    # ``old`` was landed by an earlier version, as gzip JSON Lines
    old_batch = wd.raw_batches("d") / f"{batch_id_for(old, 'd')}.jsonl.gz"
    ingest_file(old, source="d", kind="jsonl", output_path=old_batch)
    os.utime(old_batch, (1_700_000_000, 1_700_000_000))  # landed before the new file
    source = DumpSource(name="d", kind="jsonl", paths=[str(tmp_path / "*.jsonl")])
    assert ingest_source_files(source, wd) == [batch_id_for(new, "d")]
    assert (wd.raw_batches("d") / f"{batch_id_for(new, 'd')}.parquet").is_file()
    assert ingest_source_files(source, wd) == []  # both landed before
    con = memory_connection()
    try:
        counters = ingest_pending(con, wd, "d")
    finally:
        con.close()
    assert counters["batches"] == [batch_id_for(old, "d"), batch_id_for(new, "d")]
    check = duckdb.connect()
    try:
        urls = sorted(u for (u,) in check.sql(f"SELECT url FROM {read_layer(wd, 'raw_pages')}").fetchall())
    finally:
        check.close()
    assert urls == ["https://n.test/1", "https://o.test/1"]


# ----------------------------------------------------------------------------- CLI


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataset_platform.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, check=False)


def test_cli_stage_ingest(tmp_path):
    inp = tmp_path / "forum.jsonl"
    inp.write_text(json.dumps({"permalink": "https://f.test/1", "body": "Hello there."}) + "\n{broken\n",
                   encoding="utf-8")
    out = tmp_path / "out" / "forum.jsonl.gz"
    r = cli("stage", "ingest", "--input", str(inp), "--output", str(out), "--field", "url=permalink",
            "--field", "text=body")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 records" in r.stderr and "quarantine" in r.stderr
    assert [(x["url"], x["outcome"]) for x in read_batch(out)] == [
        ("https://f.test/1", "fetched"), ("jsonl://forum.jsonl#line=2", "failed:bad_json")]
    assert quarantine_path_for(out).exists()

    pq_out = tmp_path / "pages.parquet"
    r = cli("stage", "ingest", "--input", str(inp), "--output", str(pq_out), "--field", "text=body",
            "--source", "forum")
    assert r.returncode == 0, r.stderr
    rows = duckdb.sql(f"SELECT id, source, url, outcome, text FROM read_parquet('{pq_out}') ORDER BY seq").fetchall()
    assert [row[2:] for row in rows] == [("jsonl://forum.jsonl#line=1", "fetched", "Hello there."),
                                         ("jsonl://forum.jsonl#line=2", "failed:bad_json", None)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", row[0]) and row[1] == "forum" for row in rows)

    r = cli("stage", "ingest", "--input", str(tmp_path / "nope.warc.gz"), "--output", str(tmp_path / "x.jsonl.gz"))
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "x.jsonl.gz").exists()
    r = cli("stage", "ingest", "--input", str(inp), "--output", str(tmp_path / "x.csv"))
    assert r.returncode == 2 and ".jsonl.gz" in r.stderr


def test_cli_stage_ingest_warc(tmp_path):
    folder = shared_corpus("warc")
    out = tmp_path / "b.jsonl.gz"
    r = cli("stage", "ingest", "--input", str(folder / "warcio-example-iana-chunked.warc"), "--output", str(out))
    assert r.returncode == 0, r.stderr
    recs = read_batch(out)
    assert [x["outcome"] for x in recs] == ["fetched"] and "</html>" in recs[0]["html"]


def test_an_unchanged_dump_file_is_not_read_again_to_know_it_was_landed(tmp_path):
    """A configured dump file is hashed once; a refresh trusts its (size, mtime, inode) after that,
    and a file whose stat changed is hashed again (and lands again when its bytes changed)."""
    from dataset_platform.config import DumpSource
    from dataset_platform.ingest.refresh import ingest_source_files

    wd = Workdir.at(tmp_path / "wd").ensure()
    dump = tmp_path / "dump.jsonl"
    dump.write_text(json.dumps({"url": "https://a.test/1", "text": "First."}) + "\n", encoding="utf-8")
    source = DumpSource(name="d", kind="jsonl", paths=[str(dump)])
    first = batch_id_for(dump, "d")
    assert ingest_source_files(source, wd) == [first]
    cache = json.loads(wd.file_hashes("d").read_text())
    assert list(cache.values())[0][1] == first
    # the same size, mtime and inode with other bytes: trusted, so not read (and not landed)
    st = dump.stat()
    with open(dump, "r+b") as f:
        f.write(b'{"url": "https://b.test/1", "text": "Other."}'[: st.st_size - 1].ljust(st.st_size - 1) + b"\n")
    os.utime(dump, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ingest_source_files(source, wd) == []
    # a touched file is hashed again: its new bytes are a new batch
    os.utime(dump, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ingest_source_files(source, wd) == [batch_id_for(dump, "d")] != [first]
    # a removed cache only costs a read
    wd.file_hashes("d").unlink()
    assert ingest_source_files(source, wd) == []
    assert wd.file_hashes("d").is_file()
