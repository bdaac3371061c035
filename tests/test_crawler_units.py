"""Unit tests of the crawler's parts, without a crawl and without any network connection.

URL canonicalisation and shapes, charset decoding, outcome classification of download errors,
the address guard (classification only: private, link-local and metadata addresses appear here
as values, never as something connected to), Retry-After and backoff, the spider's callbacks on
hand-made responses, the recovery of a cut-off batch and the job-directory bookkeeping.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import zlib
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from crawlsite import spec
from scrapy.exceptions import (
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import HtmlResponse, Request, Response
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler
from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from crawlers import guard
from crawlers.guard import AddressPolicy, BlockedAddress, GuardedResolver, classify_address, classify_hostname
from crawlers.middlewares import (
    RETRY_DELAY_META,
    AddressGuardMiddleware,
    BackoffRetryMiddleware,
    RobotsDisallowed,
    TooLarge,
    retry_after_seconds,
)
from crawlers.outcomes import failed, failure_outcome
from crawlers.pipelines import recover_batch
from crawlers.run import JOBDIR_ENTRIES, STOP_MARKER, prepare_job_dir
from crawlers.spiders.site import CHAIN_META, CONDITIONAL_META, KIND_META, REFERER_META, SiteSpider, load_known_pages
from crawlers.urls import canonicalize, host_of, url_scheme, url_shape
from dataset_platform.contracts.records import FAILED_PREFIX, LANDED_FIELDS
from dataset_platform.text.charset import declared_encodings, decode_html

# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://Example.COM:80/a/b?b=2&a=1#frag", "http://example.com/a/b?a=1&b=2"),  # default port dropped
        ("https://example.com:443/", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),  # other ports kept
        ("http://example.com:443/", "http://example.com:443/"),  # 443 is not http's default
        ("http://user:secret@example.com/p", "http://example.com/p"),  # credentials never sent
        ("http://example.com", "http://example.com/"),
        ("http://example.com/p;jsessionid=0A1B2C?x=1", "http://example.com/p?x=1"),
        ("http://example.com/p;JSESSIONID=0A1B2C", "http://example.com/p"),
        ("http://example.com/p?SID=1&utm_source=x&q=a%20b&gclid=1&fbclid=2", "http://example.com/p?q=a+b"),
        ("http://example.com/p?PHPSESSID=abc&page=2", "http://example.com/p?page=2"),
        ("http://example.com/p?utm_medium=mail", "http://example.com/p"),
        ("http://example.com/p?sidebar=1", "http://example.com/p?sidebar=1"),  # not a session id
        ("http://bücher.example/ä", "http://xn--bcher-kva.example/%C3%A4"),  # IDNA host, UTF-8 path
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("  http://example.com/a b  ", "http://example.com/a%20b"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/a/", "http://example.com/a/"),  # trailing slash kept
        ("mailto:x@example.org", None),
        ("ftp://example.org/f", None),
        ("//example.org/relative", None),
        ("http:///no-host", None),
        ("http://example.com:99999/", None),
        ("http://[not-ipv6/", None),
    ],
)
def test_canonicalize(url: str, canonical: str | None) -> None:
    assert canonicalize(url) == canonical
    if canonical is not None:
        assert canonicalize(canonical) == canonical  # idempotent


def test_url_shape_scheme_and_host() -> None:
    assert url_shape("http://e.com/calendar?month=7&year=2026") == "/calendar?month={n}&year={n}"
    assert url_shape("http://e.com/cal/2026/12") == "/cal/{n}/{n}"
    assert url_shape("http://e.com/a.html") == "/a.html"
    assert url_shape("http://e.com/p7/x?id=123abc") == "/p{n}/x?id={n}abc"
    assert [url_scheme(u) for u in ("JavaScript:void(0)", " mailto:x", "data:text/html,x", "/rel", "a:b")] == [
        "javascript", "mailto", "data", "", "a"]
    assert host_of("http://User@EXAMPLE.org:81/x") == "example.org" and host_of("not a url") == ""


# ------------------------------------------------------------------ charsets

ZH = "春天的早晨，河边的柳树发出了新芽，孩子们背着书包走过石桥，老师在教室门口微笑着等待他们。"
FR = "Le café crème est très apprécié à Paris, où l'on déjeune en terrasse près de la fenêtre."
RU = "Привет! Это тестовая страница на русском языке, она проверяет определение кодировки."
DE = "„Größere Brötchen“ – schön warm… für 5 € beim Bäcker, sagt Jürgen."
ES = "El niño comió la piñata en España, ¿verdad? ¡Sí, señor!"
PL = "Zażółć gęślą jaźń. Łódź jest pięknym miastem, a źdźbło trawy rośnie przy drodze."


def _page(text: str, head: str = "") -> str:
    return f"<html><head>{head}<title>t</title></head><body><p>{text}</p></body></html>"


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "text"),
    [
        (_page(ZH).encode("gb18030"), "text/html; charset=utf-8", "gb18030", ZH),  # GBK labelled UTF-8
        (_page(ZH).encode("gbk"), "text/html", "gb18030", ZH),  # GBK, no label at all
        (_page(ZH).encode("gbk"), None, "gb18030", ZH),
        (_page(ZH, '<meta charset="gbk">').encode("gbk"), "text/html; charset=utf-8", "gb18030", ZH),  # meta wins
        (_page(FR).encode("latin-1"), "text/html; charset=ISO-8859-1", "cp1252", FR),  # WHATWG: latin-1 = cp1252
        (_page(FR).encode("utf-8"), "text/html; charset=ISO-8859-1", "utf-8", FR),  # UTF-8 labelled latin-1
        (_page(FR).encode("utf-8"), "text/html", "utf-8", FR),
        (_page(RU).encode("koi8-r"), "text/html", "koi8-r", RU),  # among the encodings of the web
        (_page(RU).encode("cp1251"), "text/html; charset=nonsense", "cp1251", RU),  # unknown label ignored
        (b"\xef\xbb\xbf" + _page(FR).encode("utf-8"), "text/html; charset=gbk", "utf-8", FR),  # BOM first
        (b"\xff\xfe" + _page(FR).encode("utf-16-le"), None, "utf-16-le", FR),
        (b"<p>plain ascii</p>", "text/html; charset=windows-1252", "cp1252", "plain ascii"),
        # lies and omissions a Western page tells (issue 19: "crème brûlée" came out as cp1257's
        # "crčme brūlée"): Latin-1 and cp1252 labelled UTF-8 or not labelled are Windows-1252 ...
        (_page("crème brûlée").encode("latin-1"), "text/html; charset=utf-8", "cp1252", "crème brûlée"),
        (_page(FR, '<meta charset="utf-8">').encode("latin-1"), None, "cp1252", FR),
        (_page(DE).encode("cp1252"), "text/html; charset=utf-8", "cp1252", DE),
        (_page(ES).encode("latin-1"), None, "cp1252", ES),
        # ... while other languages' single-byte and double-byte pages still go to detection
        (_page(PL).encode("cp1250"), "text/html; charset=utf-8", "cp1250", PL),
        (_page(RU).encode("cp1251"), "text/html; charset=utf-8", "cp1251", RU),
        (_page(ZH, '<meta charset="utf-8">').encode("gbk"), None, "gb18030", ZH),
    ],
)
def test_decode_html(body: bytes, content_type: str | None, encoding: str, text: str) -> None:
    got, enc = decode_html(body, content_type)
    assert enc == encoding
    assert text in got


def test_decode_html_never_fails_and_never_guesses_utf16_without_nul_bytes() -> None:
    text, enc = decode_html("€ café".encode("cp1252"), "text/html")  # too short to know; but not UTF-16
    assert not enc.startswith("utf-16") and "caf" in text
    text, enc = decode_html(bytes(range(128, 256)) * 3, None)
    assert isinstance(text, str) and enc
    assert declared_encodings(b'<meta charset="gb2312">', "text/html; charset=latin1") == ["cp1252", "gb18030"]


# ------------------------------------------------------------------ outcomes of failures


def test_failed_reason_is_normalised() -> None:
    assert failed("http_503") == "failed:http_503"
    assert failed("Redirect Loop!") == "failed:redirect_loop"
    assert failed("???") == "failed:error"
    assert failed("x").startswith(FAILED_PREFIX)


def _with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "outcome", "detail", "attempted"),
    [
        (BlockedAddress("10.0.0.5", "private"), "blocked_address", "10.0.0.5", False),
        (RobotsDisallowed("Forbidden by robots.txt"), "robots_disallowed", None, False),
        (TooLarge("ignored", "decompressed size > 20001 B (500 B compressed)"), "too_large",
         "max_bytes_per_page=20000; decompressed size > 20001 B (500 B compressed)", True),
        (DownloadCancelledError("Expected to receive 100000 bytes which is larger than download max size (20000) in "
                                "request <GET http://e.org/>."), "too_large", "max_bytes_per_page=20000; declared 100000 B",
         True),
        (DownloadCancelledError(""), "too_large", "max_bytes_per_page=20000; received more than 20000 B", True),
        (IgnoreRequest("Filtered offsite request to 'e.org'"), "off_domain", "e.org", False),
        (DownloadTimeoutError("Getting http://e.org/ took longer than 1.0 seconds."), "failed:timeout",
         "Getting http://e.org/ took longer than 1.0 seconds.", True),
        (DownloadConnectionRefusedError("refused"), "failed:connection_refused", "refused", True),
        (ResponseDataLossError("lost"), "failed:connection_lost", "data loss: lost", True),
        (DNSLookupError("no such host"), "failed:dns", "DNS lookup failed: no such host.", True),
        (_with_cause(RuntimeError("wrapped"), DownloadTimeoutError("t")), "failed:timeout", "wrapped", True),
        (ValueError("odd"), "failed:value_error", "odd", True),
        (type("SSLHandshakeFailure", (Exception,), {})("bad cert"), "failed:tls", "bad cert", True),
    ],
)
def test_failure_outcome(exc: BaseException, outcome: str, detail: str | None, attempted: bool) -> None:
    assert failure_outcome(exc, "e.org", 20_000) == (outcome, detail, attempted)


def test_a_name_refused_by_the_resolver_is_blocked_not_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(guard.REFUSED_AT_CONNECT, "rebinding.example", "10.9.8.7")
    assert failure_outcome(DNSLookupError("refused"), "rebinding.example", 1) == ("blocked_address", "10.9.8.7", False)


# ------------------------------------------------------------------ the address guard (no connection)


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.169.254", "metadata"), ("169.254.170.2", "metadata"), ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("[::1]", "loopback"),
        ("10.0.0.5", "private"), ("172.16.3.4", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
        ("169.254.1.1", "link_local"), ("fe80::1", "link_local"), ("fe80::1%eth0", "link_local"),
        ("fc00::1", "unique_local"), ("fd12:3456::1", "unique_local"),
        ("100.64.0.1", "shared"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.10", "reserved"),
        ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
        ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:0a00:0001::1", "private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo whose client address is 10.0.0.1
        ("8.8.8.8", None), ("93.184.215.14", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
        ("172.32.0.1", None),
    ],
)
def test_classify_address(address: str, category: str | None) -> None:
    assert classify_address(address) == category


def test_classify_address_rejects_names() -> None:
    with pytest.raises(ValueError):
        classify_address("example.org")


@pytest.mark.parametrize(
    ("host", "category"),
    [
        ("localhost", "loopback"), ("LOCALHOST.", "loopback"), ("api.localhost", "loopback"),
        ("localhost.localdomain", "loopback"), ("metadata.google.internal", "metadata"),
        ("metadata.google.internal.", "metadata"), ("instance-data", "metadata"), ("metadata", "metadata"),
        ("example.org", None), ("localhost.example.org", None), ("my-metadata.example", None),
    ],
)
def test_classify_hostname(host: str, category: str | None) -> None:
    assert classify_hostname(host) == category


def test_address_policy_allow_lists() -> None:
    policy = AddressPolicy(["127.0.0.1", "10.20.0.0/16", "fd00:1::/32"])
    assert policy.refused("127.0.0.1") is None
    assert policy.refused("127.0.0.2") == "loopback"  # only the listed address, not all of loopback
    assert policy.refused("10.20.5.6") is None and policy.refused("10.21.0.1") == "private"
    assert policy.refused("fd00:1::5") is None and policy.refused("fd00:2::5") == "unique_local"
    assert policy.refused("169.254.169.254") == "metadata"
    assert policy.refused("8.8.8.8") is None  # public addresses need no allowance
    assert policy.refused_host("127.0.0.3") == ("127.0.0.3", "loopback")
    assert policy.refused_host("[::1]") == ("::1", "loopback")
    assert policy.refused_host("LocalHost") == ("localhost", "loopback")  # refused by name, never resolved
    assert policy.refused_host("metadata.google.internal") == ("metadata.google.internal", "metadata")
    assert policy.refused_host("example.org") is None  # must be resolved first
    assert AddressPolicy().refused("127.0.0.1") == "loopback"
    assert AddressPolicy(["0.0.0.0/0"]).refused("192.168.0.1") is None  # everything allowed, explicitly
    with pytest.raises(ValueError):
        AddressPolicy(["10.0.0.0/33"])
    with pytest.raises(ValueError):
        AddressPolicy(["intranet"])


class _Stats:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def inc_value(self, key: str, n: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + n


class _Crawler:
    def __init__(self, allow: list[str]) -> None:
        self.settings = Settings({"DATASET_PLATFORM_ALLOW_ADDRESSES": allow, "DNS_TIMEOUT": 5})
        self.stats = _Stats()


def test_guard_middleware_checks_every_resolved_address_without_connecting() -> None:
    answers = {
        "dual.example": ["2606:4700::1", "10.1.2.3"],  # one private address among public ones
        "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "allowed.example": ["127.0.0.1"],
    }
    asked: list[str] = []

    async def fake_getaddrinfo(host: str, port: Any, **kw: Any) -> list[Any]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror("unknown host")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answers[host]]

    crawler = _Crawler(["127.0.0.1"])
    mw = AddressGuardMiddleware(crawler)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    loop.getaddrinfo = fake_getaddrinfo  # type: ignore[method-assign]
    try:
        def check(url: str) -> BlockedAddress | None:
            try:
                loop.run_until_complete(mw.process_request(Request(url)))
            except BlockedAddress as e:
                return e
            return None

        e = check("http://dual.example/a")
        assert e is not None and (e.address, e.category) == ("10.1.2.3", "private")
        assert check("http://dual.example/b") is not None and asked.count("dual.example") == 1  # cached
        assert check("http://public.example/") is None
        assert check("http://allowed.example:8000/") is None
        e = check("http://169.254.169.254/latest/meta-data/")  # an IP literal: never resolved
        assert e is not None and e.category == "metadata"
        e = check("http://metadata.google.internal/")
        assert e is not None and e.address == "metadata.google.internal"
        assert check("http://unknown.example/") is None  # the download then fails with failed:dns
        assert "169.254.169.254" not in asked and "metadata.google.internal" not in asked
        assert crawler.stats.values["dataset_platform/blocked_address"] == 4
    finally:
        loop.close()


def test_guarded_resolver_refuses_at_connect_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reactor's resolver refuses a refused literal or name at once, and a name whose answer is
    refused (DNS rebinding after the middleware's check); the answer is faked, nothing is sent."""
    answers = {"rebind.example": "10.0.0.7", "fine.example": "93.184.215.14", "127.0.0.1": "127.0.0.1"}
    monkeypatch.setattr("scrapy.resolver.CachingThreadedResolver.getHostByName",
                        lambda self, name, timeout=(): defer.succeed(answers[name]))
    resolver = GuardedResolver(object(), 0, 5.0, AddressPolicy(["127.0.0.1"]))
    results: list[Any] = []
    for name in ("127.0.0.2", "localhost", "rebind.example", "fine.example", "127.0.0.1"):
        resolver.getHostByName(name).addBoth(results.append)
    assert all(isinstance(r, Failure) and r.check(DNSLookupError) for r in results[:3])
    assert results[3:] == ["93.184.215.14", "127.0.0.1"]  # public, and allowed
    assert guard.REFUSED_AT_CONNECT["rebind.example"] == "10.0.0.7"
    assert guard.REFUSED_AT_CONNECT["127.0.0.2"] == "127.0.0.2"


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), (b"120", 120.0), (" 0 ", 0.0), ("soon", None), ("", None), (None, None), ("-1", None)],
)
def test_retry_after_seconds(value: Any, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0


def _retry_middleware(**settings: Any) -> BackoffRetryMiddleware:
    crawler = get_crawler(SiteSpider, {"RETRY_TIMES": 3, "DATASET_PLATFORM_RETRY_BACKOFF_S": 0.5,
                                       "DATASET_PLATFORM_RETRY_BACKOFF_MAX_S": 1.5, **settings})
    crawler.spider = SiteSpider.from_crawler(crawler)
    return BackoffRetryMiddleware.from_crawler(crawler)


def test_backoff_doubles_up_to_its_maximum_and_honours_retry_after() -> None:
    mw = _retry_middleware()
    req = Request("http://e.org/x")
    delays = []
    for _ in range(3):
        req = mw.process_response(req, Response(req.url, status=503, request=req))
        assert isinstance(req, Request)
        delays.append(req.meta[RETRY_DELAY_META])
    assert delays == [0.5, 1.0, 1.5]
    final = mw.process_response(req, Response(req.url, status=503, request=req))
    assert isinstance(final, Response) and final.status == 503  # retries exhausted: recorded failed:http_503
    req = Request("http://e.org/y")
    r = mw.process_response(req, Response(req.url, status=429, headers={"Retry-After": "7"}, request=req))
    assert isinstance(r, Request) and r.meta[RETRY_DELAY_META] == 7.0
    r = mw.process_response(req, Response(req.url, status=429, headers={"Retry-After": "3600"}, request=req))
    assert isinstance(r, Response)  # the server asks for too long: not retried
    r = mw.process_response(req, Response(req.url, status=404, request=req))
    assert isinstance(r, Response)
    r = mw.process_exception(Request("http://e.org/z"), DownloadTimeoutError("slow"))
    assert isinstance(r, Request) and r.meta[RETRY_DELAY_META] == 0.5


# ------------------------------------------------------------------ the spider's callbacks

PAGE = b"""<html><head><base href="http://example.org/docs/"></head><body>
<a href="intro.html#part-2">relative, with a fragment</a>
<a href="/about.html">absolute path</a> <a href=" /about.html?utm_source=x ">same page</a>
<a href="http://other.example.net/page">another site</a>
<map><area href="files/report.pdf"></map>
<a href="mailto:x@example.org">mail</a> <a href="">empty</a> <a>none</a>
<img src="/pic.png"> <p>Caf\xc3\xa9</p>
</body></html>"""


def _spider(**kw: Any) -> SiteSpider:
    args: dict[str, Any] = {"start_urls": ["http://example.org/"], "allowed_domains": ["example.org"], "max_depth": 2}
    args.update(kw)
    return SiteSpider(**args)


def _response(url: str, status: int = 200, depth: int = 0, body: bytes = PAGE, headers: dict[str, str] | None = None,
              **meta: Any) -> HtmlResponse:
    req = Request(url, meta={"depth": depth, REFERER_META: "http://example.org/", KIND_META: "link", **meta})
    return HtmlResponse(url=url, body=body, status=status, request=req,
                        headers=headers if headers is not None else {"Content-Type": "text/html; charset=utf-8"})


def _split(out: list[Any]) -> tuple[list[dict[str, Any]], list[Request]]:
    return [x for x in out if isinstance(x, dict)], [x for x in out if isinstance(x, Request)]


def test_parse_records_the_page_and_considers_each_link_once() -> None:
    spider = _spider(record_base_url="https://archive.example.com/")
    recs, reqs = _split(list(spider.parse(_response("http://example.org/docs/index.html", depth=1))))
    page, *others = recs
    assert set(page) == set(LANDED_FIELDS)
    assert page["url"] == "https://archive.example.com/docs/index.html"
    assert page["fetch_url"] == "http://example.org/docs/index.html"
    assert page["referer"] == "https://archive.example.com/"
    assert (page["outcome"], page["status"], page["content_type"], page["charset"], page["depth"]) == (
        "fetched", 200, "text/html", "utf-8", 1)
    assert "Caf\u00e9" in page["html"] and page["body_bytes"] == len(PAGE)
    # the links: resolved against <base href>, canonical, once each; rules recorded at once
    assert [r.url for r in reqs] == [
        "http://example.org/docs/intro.html", "http://example.org/about.html", "http://example.org/docs/files/report.pdf"]
    assert {r.meta[REFERER_META] for r in reqs} == {"http://example.org/docs/index.html"}
    assert all(r.dont_filter and r.meta["dont_redirect"] and r.meta["depth"] == 2 for r in reqs)
    assert {(r["url"], r["outcome"], r["detail"]) for r in others} == {
        ("http://other.example.net/page", "off_domain", "other.example.net"),
        ("mailto:x@example.org", "filtered_by_rule", "scheme:mailto"),
    }
    # considered again (another page links to them): nothing new
    assert list(spider.consider("http://example.org/about.html#x", depth=1, referer=None, kind="link")) == []


def test_links_beyond_max_depth_and_max_pages_are_recorded_not_requested() -> None:
    spider = _spider(max_pages=2)
    recs, reqs = _split(list(spider.parse(_response("http://example.org/deep.html", depth=2))))
    assert not reqs and {r["detail"] for r in recs[1:] if r["outcome"] == "filtered_by_rule"} == {
        "max_depth", "scheme:mailto"}
    # max_pages counts stored pages: a link waits while the pages stored plus the requests in
    # flight reach it, is requested when a request ends without storing a page (a 404), and is
    # recorded max_pages once the pages stored reach it
    spider = _spider(max_pages=2)
    recs, reqs = _split(list(spider.parse(_response("http://example.org/docs/index.html"))))
    assert [r.url for r in reqs] == ["http://example.org/docs/intro.html"]  # 1 stored + 1 in flight
    assert not [r for r in recs if r["detail"] in ("max_pages", "max_requests")]
    recs, reqs = _split(list(spider.parse(_response("http://example.org/docs/intro.html", status=404, depth=1))))
    assert recs[0]["outcome"] == "failed:http_404" and [r.url for r in reqs] == ["http://example.org/about.html"]
    recs, reqs = _split(list(spider.parse(_response("http://example.org/about.html", depth=1, body=b"<p>no links</p>"))))
    assert recs[0]["outcome"] == "fetched" and not reqs
    assert [(r["url"], r["outcome"], r["detail"], r["depth"], r["referer"]) for r in recs[1:]] == [
        ("http://example.org/docs/files/report.pdf", "filtered_by_rule", "max_pages", 1,
         "http://example.org/docs/index.html")]
    assert spider.book["stored"] == 2 and spider.book["waiting"] == []
    # max_requests bounds the requests whatever they give
    spider = _spider(max_pages=5, max_requests=2)
    recs, reqs = _split(list(spider.parse(_response("http://example.org/docs/index.html"))))
    assert len(reqs) == 2 and [r["url"] for r in recs if r["detail"] == "max_requests"] == [
        "http://example.org/docs/files/report.pdf"]
    assert _spider(max_pages=7).max_requests == 70  # default: MAX_REQUESTS_PER_PAGE x max_pages


def test_redirect_details_name_the_recorded_target() -> None:
    spider = _spider(record_base_url="https://archive.example.com/", max_redirects=1)
    moved = _response("http://example.org/old", status=301, body=b"", headers={"Location": "/new?utm_source=x"})
    out = list(spider.parse(moved))
    assert out[0]["outcome"] == "redirected" and out[0]["detail"] == "https://archive.example.com/new"
    assert isinstance(out[1], Request) and out[1].url == "http://example.org/new"
    assert out[1].meta[CHAIN_META] == ["http://example.org/old"]
    again = _response("http://example.org/new", status=302, body=b"", headers={"Location": "/newer"},
                      **{CHAIN_META: ["http://example.org/old"]})
    (rec,) = list(spider.parse(again))
    assert (rec["outcome"], rec["detail"]) == ("failed:too_many_redirects", "https://archive.example.com/newer")
    loop = _response("http://example.org/b", status=302, body=b"", headers={"Location": "http://example.org/a"},
                     **{CHAIN_META: ["http://example.org/a"]})
    (rec,) = list(_spider().parse(loop))
    assert (rec["outcome"], rec["detail"]) == ("failed:redirect_loop", "http://example.org/a")
    (rec,) = list(_spider().parse(_response("http://example.org/c", status=302, body=b"", headers={})))
    assert (rec["outcome"], rec["detail"]) == ("failed:http_302", "no Location header")


def test_304_only_counts_as_not_modified_for_a_conditional_request(tmp_path: Path) -> None:
    known = tmp_path / "known.jsonl.gz"
    with gzip.open(known, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"url": "http://example.org/k?utm_source=x", "etag": '"e1"', "last_modified": None,
                            "content_hash": "abc", "depth": 2}) + "\n")
        f.write("{broken\n")
        f.write(json.dumps({"url": "mailto:x@y"}) + "\n")
        f.write("\n")
    pages, bad = load_known_pages(known)
    assert pages == {"http://example.org/k": {"etag": '"e1"', "last_modified": None, "content_hash": "abc", "depth": 2}}
    assert bad == 2
    spider = _spider(known_pages_path=str(known))
    req = spider.request("http://example.org/k", depth=2, referer=None, kind="known")
    assert req.headers[b"If-None-Match"] == b'"e1"' and req.meta[CONDITIONAL_META]
    (rec,) = list(spider.parse(_response("http://example.org/k", status=304, body=b"", **{CONDITIONAL_META: True})))
    assert (rec["outcome"], rec["detail"], rec["content_hash"], rec["etag"]) == ("not_modified", "http_304", "abc", '"e1"')
    (rec,) = list(spider.parse(_response("http://example.org/u", status=304, body=b"")))
    assert (rec["outcome"], rec["detail"]) == ("failed:http_304", "304 to an unconditional request")


