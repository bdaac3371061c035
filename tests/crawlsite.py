"""Test helpers of the crawler tests: a scriptable HTTP site on a loopback address and batch readers.

A :class:`Site` is a ``ThreadingHTTPServer`` in a thread that logs every request it receives
(path with query, headers, time) and answers from a route table: an exact path (with its query),
else the path without its query, else the longest matching prefix route. A route is a
:class:`Page` (fixed answer) or a function ``(site, handler) -> None`` that answers by itself.
Handlers that wait (slow or hanging pages) wait on ``site.stopping``, which is set when the site
closes, so a test ends quickly.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dataset_platform.contracts.records import LANDED_FIELDS
from dataset_platform.ingest.crawl import CrawlSpec

HTML = "text/html; charset=utf-8"


@dataclass
class Page:
    body: bytes = b""
    ctype: str | None = HTML
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Route = Page | Callable[["Site", BaseHTTPRequestHandler], None]


@dataclass
class Hit:
    path: str  # as sent in the request line (query included)
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic()


def html(title: str, links: Iterable[str] = (), extra: str = "") -> bytes:
    anchors = " ".join(f'<a href="{h}">link {i}</a>' for i, h in enumerate(links))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>Fixture page for the crawler tests.</p>{anchors}{extra}</body></html>"
    ).encode()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", ctype: str | None = HTML,
         headers: dict[str, str] | None = None, content_length: bool = True) -> None:
    """Answer with ``body``; without ``content_length`` the body is sent chunked."""
    h.send_response(status)
    if ctype:
        h.send_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if content_length:
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        return
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    step = 8192
    for i in range(0, len(body), step):
        chunk = body[i:i + step]
        h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    h.wfile.write(b"0\r\n\r\n")


class Site:
    """A website on ``host`` (loopback) that logs every request; see the module doc."""

    def __init__(self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.prefix_routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        # the crawler drops connections on purpose (size limits, timeouts): no tracebacks
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return sum(1 for h in self.hits if h.path == path)

    def paths(self) -> set[str]:
        return {h.path for h in self.hits}

    def route(self, path: str) -> Route | None:
        if path in self.routes:
            return self.routes[path]
        bare = path.split("?", 1)[0]
        if bare in self.routes:
            return self.routes[bare]
        best = max((p for p in self.prefix_routes if path.startswith(p)), key=len, default=None)
        return self.prefix_routes[best] if best is not None else None

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with site._lock:
                    site.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
                route = site.route(self.path)
                if route is None:
                    send(self, 404, b"<html><body>nothing here</body></html>")
                elif isinstance(route, Page):
                    send(self, route.status, route.body, route.ctype, route.headers)
                else:
                    route(site, self)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        return Handler


def records(path: str | Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def by_url(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """url -> record; fails when a URL is recorded twice or a record lacks/has extra fields."""
    out: dict[str, dict[str, Any]] = {}
    for r in recs:
        assert set(r) == set(LANDED_FIELDS), sorted(set(r) ^ set(LANDED_FIELDS))
        assert r["url"] not in out, f"{r['url']} recorded twice: {out.get(r['url'])} and {r}"
        out[r["url"]] = r
    return out


def path_of(url: str, base: str) -> str:
    """``url`` without ``base`` (another origin's URLs are returned whole)."""
    return url[len(base):] if url.startswith(base + "/") else url


def spec(tmp_path: Path, start_urls: list[str], name: str = "fixture", **kw: Any) -> CrawlSpec:
    args: dict[str, Any] = {
        "source": name,
        "crawl_id": f"{name}-20260101T000000000000Z",
        "start_urls": start_urls,
        "allowed_domains": ["127.0.0.1"],
        "output_path": str(tmp_path / "raw" / name / f"{name}-20260101T000000000000Z.jsonl.gz"),
        "max_depth": 3,
        "timeout_s": 60,
        "allow_addresses": ["127.0.0.1"],
        "retry_backoff_s": 0.05,
    }
    args.update(kw)
    return CrawlSpec(**args)


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
