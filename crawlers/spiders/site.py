"""The ``site`` spider: record every response of a bounded, polite crawl of one site."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urldefrag, urlsplit, urlunsplit

import scrapy
from scrapy.exceptions import CloseSpider, IgnoreRequest
from scrapy.http import Request, Response, TextResponse
from scrapy.linkextractors import LinkExtractor
from twisted.python.failure import Failure

from crawlers.items import PageItem

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FOLLOW_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Request.meta key holding the fetched URL of the page that linked to a request.
REFERER_META = "dataset_platform_referer"
#: Stats key counting requests that got no response at all (after retries).
STAT_FAILED_REQUESTS = "dataset_platform/failed_requests"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def media_type(response: Response) -> str:
    """Lower-case media type of the Content-Type header without parameters ("" if none)."""
    raw = response.headers.get(b"Content-Type")
    if not raw:
        return ""
    return raw.decode("latin-1").split(";", 1)[0].strip().lower()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SiteSpider(scrapy.Spider):
    """Starts from ``start_urls`` and follows ``<a href>`` links of 2xx HTML pages.

    Scrapy does the rest from settings: offsite filtering on ``allowed_domains``, robots.txt,
    depth limit, politeness. Every response that reaches the callback is recorded (any status,
    any content type) until ``max_pages`` responses have been recorded; the spider then closes
    with reason ``max_pages``.
    """

    name = "site"

    def __init__(
        self,
        start_urls: Iterable[str] = (),
        allowed_domains: Iterable[str] = (),
        max_pages: int = 1000,
        max_depth: int = 5,
        record_base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_urls = list(start_urls)
        self.allowed_domains = list(allowed_domains)
        self.max_pages = int(max_pages)
        self.max_depth = int(max_depth)
        self.record_base_url = record_base_url
        self._start_origins = {_origin(u) for u in self.start_urls}
        self._links = LinkExtractor(tags=("a",), attrs=("href",), deny_extensions=[], unique=True)
        self.pages_recorded = 0

    async def start(self) -> AsyncIterator[Request]:
        # Unlike Scrapy's default, start requests go through the duplicate filter (a page linking
        # back to a start URL must not fetch it again); they stay exempt from offsite filtering.
        for url in self.start_urls:
            yield Request(url, callback=self.parse, errback=self.failed, meta={"allow_offsite": True})

    def recorded_url(self, url: str) -> str:
        """The URL as recorded: moved under ``record_base_url`` when it is on a start URL's origin."""
        if not self.record_base_url or _origin(url) not in self._start_origins:
            return url
        base = urlsplit(self.record_base_url)
        parts = urlsplit(url)
        path = base.path.rstrip("/") + (parts.path or "/")
        return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))

    def record(self, response: Response) -> PageItem:
        """The record of one response."""
        meta = response.request.meta if response.request is not None else {}
        content_type = media_type(response)
        is_text = isinstance(response, TextResponse)
        referer = meta.get(REFERER_META)
        return PageItem(
            url=self.recorded_url(response.url),
            fetch_url=response.url,
            status=int(response.status),
            content_type=content_type,
            charset=response.encoding if is_text else None,
            fetched_at=utc_now_iso(),
            depth=int(meta.get("depth", 0)),
            referer=self.recorded_url(referer) if referer else None,
            body_bytes=len(response.body),
            html=response.text if is_text and content_type in HTML_TYPES else None,
        )

    def follow_links(self, response: Response) -> Iterator[Request]:
        """Requests for the ``<a href>`` links of a 2xx HTML response within the depth limit."""
        if not isinstance(response, TextResponse) or media_type(response) not in HTML_TYPES:
            return
        if not 200 <= response.status < 300:
            return
        depth = int(response.request.meta.get("depth", 0)) if response.request is not None else 0
        if depth >= self.max_depth:
            return
        for link in self._links.extract_links(response):
            url = urldefrag(link.url).url
            if urlsplit(url).scheme.lower() in FOLLOW_SCHEMES:
                yield Request(url, callback=self.parse, errback=self.failed, meta={REFERER_META: response.url})

    def parse(self, response: Response, **kwargs: Any) -> Iterator[PageItem | Request]:
        if self.pages_recorded >= self.max_pages:
            return  # a response that was in flight when the page budget ran out
        self.pages_recorded += 1
        yield self.record(response)
        if self.pages_recorded >= self.max_pages:
            raise CloseSpider("max_pages")
        yield from self.follow_links(response)

    def failed(self, failure: Failure) -> None:
        """Count a request that got no response (filtered requests are not failures)."""
        if failure.check(IgnoreRequest):
            return
        crawler = getattr(self, "crawler", None)
        if crawler is not None and crawler.stats is not None:
            crawler.stats.inc_value(STAT_FAILED_REQUESTS)
        request = getattr(failure, "request", None)
        self.logger.warning("no response for %s: %s", getattr(request, "url", "?"), failure.getErrorMessage())
