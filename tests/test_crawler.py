"""The crawl runner and the ``site`` spider on a fixture site that holds many faults at once.

One real crawl (a child process, ``run_crawl``) of a site served by the test on 127.0.0.1 gives
one record per URL the crawler considered; the tests below check the outcome row of EVERY URL of
that crawl (links and rules, redirects, sizes, content types, charsets, robots.txt, traps, session
ids, blocked addresses, sitemaps) and that nothing else was recorded or requested. Then the
runner's own behaviour: max_pages and record_base_url, an unreachable start URL, the timeout, and
invalid specs. Server faults (retries, timeouts), conditional recrawls and resumable crawls are in
``test_crawler_faults.py``; functions without a crawl in ``test_crawler_units.py``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli
import pytest
from crawlsite import ISO_UTC, Page, Site, by_url, html, path_of, records, send, spec

from dataset_platform.contracts.records import LANDED_FIELDS, OUTCOMES
from dataset_platform.ingest.crawl import (
    CrawlError,
    CrawlSpec,
    CrawlSummary,
    partial_path_for,
    run_crawl,
    spec_path_for,
)

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 20_000
#: A Chinese text of our own (GB18030-encoded on the wire, labelled or not).
ZH_TEXT = "春天的早晨，河边的柳树发出了新芽，孩子们背着书包走过石桥，老师在教室门口微笑着等待他们。这一页专门用来检查中文编码是否被正确地识别和解码。"
FR_TEXT = "Café crème, brûlée à la française: déjà vu, naïve façade."
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24 + b"fixture-image"
BIG_BODY = html("Big", extra="<p>" + "x" * 100_000 + "</p>")  # 100 kB > MAX_BYTES


@functools.cache
def _gzip_bomb(mib: int) -> bytes:
    """gzip of ``mib`` MiB of zeros (about 1 KB per MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join([*(c.compress(zeros) for _ in range(mib)), c.flush()])


@functools.cache
def _brotli_bomb(mib: int) -> bytes:
    """brotli of ``mib`` MiB of zeros (1 GiB -> under 2 KB; about 2 s to make)."""
    c = brotli.Compressor(quality=5)
    zeros = b"\0" * (1 << 20)
    return b"".join([*(c.process(zeros) for _ in range(mib)), c.finish()])


def _sitemap(urls: list[str], index: bool = False) -> bytes:
    tag, item = ("sitemapindex", "sitemap") if index else ("urlset", "url")
    locs = "".join(f"<{item}><loc>{u}</loc></{item}>" for u in urls)
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<{tag} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</{tag}>').encode()


# ------------------------------------------------------------------ the fixture site


def build_site(site: Site) -> None:
    """Routes of the fixture site (see the expected table in ``expected_outcomes``)."""
    port, base, r = site.port, site.base, site.routes
    index_links = [
        "/a.html", "a.html", "/b.html#top",  # one page, linked three ways
        # session ids, tracking parameters, fragments, parameter order: one fetch each
        "/session;jsessionid=ABC123", "/session?sid=s3cr3t", "/session?utm_source=news&utm_medium=mail",
        "/session#part-2", "/q?b=2&a=1", "/q?a=1&b=2&fbclid=xyz",
        "/private/secret.html",  # robots.txt
        "http://example.com/offsite",  # off allowed_domains (never resolved)
        f"http://127.0.0.2:{port}/x", f"http://127.0.0.3:{port}/y", f"http://localhost:{port}/z",  # not allowed
        "mailto:someone@example.org", "javascript:void(0)", "ftp://127.0.0.1/f", "file:///etc/passwd",
        "data:text/html,hi", "tel:+15550100",
        "/denied/page.html", "/unlisted/page.html",  # deny pattern, no allow pattern matches
        "/old.html", "/loop1", "/hop/a", "/to-blocked",  # redirects
        "/img.png", "/doc.pdf", "/blob", "/plain.txt", "/no-type",  # content types
        "/big.html", "/big-chunked.html", "/bomb.html", "/bomb-br.html",  # sizes
        "/cs/gbk-as-utf8.html", "/cs/gbk-unlabelled.html", "/cs/latin1.html", "/cs/utf8-as-latin1.html",
        "/missing.html",
        "/calendar?month=1", "/cal/2026/1",  # crawler traps
        "/d/a.html",  # depth chain
    ]
    not_anchors = '<img src="/not-followed.png"><link rel="stylesheet" href="/style.css"><a>no href</a><a href="">x</a>'
    r["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private/\n", "text/plain")
    r["/"] = Page(html("Home", index_links, not_anchors))
    r["/a.html"] = Page(html("A", ["/", "/b.html", "/a.html?utm_campaign=x"]))
    r["/b.html"] = Page(html("B", ["/a.html"]))
    r["/session"] = Page(html("Session", []))
    r["/q"] = Page(html("Query", []))
    r["/private/secret.html"] = Page(html("Secret", []))
    r["/denied/page.html"] = Page(html("Denied", []))
    r["/unlisted/page.html"] = Page(html("Unlisted", []))
    r["/old.html"] = Page(b"", status=301, headers={"Location": "/new.html"})
    r["/new.html"] = Page(html("Moved here", ["/old.html"]), "application/xhtml+xml")
    r["/loop1"] = Page(b"", status=302, headers={"Location": "/loop2"})
    r["/loop2"] = Page(b"", status=302, headers={"Location": f"{base}/loop1"})
    hops = "abcdefgh"
    for i, c in enumerate(hops[:-1]):
        r[f"/hop/{c}"] = Page(b"", status=302, headers={"Location": f"/hop/{hops[i + 1]}"})
    r["/to-blocked"] = Page(b"", status=307, headers={"Location": f"http://127.0.0.2:{port}/r"})
    r["/img.png"] = Page(PNG, "image/png")
    r["/doc.pdf"] = Page(b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "application/pdf")
    r["/blob"] = Page(bytes(range(256)) * 4, "application/octet-stream")
    r["/plain.txt"] = Page(b'plain text <a href="/from-text.html">x</a>\n', "text/plain; charset=utf-8")
    r["/no-type"] = Page(html("No Content-Type", ["/from-untyped.html"]), None)
    r["/from-untyped.html"] = Page(html("Reached from a page without Content-Type"))
    r["/big.html"] = Page(BIG_BODY)
    r["/big-chunked.html"] = lambda s, h: send(h, 200, BIG_BODY, content_length=False)  # no Content-Length
    r["/bomb.html"] = Page(gzip_bomb(), headers={"Content-Encoding": "gzip"})
    r["/bomb-br.html"] = Page(brotli_bomb(), headers={"Content-Encoding": "br"})
    zh = f"<html><head><title>中文</title></head><body><p>{ZH_TEXT}</p></body></html>".encode("gb18030")
    r["/cs/gbk-as-utf8.html"] = Page(zh, "text/html; charset=utf-8")
    r["/cs/gbk-unlabelled.html"] = Page(zh, "text/html")
    fr = f"<html><head><title>FR</title></head><body><p>{FR_TEXT}</p></body></html>"
    r["/cs/latin1.html"] = Page(fr.encode("latin-1"), "text/html; charset=ISO-8859-1")
    r["/cs/utf8-as-latin1.html"] = Page(fr.encode("utf-8"), "text/html; charset=ISO-8859-1")
    r["/missing.html"] = Page(html("Not found", ["/from-404.html"]), status=404)

    def calendar(s: Site, h: Any) -> None:
        n = int(h.path.split("month=", 1)[1])
        send(h, 200, html(f"Month {n}", [f"/calendar?month={n + 1}"]))

    def cal(s: Site, h: Any) -> None:
        n = int(h.path.rsplit("/", 1)[1])
        send(h, 200, html(f"Page {n}", [f"/cal/2026/{n + 1}"]))

    r["/calendar"] = calendar
    site.prefix_routes["/cal/2026/"] = cal
    letters = "abcdefghij"
    for i, c in enumerate(letters[:-1]):
        r[f"/d/{c}.html"] = Page(html(f"Depth {c}", [f"/d/{letters[i + 1]}.html"]))
    r["/sitemap_index.xml"] = Page(_sitemap([f"{base}/sitemaps/a.xml", f"{base}/sitemaps/b.xml.gz"], index=True),
                                   "application/xml")
    r["/sitemaps/a.xml"] = Page(_sitemap([f"{base}/from-sitemap/1.html"]), "application/xml")
    r["/sitemaps/b.xml.gz"] = Page(
        gzip.compress(_sitemap([f"{base}/from-sitemap/2.html", f"{base}/from-sitemap/2.html?utm_source=sitemap"])),
        "application/x-gzip")
    r["/sitemap.xml"] = Page(_sitemap([f"{base}/from-sitemap/3.html", "http://example.com/in-sitemap"]),
                             "application/xml")
    site.prefix_routes["/from-sitemap/"] = lambda s, h: send(h, 200, html("From a sitemap"))


def gzip_bomb() -> bytes:
    return _gzip_bomb(19)  # ~19 KB (under MAX_BYTES, so it is downloaded) -> 19 MiB


def brotli_bomb() -> bytes:
    return _brotli_bomb(1024)  # ~1.6 KB -> 1 GiB


def expected_outcomes(base: str, port: int) -> dict[str, tuple[str, str | None, int, str | None]]:
    """recorded URL (path for this origin) -> (outcome, detail, depth, referer path)."""
    def u(p: str) -> str:
        return base + p

    too_large = f"max_bytes_per_page={MAX_BYTES}; "
    e: dict[str, tuple[str, str | None, int, str | None]] = {
        "/": ("fetched", None, 0, None),
        "/a.html": ("fetched", None, 1, "/"),
        "/b.html": ("fetched", None, 1, "/"),
        "/session": ("fetched", None, 1, "/"),
        "/q?a=1&b=2": ("fetched", None, 1, "/"),
        "/private/secret.html": ("robots_disallowed", None, 1, "/"),
        "http://example.com/offsite": ("off_domain", "example.com", 1, "/"),
        f"http://127.0.0.2:{port}/x": ("blocked_address", "127.0.0.2", 1, "/"),
        f"http://127.0.0.3:{port}/y": ("blocked_address", "127.0.0.3", 1, "/"),
        f"http://localhost:{port}/z": ("blocked_address", "localhost", 1, "/"),
        "mailto:someone@example.org": ("filtered_by_rule", "scheme:mailto", 1, "/"),
        "javascript:void(0)": ("filtered_by_rule", "scheme:javascript", 1, "/"),
        "ftp://127.0.0.1/f": ("filtered_by_rule", "scheme:ftp", 1, "/"),
        "file:///etc/passwd": ("filtered_by_rule", "scheme:file", 1, "/"),
        "data:text/html,hi": ("filtered_by_rule", "scheme:data", 1, "/"),
        "tel:+15550100": ("filtered_by_rule", "scheme:tel", 1, "/"),
        "/denied/page.html": ("filtered_by_rule", "deny:/denied/", 1, "/"),
        "/unlisted/page.html": ("filtered_by_rule", "allow:no_match", 1, "/"),
        "/old.html": ("redirected", u("/new.html"), 1, "/"),
        "/new.html": ("fetched", None, 1, "/old.html"),
        "/loop1": ("redirected", u("/loop2"), 1, "/"),
        "/loop2": ("failed:redirect_loop", u("/loop1"), 1, "/loop1"),
        "/hop/a": ("redirected", u("/hop/b"), 1, "/"),
        "/hop/b": ("redirected", u("/hop/c"), 1, "/hop/a"),
        "/hop/c": ("redirected", u("/hop/d"), 1, "/hop/b"),
        "/hop/d": ("failed:too_many_redirects", u("/hop/e"), 1, "/hop/c"),  # max_redirects=3
        "/to-blocked": ("redirected", f"http://127.0.0.2:{port}/r", 1, "/"),
        f"http://127.0.0.2:{port}/r": ("blocked_address", "127.0.0.2", 1, "/to-blocked"),
        "/img.png": ("not_html", None, 1, "/"),
        "/doc.pdf": ("not_html", None, 1, "/"),
        "/blob": ("not_html", None, 1, "/"),
        "/plain.txt": ("not_html", None, 1, "/"),
        "/no-type": ("fetched", None, 1, "/"),  # no Content-Type: sniffed as HTML
        "/from-untyped.html": ("fetched", None, 2, "/no-type"),
        "/big.html": ("too_large", too_large + f"declared {len(BIG_BODY)} B", 1, "/"),
        "/big-chunked.html": ("too_large", too_large + f"received more than {MAX_BYTES} B", 1, "/"),
        "/bomb.html": ("too_large", None, 1, "/"),  # detail checked apart
        "/bomb-br.html": ("too_large", None, 1, "/"),
        "/cs/gbk-as-utf8.html": ("fetched", None, 1, "/"),
        "/cs/gbk-unlabelled.html": ("fetched", None, 1, "/"),
        "/cs/latin1.html": ("fetched", None, 1, "/"),
        "/cs/utf8-as-latin1.html": ("fetched", None, 1, "/"),
        "/missing.html": ("failed:http_404", None, 1, "/"),
        # traps (trap_max_per_pattern=4): four of each shape, then the bound
        **{f"/calendar?month={n}": ("fetched", None, n, "/" if n == 1 else f"/calendar?month={n - 1}")
           for n in range(1, 5)},
        "/calendar?month=5": ("filtered_by_rule", "trap:/calendar?month={n}", 5, "/calendar?month=4"),
        **{f"/cal/2026/{n}": ("fetched", None, n, "/" if n == 1 else f"/cal/2026/{n - 1}") for n in range(1, 5)},
        "/cal/2026/5": ("filtered_by_rule", "trap:/cal/{n}/{n}", 5, "/cal/2026/4"),
        # depth (max_depth=5)
        **{f"/d/{c}.html": ("fetched", None, i + 1, "/" if i == 0 else f"/d/{'abcde'[i - 1]}.html")
           for i, c in enumerate("abcde")},
        "/d/f.html": ("filtered_by_rule", "max_depth", 6, "/d/e.html"),
        # sitemaps (depth 0; their URLs too)
        "/sitemap_index.xml": ("not_html", "sitemap:sitemapindex:2", 0, None),
        "/sitemaps/a.xml": ("not_html", "sitemap:urlset:1", 0, "/sitemap_index.xml"),
        "/sitemaps/b.xml.gz": ("not_html", "sitemap:urlset:2", 0, "/sitemap_index.xml"),
        "/sitemap.xml": ("not_html", "sitemap:urlset:2", 0, None),
        "/from-sitemap/1.html": ("fetched", None, 0, "/sitemaps/a.xml"),
        "/from-sitemap/2.html": ("fetched", None, 0, "/sitemaps/b.xml.gz"),
        "/from-sitemap/3.html": ("fetched", None, 0, "/sitemap.xml"),
        "http://example.com/in-sitemap": ("off_domain", "example.com", 0, "/sitemap.xml"),
    }
    return e



@dataclass
class Crawl:
    site: Site
    blocked_sites: list[Site]  # servers on 127.0.0.2/3 at the same port (when they could be bound)
    spec: CrawlSpec
    summary: CrawlSummary
    messages: list[str]
    recs: dict[str, dict[str, Any]]  # by path (this origin) or whole URL

    def rec(self, path: str) -> dict[str, Any]:
        return self.recs[path]


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    site = Site()
    blocked: list[Site] = []
    for host in ("127.0.0.2", "127.0.0.3"):
        try:
            blocked.append(Site({"/": Page(html("must not be fetched"))}, host=host, port=site.port))
        except OSError:  # the address cannot be bound here: that part of the check is skipped
            pass
    build_site(site)
    tmp = tmp_path_factory.mktemp("crawl")
    s = spec(
        tmp, [site.base + "/"],
        allowed_domains=["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"],
        max_depth=5, trap_max_per_pattern=4, max_redirects=3, max_bytes_per_page=MAX_BYTES,
        deny_url_patterns=["/denied/"], allow_url_patterns=[r"^https?://[^/]+/(?!unlisted/)"],
        sitemap_urls=[site.base + "/sitemap_index.xml", site.base + "/sitemap.xml"],
    )
    messages: list[str] = []
    summary = run_crawl(s, log=messages.append)
    recs = {path_of(url, site.base): r for url, r in by_url(records(s.output_path)).items()}
    try:
        yield Crawl(site, blocked, s, summary, messages, recs)
    finally:
        for x in (site, *blocked):
            x.close()


# ------------------------------------------------------------------ every URL, nothing lost


def test_every_considered_url_has_exactly_one_record_with_its_outcome(crawl: Crawl) -> None:
    expected = expected_outcomes(crawl.site.base, crawl.site.port)
    assert set(crawl.recs) == set(expected)  # nothing lost, nothing extra (by_url: no URL twice)
    got = {p: (r["outcome"], r["detail"], r["depth"], r["referer"] and path_of(r["referer"], crawl.site.base))
           for p, r in crawl.recs.items()}
    for p, (outcome, detail, depth, referer) in expected.items():
        want = (outcome, detail if detail is not None or outcome != "too_large" else got[p][1], depth, referer)
        assert got[p] == want, p
    for r in crawl.recs.values():
        assert set(r) == set(LANDED_FIELDS)
        assert r["outcome"] in OUTCOMES or r["outcome"].startswith("failed:")
        assert ISO_UTC.fullmatch(r["fetched_at"])


def test_fields_follow_the_outcome(crawl: Crawl) -> None:
    """fetch_url/status/headers only with a request/response; html only for fetched."""
    pages = crawl.site.routes
    for p, r in crawl.recs.items():
        outcome = r["outcome"]
        requested = outcome in ("fetched", "redirected", "not_html", "too_large") or outcome.startswith("failed:")
        assert (r["fetch_url"] is not None) == requested, p
        if r["fetch_url"] is not None:
            assert r["fetch_url"] == crawl.site.base + p  # no record_base_url: recorded as requested
        has_response = outcome in ("fetched", "redirected", "not_html") or outcome.startswith(
            ("failed:http_", "failed:redirect", "failed:too_many"))
        assert (r["status"] is not None) == has_response, p
        assert (r["headers"] is not None) == has_response, p
        assert (r["html"] is not None) == (outcome == "fetched"), p
        assert r["title"] is None and r["text"] is None  # dumps only
        if outcome == "fetched":
            page = pages.get(p.split("?")[0])
            body = page.body if hasattr(page, "body") else None
            if body is not None:
                assert r["body_bytes"] == len(body)
            assert r["status"] == 200 and len(r["content_hash"]) == 32 and r["charset"]
        if has_response:
            headers = json.loads(r["headers"])
            assert all(k == k.lower() for k in headers) and "set-cookie" not in headers
        if outcome not in ("fetched",):
            assert r["charset"] is None or outcome == "not_modified", p


def test_links_are_deduplicated_on_the_canonical_url_and_fetched_once(crawl: Crawl) -> None:
    site = crawl.site
    hits = [h.path for h in site.hits]
    for path in ("/", "/a.html", "/b.html", "/session", "/q?a=1&b=2", "/robots.txt", "/new.html"):
        assert hits.count(path) == 1, path
    # the session id, tracking parameters and fragments never reached the server
    assert not [h for h in hits if any(x in h for x in ("jsessionid", "sid=", "utm_", "fbclid", "#"))]
    assert crawl.rec("/session")["fetch_url"] == site.base + "/session"


def test_robots_txt_is_obeyed_and_only_anchor_links_of_fetched_html_are_followed(crawl: Crawl) -> None:
    seen = crawl.site.paths()
    assert "/robots.txt" in seen
    assert not [p for p in seen if p.startswith("/private/")]
    for never in ("/from-404.html", "/from-text.html", "/not-followed.png", "/style.css", "/denied/page.html",
                  "/unlisted/page.html", "/d/f.html", "/calendar?month=5", "/cal/2026/5", "/hop/e"):
        assert never not in seen, never


def test_other_schemes_and_blocked_addresses_are_never_requested(crawl: Crawl) -> None:
    for blocked in crawl.blocked_sites:  # servers at 127.0.0.2/3 on the same port: no connection at all
        assert blocked.hits == []
    for r in crawl.recs.values():
        if r["outcome"] == "blocked_address":
            assert r["fetch_url"] is None and r["status"] is None
    assert crawl.summary.stats.get("failed_requests", 0) == 0


def test_redirects_are_recorded_hop_by_hop(crawl: Crawl) -> None:
    old = crawl.rec("/old.html")
    assert (old["status"], json.loads(old["headers"])["location"]) == (301, "/new.html")
    new = crawl.rec("/new.html")
    assert new["content_type"] == "application/xhtml+xml" and "Moved here" in new["html"]
    assert crawl.site.count("/loop1") == 1 and crawl.site.count("/loop2") == 1
    assert crawl.rec("/hop/d")["status"] == 302


def test_binary_bodies_are_not_html_and_not_stored(crawl: Crawl) -> None:
    for p, ctype in (("/img.png", "image/png"), ("/doc.pdf", "application/pdf"),
                     ("/blob", "application/octet-stream"), ("/plain.txt", "text/plain")):
        r = crawl.rec(p)
        assert (r["content_type"], r["html"], r["charset"], r["status"]) == (ctype, None, None, 200), p
        body = crawl.site.routes[p].body  # type: ignore[union-attr]
        assert r["body_bytes"] == len(body) and r["content_hash"] == hashlib.md5(body).hexdigest()


def test_bodies_over_the_limit_are_too_large_and_bombs_do_not_blow_up_memory(crawl: Crawl) -> None:
    for p in ("/big.html", "/big-chunked.html", "/bomb.html", "/bomb-br.html"):
        r = crawl.rec(p)
        assert r["html"] is None and r["body_bytes"] is None and r["fetch_url"], p
    for p, bomb in (("/bomb.html", gzip_bomb()), ("/bomb-br.html", brotli_bomb())):
        assert re.fullmatch(rf"max_bytes_per_page={MAX_BYTES}; decompressed size > {MAX_BYTES} B "
                            rf"\(stopped at (\d+) B; {len(bomb)} B compressed\)", crawl.rec(p)["detail"]), p
    # 1 GiB of brotli-compressed zeros was not decompressed: the crawl process stayed small
    assert crawl.summary.stats["max_rss_kb"] < 400 * 1024
    for p in ("/big.html", "/big-chunked.html", "/bomb.html", "/bomb-br.html"):
        assert crawl.site.count(p) == 1  # not retried


def test_charsets_are_detected_when_missing_or_wrong(crawl: Crawl) -> None:
    for p in ("/cs/gbk-as-utf8.html", "/cs/gbk-unlabelled.html"):
        r = crawl.rec(p)
        assert r["charset"] == "gb18030", p
        assert ZH_TEXT in r["html"] and "<title>中文</title>" in r["html"]
    latin = crawl.rec("/cs/latin1.html")
    assert latin["charset"] == "cp1252" and FR_TEXT in latin["html"]  # WHATWG: ISO-8859-1 is windows-1252
    mislabelled = crawl.rec("/cs/utf8-as-latin1.html")
    assert mislabelled["charset"] == "utf-8" and FR_TEXT in mislabelled["html"]
    assert crawl.rec("/a.html")["charset"] == "utf-8"


def test_traps_are_bounded_and_the_crawl_finishes(crawl: Crawl) -> None:
    assert crawl.summary.finish_reason == "finished"
    assert [h.path for h in crawl.site.hits if h.path.startswith("/calendar")] == [
        f"/calendar?month={n}" for n in range(1, 5)]


def test_sitemaps_are_read_plain_gzipped_and_as_index(crawl: Crawl) -> None:
    for p in ("/from-sitemap/1.html", "/from-sitemap/2.html", "/from-sitemap/3.html"):
        assert crawl.site.count(p) == 1
    assert crawl.rec("/sitemaps/b.xml.gz")["content_type"] == "application/x-gzip"


def test_summary_counts_the_batch_and_the_output_is_atomic(crawl: Crawl) -> None:
    s, recs = crawl.summary, list(crawl.recs.values())
    assert s.pages == len(recs)
    assert s.bytes == sum(r["body_bytes"] or 0 for r in recs)
    outcomes: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in recs:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        if r["status"] is not None:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    assert s.outcomes == outcomes and s.status_counts == statuses
    assert s.output_path == crawl.spec.output_path
    assert s.stats["robotstxt/forbidden"] == 1
    assert any(f"done (finished): {len(recs)} URLs" in m for m in crawl.messages)
    assert any("closed: finished" in m for m in crawl.messages)
    # the spec sits next to the batch; the batch is gzip with mtime 0 and no stored file name
    assert CrawlSpec.from_json(spec_path_for(crawl.spec.output_path).read_text(encoding="utf-8")) == crawl.spec
    header = Path(crawl.spec.output_path).read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\x00\x00\x00\x00" and not header[3] & 0x08
    assert not partial_path_for(crawl.spec.output_path).exists()


# ------------------------------------------------------------------ the runner


@pytest.fixture
def small_site() -> Iterator[Site]:
    site = Site({
        "/robots.txt": Page(b"User-agent: *\nAllow: /\n", "text/plain"),
        "/": Page(html("Home", ["/1.html", "/2.html", "/3.html", "/4.html", "/5.html"])),
        **{f"/{i}.html": Page(html(f"Page {i}", ["/", f"/{i}/deeper.html"])) for i in range(1, 6)},
    })
    yield site
    site.close()


def test_max_pages_and_record_base_url(small_site: Site, tmp_path: Path) -> None:
    base = "https://mirror.example.org/site/"
    s = spec(tmp_path, [small_site.base + "/"], max_pages=4, max_depth=5, record_base_url=base)
    summary = run_crawl(s)
    recs = by_url(records(s.output_path))
    m = "https://mirror.example.org/site"
    expected = {
        m + "/": ("fetched", None, None),
        **{f"{m}/{i}.html": ("fetched", None, m + "/") for i in (1, 2, 3)},
        **{f"{m}/{i}.html": ("filtered_by_rule", "max_pages", m + "/") for i in (4, 5)},
        **{f"{m}/{i}/deeper.html": ("filtered_by_rule", "max_pages", f"{m}/{i}.html") for i in (1, 2, 3)},
    }
    assert {u: (r["outcome"], r["detail"], r["referer"]) for u, r in recs.items()} == expected
    assert summary.pages == len(expected) and summary.finish_reason == "finished"
    for u, r in recs.items():
        if r["outcome"] == "fetched":
            assert r["fetch_url"] == small_site.base + u.removeprefix(m)
        else:
            assert r["fetch_url"] is None
    assert small_site.paths() == {"/robots.txt", "/", "/1.html", "/2.html", "/3.html"}


def test_unreachable_start_url_is_recorded_as_failed(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port on 127.0.0.1 where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = spec(tmp_path, [f"http://127.0.0.1:{port}/"], name="gone", retry_times=2)
    summary = run_crawl(s)
    (rec,) = records(s.output_path)
    assert (rec["url"], rec["outcome"], rec["fetch_url"], rec["status"]) == (
        f"http://127.0.0.1:{port}/", "failed:connection_refused", f"http://127.0.0.1:{port}/", None)
    assert rec["detail"]
    assert summary.pages == 1 and summary.finish_reason == "finished"
    assert summary.outcomes == {"failed:connection_refused": 1}
    assert summary.stats["failed_requests"] == 1
    # retry_times=2: three attempts at robots.txt (Scrapy then allows everything), three at the page
    assert summary.stats["downloader/request_count"] == 6


def test_timeout_kills_the_crawl_and_leaves_no_file(tmp_path: Path) -> None:
    site = Site({"/": Page(html("Home", ["/slow.html"]))})
    site.routes["/slow.html"] = lambda s, h: (s.stopping.wait(30), send(h, 200, html("late")))
    s = spec(tmp_path, [site.base + "/"], timeout_s=4, obey_robots=False)
    part = partial_path_for(s.output_path)
    part_seen = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if part.exists():
                part_seen.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(CrawlError, match="timed out after 4 s and was killed"):
            run_crawl(s)
    finally:
        done.set()
        watcher.join()
        site.close()
    assert time.monotonic() - t0 < 10
    assert part_seen.is_set()  # the batch was being written when the crawl was killed...
    assert not part.exists() and not Path(s.output_path).exists()  # ...and nothing half-written remains


def test_an_invalid_spec_cannot_be_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        CrawlSpec(
            source="bad", crawl_id="bad-1", start_urls=["ftp://example.org/"], allowed_domains=["example.org"],
            output_path=str(tmp_path / "bad-1.jsonl.gz"), max_pages=0, retry_backoff_s=-1,
        )
    msg = str(e.value)
    assert "max_pages" in msg and "greater than or equal to 1" in msg
    assert "URL 'ftp://example.org/' must be http(s)://" in msg and "retry_backoff_s" in msg


def test_the_crawl_process_validates_the_spec_again(tmp_path: Path) -> None:
    # a spec file that was edited (or written by another version): the child rejects it, and the
    # runner reports the child's reasons
    s = CrawlSpec.model_construct(
        source="bad", crawl_id="bad-1", start_urls=["ftp://example.org/"], allowed_domains=["example.org"],
        output_path=str(tmp_path / "bad-1.jsonl.gz"), max_pages=0, retry_backoff_s=-1,
    )
    with pytest.raises(CrawlError) as e:
        run_crawl(s)
    msg = str(e.value)
    assert "exit code 2" in msg
    assert "max_pages: input should be greater than or equal to 1, got 0" in msg
    assert "start_urls: URL 'ftp://example.org/' must be http(s)://" in msg
    assert "retry_backoff_s: input should be greater than or equal to 0, got -1" in msg
    assert not Path(s.output_path).exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"source": "s", "crawl_id": "c", "start_urls": ["http://e.org/"], "allowed_domains": []}),
         "output_path: required field is missing"),
        (json.dumps(["a list"]), "must be a JSON object"),
    ],
)
def test_run_module_by_hand_rejects_broken_specs(tmp_path: Path, content: str, expected: str) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(content, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "crawlers.run", str(spec_file)], cwd=REPO, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert expected in proc.stderr and str(spec_file) in proc.stderr
    assert "CRAWL_SUMMARY" not in proc.stdout


