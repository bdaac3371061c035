"""Downloader middlewares of the crawl.

Each one turns a way Scrapy drops or fails a request into an exception the spider's errback can
record with its outcome (see ``crawlers.outcomes.failure_outcome``):

* :class:`AddressGuardMiddleware` - refuses hosts that are/resolve to non-public addresses
  (``BlockedAddress`` -> ``blocked_address``); first in the chain, before robots.txt is fetched;
* :class:`RecordingRobotsTxtMiddleware` - Scrapy's robots.txt middleware raising
  ``RobotsDisallowed`` (-> ``robots_disallowed``) instead of a bare ``IgnoreRequest``;
* :class:`BackoffRetryMiddleware` - Scrapy's retry middleware with exponential backoff and
  ``Retry-After``;
* :class:`BoundedHttpCompressionMiddleware` - Scrapy's decompression (bounded by
  ``DOWNLOAD_MAXSIZE`` on the decompressed size) raising ``TooLarge`` (-> ``too_large``).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import socket
import time
from typing import Any

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.httpcompression import HttpCompressionMiddleware
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached

from crawlers.guard import AddressPolicy, BlockedAddress, url_port

logger = logging.getLogger(__name__)

#: Request.meta key: seconds to wait before this (retried) request is downloaded.
RETRY_DELAY_META = "dataset_platform_retry_delay"
STAT_BLOCKED = "dataset_platform/blocked_address"


class RobotsDisallowed(IgnoreRequest):
    """robots.txt forbids the request."""


class TooLarge(IgnoreRequest):
    """The body exceeded ``DOWNLOAD_MAXSIZE`` (declared, received or decompressed)."""

    def __init__(self, message: str, size_note: str) -> None:
        super().__init__(message)
        self.size_note = size_note


class AddressGuardMiddleware:
    """Refuse requests whose host is a refused address, a refused name or resolves to one.

    All addresses ``getaddrinfo`` returns (IPv4 and IPv6) are checked; one refused address
    refuses the host. Verdicts are cached per host for the crawl. A host that does not resolve is
    let through: its download then fails (``failed:dns``) through Scrapy's retries. The reactor's
    resolver (``crawlers.guard.GuardedResolver``) checks again at connect time.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.policy = AddressPolicy.from_settings(crawler.settings)
        self.dns_timeout = crawler.settings.getfloat("DNS_TIMEOUT") or 60.0
        self._verdicts: dict[tuple[str, int], tuple[str, str] | None] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> AddressGuardMiddleware:
        return cls(crawler)

    async def _resolve(self, host: str, port: int | None = None) -> tuple[str, str] | None | bool:
        """(address, category) of the first refused address (on ``port``); None if all pass; False if unresolved."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=self.dns_timeout
            )
        except (TimeoutError, OSError, UnicodeError):
            return False
        for info in infos:
            address = str(info[4][0])
            category = self.policy.refused(address, port)
            if category is not None:
                return (f"{address}:{port}" if "port" in category else address), category
        return None

    async def process_request(self, request: Request) -> None:
        url = urlparse_cached(request)
        host = (url.hostname or "").lower()
        if not host:
            return None
        try:
            port = url_port(url.scheme, url.port)
        except ValueError:  # a port out of range: the download fails on it
            return None
        key = (host, port)
        if key in self._verdicts:
            verdict = self._verdicts[key]
        else:
            verdict = self.policy.refused_host(host, port)
            if verdict is None and not _is_ip(host):
                resolved = await self._resolve(host, port)
                if resolved is False:
                    return None  # not cached: the download reports the DNS failure
                verdict = resolved or None
            self._verdicts[key] = verdict
        if verdict is not None:
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value(STAT_BLOCKED)
            raise BlockedAddress(*verdict)
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class RecordingRobotsTxtMiddleware(RobotsTxtMiddleware):
    """Scrapy's RobotsTxtMiddleware; a disallowed request fails with :class:`RobotsDisallowed`."""

    def process_request_2(self, rp: Any, request: Request) -> None:
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest as e:
            raise RobotsDisallowed(str(e)) from None


def retry_after_seconds(value: bytes | str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's RetryMiddleware (RETRY_TIMES, RETRY_HTTP_CODES, RETRY_EXCEPTIONS) plus backoff.

    The n-th retry waits ``DATASET_PLATFORM_RETRY_BACKOFF_S * 2**(n-1)`` seconds (at most
    ``DATASET_PLATFORM_RETRY_BACKOFF_MAX_S``) before it is downloaded. A response with a
    ``Retry-After`` header waits at least that long; when the server asks for more than
    ``DATASET_PLATFORM_RETRY_AFTER_MAX_S`` the request is not retried (the response is recorded,
    e.g. ``failed:http_429``). The wait happens in ``process_request`` without holding a download
    slot.
    """

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.backoff_s = settings.getfloat("DATASET_PLATFORM_RETRY_BACKOFF_S", 1.0)
        self.backoff_max_s = settings.getfloat("DATASET_PLATFORM_RETRY_BACKOFF_MAX_S", 30.0)
        self.retry_after_max_s = settings.getfloat("DATASET_PLATFORM_RETRY_AFTER_MAX_S", 60.0)

    def _delay(self, retry: Request) -> float:
        n = int(retry.meta.get("retry_times", 1))
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, n - 1))

    def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        wait = retry_after_seconds(response.headers.get(b"Retry-After"))
        if wait is not None and wait > self.retry_after_max_s:
            logger.info("not retrying %s: Retry-After asks for %.0f s", request, wait)
            return response
        retry = self._retry(request, f"{response.status}")
        if retry is None:
            return response
        retry.meta[RETRY_DELAY_META] = max(self._delay(retry), wait or 0.0)
        return retry

    def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:  # type: ignore[override]
        retry = super().process_exception(request, exception)
        if isinstance(retry, Request):
            retry.meta[RETRY_DELAY_META] = self._delay(retry)
        return retry

    async def process_request(self, request: Request) -> None:
        delay = request.meta.pop(RETRY_DELAY_META, 0)
        if delay and delay > 0:
            await asyncio.sleep(float(delay))
        return None


class BoundedHttpCompressionMiddleware(HttpCompressionMiddleware):
    """Scrapy's HttpCompressionMiddleware; a body whose decompressed size exceeds
    ``DOWNLOAD_MAXSIZE`` (e.g. a gzip bomb) fails with :class:`TooLarge` (decompression stops at
    the limit, so memory stays bounded)."""

    def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        try:
            return super().process_response(request, response)
        except IgnoreRequest as e:
            cause = e.__cause__
            done = getattr(cause, "decompressed_size", None)
            limit = getattr(cause, "max_size", None)
            note = f"decompressed size > {limit} B (stopped at {done} B" if done and limit else (
                "decompressed size over the limit (")
            raise TooLarge(str(e), f"{note}; {len(response.body)} B compressed)") from e
