"""Incremental recrawl through the raw layer: a real crawl (child process) of a site the test
serves on 127.0.0.1, loaded by ``ingest.refresh.materialise_raw`` three times.

* crawl 2 of the unchanged site: every page ``not_modified`` (by 304 to If-None-Match, by 304 to
  If-Modified-Since, or by an equal content hash for a page without validators), no body in the
  batch, the raw partition unchanged;
* crawl 3 after one page changed: that page alone is stored again, under the new crawl_id.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from dataset_platform.config import CrawlSource, PlatformConfig
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.storage import Workdir, read_layer

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


def _page(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<p><a href="{h}">{h}</a></p>' for h in links)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{anchors}</body></html>".encode()


class Site:
    """Pages with an ETag (/, /etag.html), with Last-Modified only (/lm.html), with neither (/plain.html)."""

    def __init__(self) -> None:
        self.bodies = {
            "/": _page("Home", ["/etag.html", "/lm.html", "/plain.html"]),
            "/etag.html": _page("Tagged", ["/"]),
            "/lm.html": _page("Dated", []),
            "/plain.html": _page("Plain", []),
        }
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if self.path == "/robots.txt":
                    self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
                    return
                body = site.bodies.get(self.path)
                if body is None:
                    self._send(404, b"<html><body>gone</body></html>")
                    return
                headers: dict[str, str] = {}
                if self.path in ("/", "/etag.html"):
                    headers["ETag"] = '"' + hashlib.sha1(body).hexdigest()[:12] + '"'
                    if self.headers.get("If-None-Match") == headers["ETag"]:
                        self._send(304, b"", headers=headers)
                        return
                elif self.path == "/lm.html":
                    headers["Last-Modified"] = LAST_MODIFIED if b"Dated" in body and b"v2" not in body else formatdate(
                        1_800_000_000, usegmt=True)
                    if self.headers.get("If-Modified-Since") == headers["Last-Modified"]:
                        self._send(304, b"", headers=headers)
                        return
                self._send(200, body, headers=headers)

            def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                if status != 304:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def _cfg(site: Site) -> PlatformConfig:
    source = CrawlSource(
        name="local", start_urls=[site.base + "/"], allowed_domains=["127.0.0.1"],
        allow_private_addresses=["127.0.0.1"], max_depth=3, timeout_s=120, retry_times=0,
    )
    return PlatformConfig(sources=[source])


def _crawl_log(wd: Workdir, crawl_id: str) -> dict[str, tuple[str, str | None]]:
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"SELECT url, outcome, detail FROM {read_layer(wd, 'crawl_log')} WHERE crawl_id = '{crawl_id}'"
        ).fetchall()
    finally:
        con.close()
    return {u.split("/", 3)[3] if u.count("/") >= 3 else u: (o, d) for u, o, d in rows}


def _raw(wd: Workdir) -> dict[str, tuple[str, str]]:
    con = duckdb.connect()
    try:
        rows = con.sql(f"SELECT url, crawl_id, content_hash FROM {read_layer(wd, 'raw_pages')}").fetchall()
    finally:
        con.close()
    return {"/" + u.split("/", 3)[3]: (c, h) for u, c, h in rows}


def _batch_bodies(wd: Workdir, crawl_id: str) -> list[str]:
    path = wd.raw_batches("local") / f"{crawl_id}.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [r["url"] for r in map(json.loads, f) if r["html"] is not None]


def test_unchanged_site_is_not_stored_again_and_a_changed_page_is(site: Site, tmp_path: Path) -> None:
    cfg = _cfg(site)
    wd = Workdir.at(tmp_path / "wd").ensure()
    html_pages = {"/", "/etag.html", "/lm.html", "/plain.html"}

    r1 = materialise_raw(cfg, wd)
    c1 = r1.counters["sources"]["local"]["crawl"]["crawl_id"]
    first = _raw(wd)
    assert set(first) == html_pages
    assert {c for c, _ in first.values()} == {c1}
    assert r1.counters["sources"]["local"]["bodies_stored"] == 4

    # Crawl 2: nothing changed.
    site.requests.clear()
    r2 = materialise_raw(cfg, wd)
    c2 = r2.counters["sources"]["local"]["crawl"]["crawl_id"]
    assert c2 != c1
    log2 = _crawl_log(wd, c2)
    assert {"/" + k for k in log2} == html_pages
    assert {("/" + k): v for k, v in log2.items()} == {
        "/": ("not_modified", "http_304"),
        "/etag.html": ("not_modified", "http_304"),
        "/lm.html": ("not_modified", "http_304"),
        "/plain.html": ("not_modified", "content_hash"),
    }
    # The validators were sent: conditional requests, not a blind refetch.
    sent = dict(site.requests)
    assert sent["/etag.html"].get("if-none-match")
    assert sent["/lm.html"].get("if-modified-since") == LAST_MODIFIED
    assert _batch_bodies(wd, c2) == []  # no body stored in the batch ...
    assert r2.counters["sources"]["local"]["bodies_stored"] == 0
    assert _raw(wd) == first  # ... and the stored rows are the first crawl's

    # Crawl 3: one page changed.
    site.bodies["/plain.html"] = _page("Plain, edited", [])
    r3 = materialise_raw(cfg, wd)
    c3 = r3.counters["sources"]["local"]["crawl"]["crawl_id"]
    log3 = _crawl_log(wd, c3)
    assert log3["plain.html"] == ("fetched", None)
    assert {k: v[0] for k, v in log3.items() if k != "plain.html"} == {
        "": "not_modified", "etag.html": "not_modified", "lm.html": "not_modified"}
    assert [u.rsplit("/", 1)[1] for u in _batch_bodies(wd, c3)] == ["plain.html"]
    third = _raw(wd)
    assert third["/plain.html"][0] == c3 and third["/plain.html"][1] != first["/plain.html"][1]
    assert {k: v for k, v in third.items() if k != "/plain.html"} == {
        k: v for k, v in first.items() if k != "/plain.html"}
    assert r3.counters["sources"]["local"]["bodies_stored"] == 1

    # Reloading every batch again never duplicates rows (idempotent merge).
    con = duckdb.connect()
    try:
        n_log = con.sql(f"SELECT count(*), count(DISTINCT (crawl_id, url)) FROM {read_layer(wd, 'crawl_log')}").fetchall()[0]
    finally:
        con.close()
    assert n_log[0] == n_log[1]
