"""The ``site`` spider: one record for every URL a bounded, polite crawl of a site considers.

Every URL the spider meets - a start URL, a sitemap and its ``<loc>`` URLs, a known page of a
previous crawl, an ``<a href>``/``<area href>`` link of a fetched page, the target of a redirect -
goes through :meth:`SiteSpider.consider`, which either records it right away (a URL excluded by a
rule: scheme, URL length, allowed domains, deny/allow patterns, depth, trap bound, page or request
budget) or schedules exactly one request for it, at once or when the page budget allows (see
:class:`SiteSpider`). That request ends in exactly one record: the callback
records the response (``fetched``, ``not_modified``, ``redirected``, ``not_html``,
``failed:http_<status>``...), the errback records why there is none (``robots_disallowed``,
``blocked_address``, ``too_large``, ``failed:timeout``...). URLs are deduplicated on their
canonical form (``crawlers.urls.canonicalize``) before anything else, so a URL met twice is
recorded once.

Scrapy does the downloading, politeness, robots.txt, retries, decompression and size limits; the
middlewares that would drop requests silently are either replaced by the checks here (depth,
URL length, duplicates: requests carry ``dont_filter``) or raise exceptions the errback records
(``crawlers.middlewares``). Redirects are followed here, not by Scrapy's RedirectMiddleware (the
spider's requests carry ``dont_redirect``; the middleware only follows robots.txt redirects), so
that every hop has its own record.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import scrapy
from parsel import Selector
from scrapy import signals
from scrapy.exceptions import DontCloseSpider
from scrapy.http import HtmlResponse, Request, Response
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap
from twisted.python.failure import Failure
from w3lib.html import strip_html5_whitespace

from crawlers.outcomes import exception_of, failed, failure_outcome
from crawlers.urls import HTTP_SCHEMES, canonicalize, host_of, url_scheme, url_shape
from dataset_platform.contracts.crawl import MAX_REQUESTS_PER_PAGE
from dataset_platform.contracts.records import LANDED_FIELDS, PageItem
from dataset_platform.text.charset import decode_html

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
FOLLOW_SCHEMES = HTTP_SCHEMES
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Request.meta keys.
REFERER_META = "dataset_platform_referer"  # canonical URL of the page that linked here (or redirected)
KIND_META = "dataset_platform_kind"  # how the URL was met: start, sitemap, loc, link, redirect, known
CHAIN_META = "dataset_platform_redirects"  # canonical URLs of the redirect chain before this request
CONDITIONAL_META = "dataset_platform_conditional"  # validators were sent
#: Stats keys.
STAT_FAILED_REQUESTS = "dataset_platform/failed_requests"  # requests that got no response at all
STAT_SCHEDULED = "dataset_platform/scheduled"
STAT_STORED = "dataset_platform/stored"  # pages stored: records fetched or not_modified (max_pages counts them)
STAT_KNOWN_BAD_LINES = "dataset_platform/known_pages_bad_lines"
#: Response headers not copied into records (they carry the crawler's session, not the page).
SKIPPED_HEADERS = frozenset({"set-cookie", "set-cookie2"})
#: Kinds of URLs exempt from allowed_domains and the URL patterns: the ones the spec names.
CONFIGURED_KINDS = frozenset({"start", "sitemap_root"})
SITEMAP_KINDS = frozenset({"sitemap_root", "sitemap"})
#: Outcomes of a stored page (a row of raw_pages): what ``max_pages`` counts.
STORED_OUTCOMES = frozenset({"fetched", "not_modified"})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def host_in_domains(host: str, domains: Iterable[str]) -> bool:
    """True when ``host`` is one of ``domains`` or a subdomain of one (ports are not part of it)."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def media_type(response: Response) -> str:
    """Lower-case media type of the Content-Type header without parameters ("" if none)."""
    raw = response.headers.get(b"Content-Type")
    if not raw:
        return ""
    return raw.decode("latin-1").split(";", 1)[0].strip().lower()


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def headers_json(response: Response) -> str:
    """The response headers as a JSON object: {lower-case name: first value}."""
    out: dict[str, str] = {}
    for name, values in response.headers.items():
        key = name.decode("latin-1").lower()
        if key in SKIPPED_HEADERS or key in out or not values:
            continue
        out[key] = values[0].decode("latin-1")
    return json.dumps(out, sort_keys=True, ensure_ascii=False)


