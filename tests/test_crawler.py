"""The crawl runner and the ``site`` spider: real Scrapy crawls (child processes) of a small site
served by the test on 127.0.0.1, plus fast unit tests of the spider callback."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scrapy.exceptions import CloseSpider
from scrapy.http import HtmlResponse, Request, Response

from crawlers.items import PAGE_FIELDS
from crawlers.spiders.site import REFERER_META, SiteSpider
from dataset_platform.raw.crawl import (
    CrawlError,
    CrawlSpec,
    partial_path_for,
    run_crawl,
    spec_path_for,
)

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24 + b"fixture-image"
SLOW_S = 2.5  # > the 2 s progress interval, so a timed progress line must appear


def _html(title: str, links: list[str], extra: str = "") -> bytes:
    anchors = " ".join(f'<a href="{h}">link {i}</a>' for i, h in enumerate(links))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>Fixture page for the crawler tests.</p>{anchors}{extra}</body></html>"
    ).encode()


@dataclass
class FixtureSite:
    """A small website on 127.0.0.1 that logs every request path it receives."""

    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)
    slow_s: float = SLOW_S  # how long /slow.html takes
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pages(self) -> dict[str, tuple[int, str, bytes]]:
        """path -> (status, Content-Type, body)."""
        html = "text/html; charset=utf-8"
        index_links = [
            "/a.html", "a.html", "/b.html#top", "/private/secret.html", "/missing.html", "/img.png",
            "/plain.txt", "/old.html", "/chain/1.html", "/slow.html", f"http://127.0.0.2:{self.port}/x",
            "mailto:someone@example.org", "javascript:void(0)",
        ]
        not_anchors = '<img src="/not-followed.png"><link rel="stylesheet" href="/style.css">'
        pages = {
            "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
            "/": (200, html, _html("Home", index_links, not_anchors)),
            "/a.html": (200, html, _html("A", ["/", "/b.html"])),
            "/b.html": (
                200,
                "text/html; charset=ISO-8859-1",
                "<html><body><p>Caf\u00e9 cr\u00e8me</p><a href='/a.html'>A</a></body></html>".encode("latin-1"),
            ),
            "/missing.html": (404, html, _html("Not found", ["/from-404.html"])),
            "/img.png": (200, "image/png", PNG),
            "/plain.txt": (200, "text/plain; charset=utf-8", b'plain text <a href="/from-text.html">x</a>\n'),
            "/new.html": (200, "application/xhtml+xml", _html("Moved here", [])),
            "/private/secret.html": (200, html, _html("Secret", [])),
            "/slow.html": (200, html, _html("Slow", [])),
        }
        for i in range(1, 7):
            pages[f"/chain/{i}.html"] = (200, html, _html(f"Chain {i}", [f"/chain/{i + 1}.html"]))
        return pages


def _handler(site: FixtureSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            site.requests.append(self.path)
            if self.path == "/old.html":
                self.send_response(301)
                self.send_header("Location", "/new.html")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/slow.html":
                site.stopping.wait(site.slow_s)
            status, ctype, body = site.pages().get(self.path, (404, "text/html", b"<html><body>nothing</body></html>"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    s = FixtureSite(server)
    server.RequestHandlerClass = _handler(s)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield s
    s.stopping.set()
    server.shutdown()
    server.server_close()


def _spec(site: FixtureSite, tmp_path: Path, **kw: object) -> CrawlSpec:
    args: dict[str, object] = dict(
        source="fixture",
        crawl_id="fixture-20260101T000000000000Z",
        start_urls=[site.base + "/"],
        allowed_domains=["127.0.0.1"],
        output_path=str(tmp_path / "raw" / "fixture" / "fixture-20260101T000000000000Z.jsonl.gz"),
        max_depth=3,
        timeout_s=45,
    )
    args.update(kw)
    return CrawlSpec(**args)  # type: ignore[arg-type]


def _records(path: str | Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


# ------------------------------------------------------------------ real crawls


def test_crawl_records_every_response_and_respects_the_rules(site: FixtureSite, tmp_path: Path) -> None:
    spec = _spec(site, tmp_path)
    messages: list[str] = []
    summary = run_crawl(spec, log=messages.append)

    recs = {_path(r["url"]): r for r in _records(spec.output_path)}
    expected = {
        "/": (200, "text/html", 0),
        "/a.html": (200, "text/html", 1),
        "/b.html": (200, "text/html", 1),
        "/missing.html": (404, "text/html", 1),
        "/img.png": (200, "image/png", 1),
        "/plain.txt": (200, "text/plain", 1),
        "/new.html": (200, "application/xhtml+xml", 1),  # reached through the 301 of /old.html
        "/slow.html": (200, "text/html", 1),
        "/chain/1.html": (200, "text/html", 1),
        "/chain/2.html": (200, "text/html", 2),
        "/chain/3.html": (200, "text/html", 3),  # max_depth=3: /chain/4.html is not fetched
    }
    assert set(recs) == set(expected)
    assert {p: (r["status"], r["content_type"], r["depth"]) for p, r in recs.items()} == expected

    pages = site.pages()
    for path, r in recs.items():
        assert set(r) == set(PAGE_FIELDS)
        assert r["url"] == r["fetch_url"] == site.base + path  # no record_base_url: recorded as fetched
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["fetched_at"])
        assert r["body_bytes"] == len(pages[path][2])
        is_html = r["content_type"] in ("text/html", "application/xhtml+xml")
        assert (r["html"] is not None) == is_html, path
    assert recs["/"]["referer"] is None
    assert recs["/a.html"]["referer"] == site.base + "/"
    assert recs["/new.html"]["referer"] == site.base + "/"
    assert recs["/chain/3.html"]["referer"] == site.base + "/chain/2.html"
    assert "Caf\u00e9 cr\u00e8me" in recs["/b.html"]["html"]  # decoded with the declared charset
    assert recs["/b.html"]["charset"] == "cp1252"  # Scrapy's (WHATWG) name for ISO-8859-1
    assert recs["/a.html"]["charset"] == "utf-8"
    assert recs["/img.png"]["charset"] is None and recs["/img.png"]["html"] is None
    assert recs["/plain.txt"]["charset"] == "utf-8" and recs["/plain.txt"]["html"] is None
    assert "Not found" in recs["/missing.html"]["html"]

    # what the server saw: robots.txt read and obeyed, only <a href> of 2xx HTML followed
    seen = set(site.requests)
    assert "/robots.txt" in seen and "/old.html" in seen
    assert not [p for p in seen if p.startswith("/private/")]
    for never in ("/chain/4.html", "/from-404.html", "/from-text.html", "/not-followed.png", "/style.css", "/x"):
        assert never not in seen
    assert site.requests.count("/a.html") == 1 and site.requests.count("/b.html") == 1

    assert summary.pages == len(expected)
    assert summary.status_counts == {"200": 10, "404": 1}
    assert summary.bytes == sum(r["body_bytes"] for r in recs.values())
    assert summary.finish_reason == "finished"
    assert summary.output_path == spec.output_path
    assert summary.stats["offsite/filtered"] >= 1  # the 127.0.0.2 link was dropped by Scrapy, not fetched
    assert summary.stats["robotstxt/forbidden"] >= 1
    assert summary.stats["failed_requests"] == 0
    assert summary.elapsed_s >= SLOW_S

    # progress reached the log: a timed line while the slow page was pending, and the closing line
    progress = [m for m in messages if "pages/s" in m]
    assert any("closed" not in m for m in progress), messages
    assert any("closed: finished" in m for m in progress)
    assert any("done (finished): 11 responses" in m for m in messages)

    # the spec sits next to the batch; the batch is gzip with mtime 0 and no stored file name
    assert CrawlSpec.from_json(spec_path_for(spec.output_path).read_text(encoding="utf-8")) == spec
    header = Path(spec.output_path).read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\x00\x00\x00\x00" and not header[3] & 0x08
    assert not partial_path_for(spec.output_path).exists()


def test_max_pages_and_record_base_url(site: FixtureSite, tmp_path: Path) -> None:
    base = "https://mirror.example.org/site/"
    spec = _spec(site, tmp_path, max_pages=4, max_depth=5, record_base_url=base)
    summary = run_crawl(spec)
    recs = _records(spec.output_path)
    assert len(recs) == summary.pages == 4
    assert summary.finish_reason == "max_pages"
    for r in recs:
        assert r["fetch_url"].startswith(site.base + "/")
        assert r["url"] == "https://mirror.example.org/site" + _path(r["fetch_url"])
        assert r["referer"] is None or r["referer"].startswith(base)
    assert "https://mirror.example.org/site/" in {r["url"] for r in recs}  # the start page
    assert any(r["referer"] == base for r in recs)  # a page linked from the start page


def test_unreachable_start_url_completes_with_zero_pages(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port on 127.0.0.1 where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = CrawlSpec(
        source="gone", crawl_id="gone-1", start_urls=[f"http://127.0.0.1:{port}/"], allowed_domains=["127.0.0.1"],
        output_path=str(tmp_path / "gone-1.jsonl.gz"), timeout_s=45,
    )
    messages: list[str] = []
    summary = run_crawl(spec, log=messages.append)
    assert summary.pages == 0 and summary.status_counts == {}
    assert summary.finish_reason == "finished"
    assert summary.stats["failed_requests"] == 1  # the start URL, after Scrapy's retries
    assert _records(spec.output_path) == []  # an empty, valid batch
    assert any("no response was recorded (1 request(s) failed)" in m for m in messages)


def test_timeout_kills_the_crawl_and_leaves_no_file(site: FixtureSite, tmp_path: Path) -> None:
    site.slow_s = 30  # the crawl cannot finish before its 4 s timeout
    spec = _spec(site, tmp_path, timeout_s=4)
    part = partial_path_for(spec.output_path)
    part_seen = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if part.exists():
                part_seen.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(CrawlError, match="timed out after 4 s and was killed"):
            run_crawl(spec)
    finally:
        done.set()
        watcher.join()
    assert part_seen.is_set()  # the batch was being written when the crawl was killed...
    assert not part.exists() and not Path(spec.output_path).exists()  # ...and nothing half-written remains


def test_invalid_spec_raises_crawl_error_with_the_reason(tmp_path: Path) -> None:
    spec = CrawlSpec(
        source="bad", crawl_id="bad-1", start_urls=["ftp://example.org/"], allowed_domains=["example.org"],
        output_path=str(tmp_path / "bad-1.jsonl.gz"), max_pages=0,
    )
    with pytest.raises(CrawlError) as e:
        run_crawl(spec)
    msg = str(e.value)
    assert "exit code 2" in msg
    assert "max_pages must be an integer >= 1" in msg and "'ftp://example.org/' is not http(s)://" in msg
    assert not Path(spec.output_path).exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"source": "s", "crawl_id": "c", "start_urls": ["http://e.org/"], "allowed_domains": []}),
         "missing field 'output_path'"),
        (json.dumps(["a list"]), "must be a JSON object"),
    ],
)
def test_run_module_by_hand_rejects_broken_specs(tmp_path: Path, content: str, expected: str) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(content, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "crawlers.run", str(spec_file)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert expected in proc.stderr and str(spec_file) in proc.stderr
    assert "CRAWL_SUMMARY" not in proc.stdout


def test_spec_validation_in_process() -> None:
    good = {"source": "s", "crawl_id": "c", "start_urls": ["https://e.org/"], "allowed_domains": ["e.org"],
            "output_path": "/tmp/x.jsonl.gz"}
    assert CrawlSpec.from_dict(good).max_pages == 1000
    with pytest.raises(ValueError, match="unknown field 'max_page'.*obey_robots must be true or false"):
        CrawlSpec.from_dict({**good, "max_page": 5, "obey_robots": "yes"})
    with pytest.raises(ValueError, match="allowed domain 'e.org:8080' must be a bare host name"):
        CrawlSpec.from_dict({**good, "allowed_domains": ["e.org:8080"]})
    assert spec_path_for("/d/src-1.jsonl.gz") == Path("/d/src-1.spec.json")


# ------------------------------------------------------------ spider unit tests

PAGE = b"""<html><head><base href="http://example.org/docs/"></head><body>
<a href="intro.html#part-2">relative, with a fragment</a>
<a href="/about.html">absolute path</a>
<a href="http://other.example.net/page">another site</a>
<a href="files/report.pdf">a PDF</a>
<a href="mailto:x@example.org">mail</a> <a href="javascript:alert(1)">js</a> <a href="ftp://example.org/f">ftp</a>
<img src="/pic.png"> <p>Caf\xc3\xa9</p>
</body></html>"""


def _spider(**kw: object) -> SiteSpider:
    args: dict[str, object] = dict(start_urls=["http://example.org/"], allowed_domains=["example.org"], max_depth=2)
    args.update(kw)
    return SiteSpider(**args)  # type: ignore[arg-type]


def _html_response(url: str, status: int = 200, depth: int = 0, body: bytes = PAGE) -> HtmlResponse:
    req = Request(url, meta={"depth": depth, REFERER_META: "http://example.org/"})
    return HtmlResponse(url=url, body=body, status=status, request=req,
                        headers={"Content-Type": "text/html; charset=utf-8"})


def test_parse_records_the_page_and_follows_only_http_anchor_links() -> None:
    spider = _spider(record_base_url="https://archive.example.com/")
    out = list(spider.parse(_html_response("http://example.org/docs/index.html", depth=1)))
    item, requests = out[0], out[1:]
    assert set(item) == set(PAGE_FIELDS)
    assert item["url"] == "https://archive.example.com/docs/index.html"
    assert item["fetch_url"] == "http://example.org/docs/index.html"
    assert item["referer"] == "https://archive.example.com/"
    assert (item["status"], item["content_type"], item["charset"], item["depth"]) == (200, "text/html", "utf-8", 1)
    assert "Caf\u00e9" in item["html"] and item["body_bytes"] == len(PAGE)
    assert all(isinstance(r, Request) for r in requests)
    # offsite filtering is Scrapy's middleware's job; the callback follows every http(s) <a href>
    assert [r.url for r in requests] == [
        "http://example.org/docs/intro.html",
        "http://example.org/about.html",
        "http://other.example.net/page",
        "http://example.org/docs/files/report.pdf",
    ]
    assert {r.meta[REFERER_META] for r in requests} == {"http://example.org/docs/index.html"}
    # a URL off the start URLs' origin is recorded as fetched
    assert spider.recorded_url("http://other.example.net/page") == "http://other.example.net/page"


def test_parse_does_not_follow_from_errors_binaries_or_beyond_max_depth() -> None:
    spider = _spider()
    not_found = list(spider.parse(_html_response("http://example.org/gone.html", status=404)))
    assert len(not_found) == 1 and not_found[0]["status"] == 404 and not_found[0]["html"] is not None
    deep = list(spider.parse(_html_response("http://example.org/deep.html", depth=2)))
    assert len(deep) == 1 and deep[0]["depth"] == 2
    png = Response(url="http://example.org/p.png", body=PNG, headers={"Content-Type": "image/png"},
                   request=Request("http://example.org/p.png"))
    (item,) = list(spider.parse(png))
    assert (item["content_type"], item["charset"], item["html"], item["referer"]) == ("image/png", None, None, None)
    assert item["body_bytes"] == len(PNG)


def test_parse_stops_at_max_pages() -> None:
    spider = _spider(max_pages=2)
    first = list(spider.parse(_html_response("http://example.org/1.html")))
    assert len(first) > 1  # the item and its links
    gen = spider.parse(_html_response("http://example.org/2.html"))
    assert next(gen)["fetch_url"] == "http://example.org/2.html"
    with pytest.raises(CloseSpider) as e:
        next(gen)
    assert e.value.reason == "max_pages"
    assert list(spider.parse(_html_response("http://example.org/3.html"))) == []  # late responses are dropped