def test_sitemaps_bad_ones_and_bombs() -> None:
    spider = _spider(max_bytes_per_page=10_000)
    body = b"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
    <url><loc>http://example.org/s1</loc></url><url><loc>http://elsewhere.example/s2</loc></url></urlset>"""
    recs, reqs = _split(list(spider.parse_sitemap(_response("http://example.org/sm.xml", body=body,
                                                            headers={"Content-Type": "application/xml"}))))
    assert (recs[0]["outcome"], recs[0]["detail"]) == ("not_html", "sitemap:urlset:2")
    assert [r.url for r in reqs] == ["http://example.org/s1"] and recs[1]["outcome"] == "off_domain"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = c.compress(b"\0" * 5_000_000) + c.flush()
    (rec,) = list(spider.parse_sitemap(_response("http://example.org/bomb.xml.gz", body=bomb,
                                                 headers={"Content-Type": "application/gzip"})))
    assert rec["outcome"] == "too_large" and rec["detail"].startswith("max_bytes_per_page=10000; decompressed size")
    (rec,) = list(spider.parse_sitemap(_response("http://example.org/html.xml", body=b"<html><p>no</p></html>")))
    assert rec["outcome"] == "failed:bad_sitemap"


def test_errback_records_the_request_with_its_outcome() -> None:
    spider = _spider()
    req = Request("http://example.org/x", meta={"depth": 1, REFERER_META: "http://example.org/"})
    failure = Failure(DownloadTimeoutError("took longer than 1.0 seconds"))
    failure.request = req  # type: ignore[attr-defined]
    (rec,) = list(spider.failed(failure))
    assert (rec["url"], rec["outcome"], rec["fetch_url"], rec["depth"], rec["referer"]) == (
        "http://example.org/x", "failed:timeout", "http://example.org/x", 1, "http://example.org/")
    failure = Failure(BlockedAddress("127.0.0.2", "loopback"))
    failure.request = Request("http://127.0.0.2:8000/x")  # type: ignore[attr-defined]
    (rec,) = list(spider.failed(failure))
    assert (rec["outcome"], rec["detail"], rec["fetch_url"]) == ("blocked_address", "127.0.0.2", None)


