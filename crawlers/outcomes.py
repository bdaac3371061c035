"""The outcome (``dataset_platform.contracts.records``) of a request that got no usable response."""

from __future__ import annotations

import re
from typing import Any

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from twisted.internet import error as txerror
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from crawlers.guard import REFUSED_AT_CONNECT, BlockedAddress
from crawlers.middlewares import RobotsDisallowed, TooLarge
from dataset_platform.contracts.records import FAILED_PREFIX

_SIZE_MSG = re.compile(r"(Expected to receive|Received) (\d+) bytes which is larger than download max size")
_REASON = re.compile(r"[^a-z0-9_]+")
_DETAIL_MAX = 300


def failed(reason: str) -> str:
    """``failed:<reason>`` with ``reason`` reduced to ``[a-z0-9_]+``."""
    return FAILED_PREFIX + (_REASON.sub("_", reason.lower()).strip("_") or "error")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 8:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def failure_outcome(exc: BaseException, host: str, max_bytes: int) -> tuple[str, str | None, bool]:
    """(outcome, detail, attempted) for the exception an errback received.

    ``attempted`` tells whether a download was attempted (the record then has a ``fetch_url``).
    """
    message = str(exc)[:_DETAIL_MAX] or type(exc).__name__
    if isinstance(exc, BlockedAddress):
        return "blocked_address", exc.address, False
    if isinstance(exc, RobotsDisallowed):
        return "robots_disallowed", None, False
    if isinstance(exc, TooLarge):
        return "too_large", f"max_bytes_per_page={max_bytes}; {exc.size_note}", True
    if isinstance(exc, DownloadCancelledError):
        m = _SIZE_MSG.search(str(exc))
        if m:
            what = "declared" if m.group(1).startswith("Expected") else "received"
            return "too_large", f"max_bytes_per_page={max_bytes}; {what} {m.group(2)} B", True
        # the body was cut off as soon as more than the limit had arrived (no declared size)
        return "too_large", f"max_bytes_per_page={max_bytes}; received more than {max_bytes} B", True
    if isinstance(exc, IgnoreRequest):
        if message.startswith("Filtered offsite"):
            return "off_domain", host or None, False
        return "filtered_by_rule", f"ignored:{message}", False
    chain = _chain(exc)

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if has(CannotResolveHostError, txerror.DNSLookupError):
        refused = REFUSED_AT_CONNECT.get(host)
        if refused is not None:
            return "blocked_address", refused, False
        return failed("dns"), message, True
    if has(DownloadTimeoutError, txerror.TimeoutError, txerror.TCPTimedOutError):
        return failed("timeout"), message, True
    if has(DownloadConnectionRefusedError, txerror.ConnectionRefusedError):
        return failed("connection_refused"), message, True
    if has(ResponseDataLossError):
        return failed("connection_lost"), "data loss: " + message, True
    if has(txerror.ConnectionLost, txerror.ConnectionDone, ResponseFailed, ResponseNeverReceived, DownloadFailedError):
        return failed("connection_lost"), message, True
    if has(txerror.ConnectError):
        return failed("connect_error"), message, True
    name = type(exc).__name__
    if "SSL" in name or "TLS" in name:
        return failed("tls"), message, True
    return failed(_snake(name)), message, True


def exception_of(failure: Any) -> BaseException:
    value = getattr(failure, "value", failure)
    return value if isinstance(value, BaseException) else RuntimeError(str(value))