def _header(response: Response, name: bytes) -> str | None:
    v = response.headers.get(name)
    return v.decode("latin-1") if v else None


def load_known_pages(path: str | Path) -> tuple[dict[str, dict[str, Any]], int]:
    """canonical URL -> {etag, last_modified, content_hash, depth} from a gzip JSONL file, and the
    number of unreadable lines (skipped)."""
    known: dict[str, dict[str, Any]] = {}
    bad = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = canonicalize(str(row["url"]))
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if key is None:
                bad += 1
                continue
            depth = row.get("depth")
            known[key] = {
                "etag": row.get("etag") or None,
                "last_modified": row.get("last_modified") or None,
                "content_hash": row.get("content_hash") or None,
                "depth": depth if isinstance(depth, int) and depth >= 0 else 0,
            }
    return known, bad


class SiteSpider(scrapy.Spider):
    """Records every URL it considers; follows links of fetched HTML pages (see the module doc).

    ``max_pages`` bounds the pages **stored** (records ``fetched`` or ``not_modified``: the rows of
    raw_pages), not the requests: a 404, a redirect, a non-HTML answer or a sitemap does not use
    it up. A URL that passes the rules is requested while the pages stored plus the requests in
    flight stay under ``max_pages`` (so no more than ``max_pages`` pages are ever stored); otherwise
    it waits, shallowest first (breadth-first, like the scheduler), and is requested when a request
    in flight ends without storing a page. Once ``max_pages`` pages are stored, the waiting URLs
    and every further one are recorded as ``filtered_by_rule`` with detail ``max_pages``.
    ``max_requests`` (default ``MAX_REQUESTS_PER_PAGE`` x ``max_pages``) bounds the requests the
    spider schedules (start URLs, sitemaps, links, redirect targets; retries are not counted), so a
    site that answers mostly errors still ends: further URLs are recorded ``filtered_by_rule``
    ``max_requests``. Links of a page at ``max_depth`` are recorded as ``filtered_by_rule``
    ``max_depth``. With a job directory (``JOBDIR``) the spider's bookkeeping (pages stored,
    requests in flight, waiting URLs) lives in ``self.state`` and survives a pause/resume.
    """

    name = "site"

    def __init__(
        self,
        start_urls: Iterable[str] = (),
        allowed_domains: Iterable[str] = (),
        max_pages: int = 1000,
        max_depth: int = 5,
        max_requests: int | None = None,
        record_base_url: str | None = None,
        sitemap_urls: Iterable[str] = (),
        allow_url_patterns: Iterable[str] = (),
        deny_url_patterns: Iterable[str] = (),
        accepted_content_types: Iterable[str] = HTML_TYPES,
        known_pages_path: str | None = None,
        max_redirects: int = 10,
        trap_max_per_pattern: int = 1000,
        max_bytes_per_page: int = 5_000_000,
        url_length_limit: int = 2083,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_urls = list(start_urls)
        self.sitemap_urls = list(sitemap_urls)
        self.allowed_domains = [d.lower() for d in allowed_domains]
        self.max_pages = int(max_pages)
        self.max_depth = int(max_depth)
        self.max_requests = int(max_requests) if max_requests else MAX_REQUESTS_PER_PAGE * self.max_pages
        self.record_base_url = record_base_url
        self.allow_patterns = [(p, re.compile(p)) for p in allow_url_patterns]
        self.deny_patterns = [(p, re.compile(p)) for p in deny_url_patterns]
        self.accepted_types = tuple(t.lower().strip() for t in accepted_content_types)
        self.max_redirects = int(max_redirects)
        self.trap_max = int(trap_max_per_pattern)
        self.max_bytes = int(max_bytes_per_page)
        self.url_length_limit = int(url_length_limit)
        self._start_origins = {_origin(u) for u in self.start_urls}
        self.known: dict[str, dict[str, Any]] = {}
        self.known_bad_lines = 0
        if known_pages_path:
            self.known, self.known_bad_lines = load_known_pages(known_pages_path)
        self._book: dict[str, Any] | None = None

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> SiteSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.idle, signal=signals.spider_idle)
        return spider

    # ------------------------------------------------------------------ bookkeeping

    @property
    def book(self) -> dict[str, Any]:
        """seen canonical URLs, admitted URLs per (host, shape), scheduled requests, pages stored,
        requests in flight, and the URLs waiting for the page budget (a heap of (depth, order,
        canonical URL, referer, kind, redirect chain)).

        Kept in ``self.state`` (persisted by Scrapy's SpiderState extension) when there is a job
        directory, so that a resumed crawl does not record or fetch a URL twice.
        """
        if self._book is None:
            state = getattr(self, "state", None)
            book = state.get("dataset_platform") if isinstance(state, dict) else None
            if book is None:
                book = {"seen": set(), "shapes": Counter(), "scheduled": 0}
                if isinstance(state, dict):
                    state["dataset_platform"] = book
            for key, empty in (("stored", 0), ("in_flight", 0), ("waiting", []), ("order", 0)):
                book.setdefault(key, empty)  # (a state saved before these were kept)
            self._book = book
        return self._book

    def _stats(self) -> Any:
        crawler = getattr(self, "crawler", None)
        return crawler.stats if crawler is not None else None

    # ------------------------------------------------------------------ records

    def recorded_url(self, url: str) -> str:
        """The URL as recorded: moved under ``record_base_url`` when it is on a start URL's origin."""
        if not self.record_base_url or url_scheme(url) not in HTTP_SCHEMES or _origin(url) not in self._start_origins:
            return url
        base = urlsplit(self.record_base_url)
        parts = urlsplit(url)
        path = base.path.rstrip("/") + (parts.path or "/")
        return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))

    def record(
        self,
        url: str,
        outcome: str,
        *,
        depth: int | None,
        referer: str | None,
        detail: str | None = None,
        fetch_url: str | None = None,
        response: Response | None = None,
        **fields: Any,
    ) -> PageItem:
        """A landed record; with ``response`` its status, headers, validators, size and hash."""
        rec: dict[str, Any] = dict.fromkeys(LANDED_FIELDS)
        rec.update(
            url=self.recorded_url(url),
            fetch_url=fetch_url,
            outcome=outcome,
            detail=detail,
            fetched_at=utc_now_iso(),
            depth=depth,
            referer=self.recorded_url(referer) if referer else None,
        )
        if response is not None:
            body = response.body
            rec.update(
                fetch_url=response.url,
                status=int(response.status),
                content_type=media_type(response) or None,
                body_bytes=len(body),
                content_hash=hashlib.md5(body).hexdigest() if body else None,
                etag=_header(response, b"ETag"),
                last_modified=_header(response, b"Last-Modified"),
                headers=headers_json(response),
            )
        rec.update(fields)
        return PageItem(**rec)  # type: ignore[typeddict-item]

    # ------------------------------------------------------------------ considering URLs

    def rule_violation(self, key: str, kind: str, depth: int) -> tuple[str, str] | None:
        """(outcome, detail) when a rule excludes the canonical URL ``key``; None to fetch it."""
        if len(key) > self.url_length_limit:
            return "filtered_by_rule", f"url_length>{self.url_length_limit}"
        configured = kind in CONFIGURED_KINDS
        host = host_of(key)
        if not configured and self.allowed_domains and not host_in_domains(host, self.allowed_domains):
            return "off_domain", host
        if not configured and kind not in SITEMAP_KINDS:
            for pattern, rx in self.deny_patterns:
                if rx.search(key):
                    return "filtered_by_rule", f"deny:{pattern}"
            if self.allow_patterns and not any(rx.search(key) for _, rx in self.allow_patterns):
                return "filtered_by_rule", "allow:no_match"
        if depth > self.max_depth:
            return "filtered_by_rule", "max_depth"
        if self.trap_max > 0 and kind not in SITEMAP_KINDS:
            shape = url_shape(key)
            shapes: Counter[str] = self.book["shapes"]
            if shapes[f"{host} {shape}"] >= self.trap_max:
                return "filtered_by_rule", f"trap:{shape}"
            shapes[f"{host} {shape}"] += 1
        return self.budget_spent()

    def budget_spent(self) -> tuple[str, str] | None:
        """(outcome, detail) when no more URLs may be requested: ``max_pages`` pages are stored,
        or ``max_requests`` requests were scheduled."""
        if self.book["stored"] >= self.max_pages:
            return "filtered_by_rule", "max_pages"
        if self.book["scheduled"] >= self.max_requests:
            return "filtered_by_rule", "max_requests"
        return None

    def consider(
        self,
        raw_url: str,
        *,
        depth: int,
        referer: str | None,
        kind: str,
        chain: Iterable[str] = (),
    ) -> Iterator[PageItem | Request]:
        """Record ``raw_url`` now (a rule excludes it) or schedule its one request; nothing if it
        was considered before."""
        url = raw_url.strip()
        seen: set[str] = self.book["seen"]
        scheme = url_scheme(url)
        key = canonicalize(url) if scheme in HTTP_SCHEMES else None
        if key is None:
            if url in seen:
                return
            seen.add(url)
            detail = f"scheme:{scheme}" if scheme and scheme not in HTTP_SCHEMES else "invalid_url"
            yield self.record(url, "filtered_by_rule", detail=detail, depth=depth, referer=referer)
            return
        if key in seen:
            return
        seen.add(key)
        violation = self.rule_violation(key, kind, depth)
        if violation is not None:
            yield self.record(key, violation[0], detail=violation[1], depth=depth, referer=referer)
            return
        book = self.book
        book["order"] += 1
        heapq.heappush(book["waiting"], (depth, book["order"], key, referer, kind, tuple(chain)))
        yield from self.admit()

    def admit(self) -> Iterator[PageItem | Request]:
        """Request the waiting URLs, shallowest first, while the pages stored and the requests in
        flight stay under ``max_pages``; record them all once the budget is spent."""
        book = self.book
        waiting: list[tuple[Any, ...]] = book["waiting"]
        while waiting:
            spent = self.budget_spent()
            if spent is None and book["stored"] + book["in_flight"] >= self.max_pages:
                return  # the requests in flight may still store pages: wait for them
            depth, _, key, referer, kind, chain = heapq.heappop(waiting)
            if spent is not None:
                yield self.record(key, spent[0], detail=spent[1], depth=depth, referer=referer)
                continue
            book["scheduled"] += 1
            book["in_flight"] += 1
            yield self.request(key, depth=depth, referer=referer, kind=kind, chain=chain)

    def ended(self, outputs: Iterable[PageItem | Request]) -> Iterator[PageItem | Request]:
        """The outputs of a request's callback or errback, whose first record is the request's
        own: once it is out, the request no longer counts as in flight (and counts as a stored
        page when it is ``fetched`` or ``not_modified``), and waiting URLs are admitted before the
        page's own links are considered."""
        book = self.book
        settled = False
        for out in outputs:
            if not settled and not isinstance(out, Request):
                settled = True
                book["in_flight"] = max(0, book["in_flight"] - 1)
                if out.get("outcome") in STORED_OUTCOMES:
                    book["stored"] += 1
                    stats = self._stats()
                    if stats is not None:
                        stats.inc_value(STAT_STORED)
                yield out
                yield from self.admit()
                continue
            yield out
        if not settled:
            book["in_flight"] = max(0, book["in_flight"] - 1)
            yield from self.admit()

    def idle(self) -> None:
        """Scrapy found nothing left to do while URLs still wait: requests counted in flight did
        not come back (lost in a stop of a resumable crawl), so none is in flight; request the
        waiting URLs now (the budget is not spent: :meth:`admit` records every waiting URL once it
        is) and keep the spider open."""
        book = self.book
        if not book["waiting"] or self.budget_spent() is not None:
            return
        book["in_flight"] = 0
        # as many as the budget allows, so that no URL is recorded here (records go out through a
        # callback: the next one records what still waits once the budget is spent)
        n = min(len(book["waiting"]), self.max_pages - book["stored"], self.max_requests - book["scheduled"])
        for _ in range(n):
            depth, _, key, referer, kind, chain = heapq.heappop(book["waiting"])
            book["scheduled"] += 1
            book["in_flight"] += 1
            self.crawler.engine.crawl(self.request(key, depth=depth, referer=referer, kind=kind, chain=chain))
        raise DontCloseSpider

    def request(self, key: str, *, depth: int, referer: str | None, kind: str, chain: Iterable[str] = ()) -> Request:
        meta: dict[str, Any] = {"depth": depth, REFERER_META: referer, KIND_META: kind}
        chain = list(chain)
        if chain:
            meta[CHAIN_META] = chain
        headers: dict[str, str] = {}
        known = self.known.get(key)
        if known and kind not in SITEMAP_KINDS:
            if known["etag"]:
                headers["If-None-Match"] = known["etag"]
            if known["last_modified"]:
                headers["If-Modified-Since"] = known["last_modified"]
            if headers:
                meta[CONDITIONAL_META] = True
        # Redirects are followed by parse(); duplicates and depth are handled by consider().
        meta["dont_redirect"] = True
        stats = self._stats()
        if stats is not None:
            stats.inc_value(STAT_SCHEDULED)
            stats.max_value("request_depth_max", depth)
        return Request(
            key,
            callback=self.parse_sitemap if kind in SITEMAP_KINDS else self.parse,
            errback=self.failed,
            meta=meta,
            headers=headers or None,
            priority=-depth,  # breadth-first
            dont_filter=True,
        )

    async def start(self) -> AsyncIterator[PageItem | Request]:
        for url in self.start_urls:
            for out in self.consider(url, depth=0, referer=None, kind="start"):
                yield out
        for url in self.sitemap_urls:
            for out in self.consider(url, depth=0, referer=None, kind="sitemap_root"):
                yield out
        if self.known_bad_lines:
            stats = self._stats()
            if stats is not None:
                stats.set_value(STAT_KNOWN_BAD_LINES, self.known_bad_lines)
        # Pages of the previous crawl are revisited (conditionally) even when the pages linking to
        # them are unchanged (a 304 has no links to follow).
        for url, known in list(self.known.items()):
            for out in self.consider(url, depth=int(known["depth"]), referer=None, kind="known"):
                yield out

    # ------------------------------------------------------------------ responses

    def _meta(self, response: Response) -> tuple[str, int, str | None, str, list[str]]:
        meta = response.meta
        key = canonicalize(response.url) or response.url
        return key, int(meta.get("depth", 0)), meta.get(REFERER_META), meta.get(KIND_META, "link"), list(
            meta.get(CHAIN_META, ())
        )

    def accepts(self, ctype: str, response: Response) -> bool:
        if not ctype:  # no Content-Type: trust Scrapy's sniffing of the body
            ctype = "text/html" if isinstance(response, HtmlResponse) else ""
        for t in self.accepted_types:
            if ctype == t or (t.endswith("/*") and ctype.startswith(t[:-1])):
                return True
        return False

    def _redirect(self, response: Response, key: str, depth: int, referer: str | None, kind: str,
                  chain: list[str]) -> Iterator[PageItem | Request]:
        location = response.headers.get(b"Location")
        if not location:
            yield self.record(key, failed(f"http_{response.status}"), detail="no Location header",
                              depth=depth, referer=referer, response=response)
            return
        target = urljoin(response.url, location.decode("utf-8", "replace").strip())
        target_key = canonicalize(target) or target
        # the detail names the target as it is (or would be) recorded, so it joins with its record
        target_recorded = self.recorded_url(target_key)
        chain = [*chain, key]
        if target_key in chain:
            yield self.record(key, failed("redirect_loop"), detail=target_recorded, depth=depth, referer=referer,
                              response=response)
            return
        if len(chain) > self.max_redirects:
            yield self.record(key, failed("too_many_redirects"), detail=target_recorded, depth=depth,
                              referer=referer, response=response)
            return
        yield self.record(key, "redirected", detail=target_recorded, depth=depth, referer=referer, response=response)
        # A configured URL's redirect target stays configured (exempt from domains and patterns).
        next_kind = "sitemap" if kind in SITEMAP_KINDS else ("start" if kind == "start" else "redirect")
        yield from self.consider(target, depth=depth, referer=key, kind=next_kind, chain=chain)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[PageItem | Request]:
        """Record the response and follow the links of a fetched HTML page."""
        yield from self.ended(self._parse(response))

    def _parse(self, response: Response) -> Iterator[PageItem | Request]:
        key, depth, referer, kind, chain = self._meta(response)
        status = int(response.status)
        try:
            if status == 304:
                yield self._not_modified_304(response, key, depth, referer)
                return
            if 300 <= status < 400:
                yield from self._redirect(response, key, depth, referer, kind, chain)
                return
            if not 200 <= status < 300:
                yield self.record(key, failed(f"http_{status}"), depth=depth, referer=referer, response=response)
                return
            ctype = media_type(response)
            if not self.accepts(ctype, response):
                yield self.record(key, "not_html", depth=depth, referer=referer, response=response)
                return
            raw_ct = response.headers.get(b"Content-Type")
            text, encoding = decode_html(response.body, raw_ct.decode("latin-1") if raw_ct else None)
            known = self.known.get(key)
            digest = hashlib.md5(response.body).hexdigest() if response.body else None
            if known and known["content_hash"] and known["content_hash"] == digest:
                yield self.record(key, "not_modified", detail="content_hash", depth=depth, referer=referer,
                                  response=response, charset=encoding)
            else:
                yield self.record(key, "fetched", depth=depth, referer=referer, response=response, charset=encoding,
                                  html=text)
        except Exception as e:  # never lose the URL's record to a bug or an odd response
            logger.exception("could not record %s", response.url)
            yield self.record(key, failed("spider_error"), detail=f"{type(e).__name__}: {e}"[:300], depth=depth,
                              referer=referer, fetch_url=response.url)
            return
        yield from self.follow_links(text, response.url, key, depth)

    def _not_modified_304(self, response: Response, key: str, depth: int, referer: str | None) -> PageItem:
        if not response.meta.get(CONDITIONAL_META):
            return self.record(key, failed("http_304"), detail="304 to an unconditional request", depth=depth,
                               referer=referer, response=response)
        known = self.known.get(key) or {}
        return self.record(
            key, "not_modified", detail="http_304", depth=depth, referer=referer, response=response,
            body_bytes=None, content_hash=known.get("content_hash"),
            etag=_header(response, b"ETag") or known.get("etag"),
            last_modified=_header(response, b"Last-Modified") or known.get("last_modified"),
        )

    def links(self, text: str, url: str) -> list[str]:
        """Absolute URLs of the ``<a href>`` and ``<area href>`` links of an HTML page (any scheme),
        resolved against ``<base href>``; empty hrefs are skipped."""
        sel = Selector(text=text, type="html")
        base = url
        base_href = sel.xpath("//base/@href").get()
        if base_href and base_href.strip():
            base = urljoin(url, strip_html5_whitespace(base_href))
        out: list[str] = []
        for href in sel.xpath("//a/@href | //area/@href").getall():
            href = strip_html5_whitespace(href)
            if href:
                out.append(urljoin(base, href))
        return out

    def follow_links(self, text: str, url: str, key: str, depth: int) -> Iterator[PageItem | Request]:
        """Consider every link of a page at ``depth + 1``."""
        try:
            found = self.links(text, url)
        except Exception:
            logger.exception("could not extract the links of %s", url)
            return
        for link in found:
            yield from self.consider(link, depth=depth + 1, referer=key, kind="link")

    def parse_sitemap(self, response: Response, **kwargs: Any) -> Iterator[PageItem | Request]:
        """Record a sitemap (``not_html``, detail ``sitemap:<type>:<number of URLs>``) and consider
        its URLs: child sitemaps of an index, ``<loc>`` pages of a urlset (depth 0)."""
        yield from self.ended(self._parse_sitemap(response))

    def _parse_sitemap(self, response: Response) -> Iterator[PageItem | Request]:
        key, depth, referer, kind, chain = self._meta(response)
        status = int(response.status)
        if 300 <= status < 400 and status != 304:
            yield from self._redirect(response, key, depth, referer, kind, chain)
            return
        if not 200 <= status < 300:
            yield self.record(key, failed(f"http_{status}"), depth=depth, referer=referer, response=response)
            return
        body = response.body
        try:
            if body[:2] == b"\x1f\x8b":
                try:
                    body = gunzip(body, max_size=self.max_bytes)
                except ValueError as e:  # the decompressed size exceeds the limit
                    if not hasattr(e, "decompressed_size"):
                        raise
                    yield self.record(key, "too_large", detail=f"max_bytes_per_page={self.max_bytes}; decompressed "
                                      f"size > {self.max_bytes} B ({len(response.body)} B compressed)",
                                      depth=depth, referer=referer, response=response)
                    return
            sitemap = Sitemap(body)
            entries = [e["loc"] for e in sitemap if e.get("loc")]
        except Exception as e:
            yield self.record(key, failed("bad_sitemap"), detail=f"{type(e).__name__}: {e}"[:300], depth=depth,
                              referer=referer, response=response)
            return
        if sitemap.type not in ("urlset", "sitemapindex"):
            yield self.record(key, failed("bad_sitemap"), detail=f"root element {sitemap.type!r}", depth=depth,
                              referer=referer, response=response)
            return
        yield self.record(key, "not_html", detail=f"sitemap:{sitemap.type}:{len(entries)}", depth=depth,
                          referer=referer, response=response)
        child_kind = "sitemap" if sitemap.type == "sitemapindex" else "loc"
        for loc in entries:
            yield from self.consider(loc, depth=0, referer=key, kind=child_kind)

    def failed(self, failure: Failure) -> Iterator[PageItem | Request]:
        """Record a request that got no usable response (after retries) or was refused."""
        yield from self.ended(self._failed(failure))

    def _failed(self, failure: Failure) -> Iterator[PageItem]:
        request: Request | None = getattr(failure, "request", None)
        exc = exception_of(failure)
        if request is None:  # not expected: Scrapy sets it on download failures
            logger.error("a request failed without its request: %s", exc)
            return
        meta = request.meta
        key = canonicalize(request.url) or request.url
        outcome, detail, attempted = failure_outcome(exc, host_of(key), self.max_bytes)
        if outcome.startswith("failed:"):
            stats = self._stats()
            if stats is not None:
                stats.inc_value(STAT_FAILED_REQUESTS)
            logger.warning("no response for %s: %s", request.url, detail)
        yield self.record(
            key, outcome, detail=detail, depth=int(meta.get("depth", 0)), referer=meta.get(REFERER_META),
            fetch_url=request.url if attempted else None,
        )