# ------------------------------------------------------------------ batch recovery, job directory


def test_recover_batch_keeps_the_complete_records_of_a_cut_off_file(tmp_path: Path) -> None:
    lines = [json.dumps({"url": f"http://e.org/{i}", "outcome": "fetched", "status": 200, "body_bytes": 10}) + "\n"
             for i in range(50)]
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    data = c.compress("".join(lines[:30]).encode()) + c.flush(zlib.Z_SYNC_FLUSH)  # flushed
    data += c.compress(lines[0].encode() + "".join(lines[30:]).encode())  # a duplicate, then never flushed
    part = tmp_path / "b.jsonl.gz.part"
    part.write_bytes(data)
    rec = recover_batch(part)
    assert rec.truncated and rec.records == 30 and rec.body_bytes == 300
    assert rec.urls == {f"http://e.org/{i}" for i in range(30)}
    assert rec.outcomes == {"fetched": 30} and rec.statuses == {"200": 30}
    with gzip.open(part, "rt") as f:  # rewritten as a complete gzip file
        assert f.read() == "".join(lines[:30])
    # a complete file with two members (a resumed run) and a duplicate line
    part.write_bytes(gzip.compress("".join(lines[:3]).encode()) + gzip.compress((lines[2] + lines[3]).encode()))
    rec = recover_batch(part)
    assert (rec.truncated, rec.records) == (False, 4)
    part.write_bytes(b"not gzip at all")
    assert recover_batch(part).records == 0 and gzip.decompress(part.read_bytes()) == b""