def test_spec_validation_in_process() -> None:
    good = {"source": "s", "crawl_id": "c", "start_urls": ["https://e.org/"], "allowed_domains": ["e.org"],
            "output_path": "/tmp/x.jsonl.gz"}
    parsed = CrawlSpec.from_dict(good)
    assert (parsed.max_pages, parsed.retry_backoff_s, parsed.allow_addresses, parsed.state_dir) == (1000, 1.0, [], None)
    assert CrawlSpec.from_json(parsed.to_json()) == parsed
    with pytest.raises(ValueError) as e:  # every problem at once
        CrawlSpec.from_dict({**good, "max_page": 5, "obey_robots": "yes"})
    assert "max_page: unknown field" in str(e.value) and "obey_robots: input should be a valid boolean" in str(e.value)
    with pytest.raises(ValueError, match="allowed domain 'e.org:8080' must be a bare host name"):
        CrawlSpec.from_dict({**good, "allowed_domains": ["e.org:8080"]})
    with pytest.raises(ValueError, match=r"allowed_domains: required field is missing \(an empty list allows every host"):
        CrawlSpec.from_dict({k: v for k, v in good.items() if k != "allowed_domains"})
    bad = {  # the JSON's types are taken as they are: no true for 1, no "1" for 1
        "sitemap_urls": (["file:///s.xml"], "sitemap_urls: URL 'file:///s.xml' must be http(s)://"),
        "start_urls": (["/relative"], "start_urls: URL '/relative' must be http(s)://"),
        "deny_url_patterns": (["(unclosed"], "deny_url_patterns: '(unclosed' is not a valid regular expression"),
        "allow_addresses": (["10.0.0.0/33"], "allow_addresses: '10.0.0.0/33' is not an IP address or CIDR"),
        "trap_max_per_pattern": (0, "trap_max_per_pattern: input should be greater than or equal to 1"),
        "max_redirects": (-1, "max_redirects: input should be greater than or equal to 0"),
        "retry_times": (True, "retry_times: input should be a valid integer, got True"),
        "retry_backoff_s": ("1", "retry_backoff_s: input should be a valid number, got '1'"),
        "download_timeout_s": (0, "download_timeout_s: input should be greater than 0"),
        "state_dir": ("  ", "state_dir: must not be empty"),
        "known_pages_path": (5, "known_pages_path: input should be a valid string, got 5"),
        "record_base_url": ("ftp://x/", "record_base_url: must be an http(s):// URL, got 'ftp://x/'"),
        "user_agent": ("", "user_agent: must not be empty"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            CrawlSpec.from_dict({**good, name: value})
    assert CrawlSpec.from_dict({**good, "retry_backoff_s": 0}).retry_backoff_s == 0
    assert spec_path_for("/d/src-1.jsonl.gz") == Path("/d/src-1.spec.json")


# ------------------------------------------------------------------ allowed addresses and their ports


def test_an_allowed_address_is_allowed_on_the_crawls_own_ports_only(tmp_path: Path) -> None:
    """Issue 19: allowing 127.0.0.1 for a site on one port must not let its pages' links reach every
    other service of the machine; an entry with :port allows that port too."""
    other = Site({"/": Page(html("Admin console", []))})  # another local service, on another port
    other_port = int(other.base.rsplit(":", 1)[1])
    site = Site({
        "/robots.txt": Page(b"User-agent: *\nAllow: /\n", "text/plain"),
        "/": Page(html("Home", ["/a.html", f"http://127.0.0.1:{other_port}/"])),
        "/a.html": Page(html("Page a", [])),
    })
    try:
        s = spec(tmp_path / "own", [site.base + "/"], allowed_domains=[])
        run_crawl(s)
        recs = by_url(records(s.output_path))
        assert recs[site.base + "/a.html"]["outcome"] == "fetched"
        blocked = recs[f"http://127.0.0.1:{other_port}/"]
        assert (blocked["outcome"], blocked["detail"]) == ("blocked_address", f"127.0.0.1:{other_port}")
        assert other.paths() == set()  # never connected to
        s = spec(tmp_path / "named", [site.base + "/"], allowed_domains=[],
                 allow_addresses=["127.0.0.1", f"127.0.0.1:{other_port}"])
        run_crawl(s)
        assert by_url(records(s.output_path))[f"http://127.0.0.1:{other_port}/"]["outcome"] == "fetched"
        assert "/" in other.paths()
    finally:
        site.close()
        other.close()


@pytest.mark.parametrize("entry, address, port, refused", [
    ("127.0.0.1", "127.0.0.1", 8080, None),  # the crawl's own port
    ("127.0.0.1", "127.0.0.1", 9090, "loopback, port 9090 not allowed"),
    ("127.0.0.1:9090", "127.0.0.1", 9090, None),
    ("127.0.0.1:9090", "127.0.0.1", 8080, "loopback, port 8080 not allowed"),
    ("10.1.0.0/16:443", "10.1.2.3", 443, None),
    ("10.1.0.0/16:443", "10.1.2.3", 80, "private, port 80 not allowed"),
    ("[::1]:8080", "::1", 8080, None),
    ("::1", "::1", 22, "loopback, port 22 not allowed"),
    ("127.0.0.1", "127.0.0.2", 8080, "loopback"),
])
def test_address_policy_with_ports(entry: str, address: str, port: int, refused: str | None) -> None:
    from crawlers.guard import AddressPolicy

    policy = AddressPolicy([entry], own_ports=[8080])
    assert policy.refused(address, port) == refused


def test_without_own_ports_an_entry_without_port_allows_any_port() -> None:
    from crawlers.guard import AddressPolicy

    policy = AddressPolicy(["127.0.0.1", "10.0.0.5:443"])
    assert policy.refused("127.0.0.1", 9090) is None and policy.refused("127.0.0.1", 22) is None
    assert policy.refused("10.0.0.5", 80) == "private, port 80 not allowed"


@pytest.mark.parametrize("entry", ["127.0.0.1:0", "127.0.0.1:http", "127.0.0.1:70000", "[::1]x", "intranet:80"])
def test_allow_entries_with_a_bad_port_are_refused_at_load(entry: str) -> None:
    from dataset_platform.contracts.crawl import check_networks

    with pytest.raises(ValueError, match="optionally with :port"):
        check_networks([entry])
