"""The record written for every HTTP response: one JSON object per line of a crawl batch."""

from __future__ import annotations

from typing import TypedDict

#: The keys of a record, in the order the loader documents them (lines are written with sorted keys).
PAGE_FIELDS = (
    "url",
    "fetch_url",
    "status",
    "content_type",
    "charset",
    "fetched_at",
    "depth",
    "referer",
    "body_bytes",
    "html",
)


class PageItem(TypedDict):
    """One HTTP response as landed in the raw layer."""

    url: str  # recorded URL (rewritten under record_base_url when set)
    fetch_url: str  # URL actually fetched (after redirects)
    status: int
    content_type: str  # lower-case media type without parameters, "" if none
    charset: str | None  # encoding used to decode the body; None for binary responses
    fetched_at: str  # ISO-8601 UTC, e.g. 2026-11-02T10:11:12.123456Z
    depth: int
    referer: str | None  # recorded URL of the page that linked here; None for start URLs
    body_bytes: int
    html: str | None  # decoded body for text/html and application/xhtml+xml, else None