def test_prepare_job_dir(tmp_path: Path) -> None:
    job = tmp_path / "job"
    part = tmp_path / "out.jsonl.gz.part"
    no_state = spec(tmp_path, ["http://example.org/"])
    part.write_bytes(b"stale")
    assert prepare_job_dir(no_state, part) == "new" and not part.exists()  # not resumable: start afresh

    s = spec(tmp_path, ["http://example.org/"], state_dir=str(job))
    assert prepare_job_dir(s, part) == "new"
    job.mkdir()
    (job / "requests.queue").mkdir()
    (job / "spider.state").write_bytes(b"x")
    part.write_bytes(b"records")
    (job / STOP_MARKER).write_text("{}")
    assert prepare_job_dir(s, part) == "resume"  # a clean stop: trust Scrapy's queue and state
    assert (job / "spider.state").exists() and not (job / STOP_MARKER).exists()
    assert prepare_job_dir(s, part) == "recover"  # no marker now (as after a hard kill): state dropped
    assert not any((job / name).exists() for name in JOBDIR_ENTRIES) and part.exists()
    (job / "spider.state").write_bytes(b"x")
    part.unlink()
    assert prepare_job_dir(s, part) == "restart" and not (job / "spider.state").exists()



def test_peak_memory_of_a_crawl_process_is_its_own_not_its_parents() -> None:
    """ru_maxrss survives exec: a child of a big process would report the parent's peak."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM is Linux-only")
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident
    out = subprocess.run([sys.executable, "-c", "from crawlers.run import _peak_rss_kb; print(_peak_rss_kb())"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    del ballast
    assert 10 * 1024 < int(out.stdout) < 200 * 1024
