"""The landed record: one JSON object per line of a raw batch (gzip JSON Lines, sorted keys).

Every batch of the raw layer - a Scrapy crawl, an ingested WARC, JSONL or Parquet file - is a
gzip JSONL file of these records, ONE PER URL (or dump record) THE SOURCE CONSIDERED, whatever
happened to it. ``dataset_platform.ingest.load`` turns batches into two tables:

* ``crawl_log``: every record (without the body) - the outcome of every URL;
* ``raw_pages``: the records whose outcome is ``fetched`` (the body is stored), plus, for a
  recrawl, the previously stored row of every URL whose outcome is now ``not_modified``.

Outcomes (``outcome`` field):

====================  ===========================================================================
``fetched``           a 2xx response with an HTML (or, for dumps, text) body, stored in the batch
``not_modified``      304 to a conditional request, or a 2xx whose body hash equals the stored one,
                      or a WARC revisit record; the body is not stored again
``redirected``        a 3xx hop; ``detail`` is the target URL (the target gets its own record)
``robots_disallowed`` robots.txt forbids the URL (not fetched)
``filtered_by_rule``  a deny/allow URL regex, scheme, trap bound or depth limit excluded it;
                      ``detail`` names the rule (e.g. ``deny:/calendar/``, ``scheme:mailto``,
                      ``trap:calendar``, ``max_depth``)
``off_domain``        the host is not in ``allowed_domains`` (not fetched)
``too_large``         the body exceeded ``max_bytes_per_page`` (cut off, not stored);
                      ``detail``: the limit and the declared or received size
``not_html``          a 2xx response of a content type we do not accept (binary, PDF, image...)
``blocked_address``   the host resolves to a loopback/private/link-local/metadata address and the
                      source does not allow those; ``detail`` is the address (never connected)
``failed:<reason>``   no usable response after retries; ``<reason>`` is ``[a-z0-9_]+``: e.g.
                      ``timeout``, ``dns``, ``connection_refused``, ``connection_lost``,
                      ``http_404``, ``http_503``, ``redirect_loop``, ``too_many_redirects``,
                      ``decompression_bomb``, ``bad_json``, ``bad_record``, ``corrupt_file``
====================  ===========================================================================
"""

from __future__ import annotations

from typing import TypedDict

#: The keys of a record (lines are written with sorted keys; absent values are null).
LANDED_FIELDS = (
    "url",
    "fetch_url",
    "outcome",
    "detail",
    "status",
    "content_type",
    "charset",
    "fetched_at",
    "depth",
    "referer",
    "body_bytes",
    "content_hash",
    "etag",
    "last_modified",
    "headers",
    "title",
    "text",
    "html",
)
#: Kept for readers of the first batch format.
PAGE_FIELDS = LANDED_FIELDS

#: Every outcome except the ``failed:<reason>`` family.
OUTCOMES = (
    "fetched",
    "not_modified",
    "redirected",
    "robots_disallowed",
    "filtered_by_rule",
    "off_domain",
    "too_large",
    "not_html",
    "blocked_address",
)
FAILED_PREFIX = "failed:"

#: The landed fields a dump (JSONL/Parquet) can map to a field of its own (``sources[].fields``).
DUMP_FIELDS = ("url", "text", "html", "title", "fetched_at")


class LandedRecord(TypedDict):
    """One URL (or dump record) as landed in the raw layer."""

    url: str  # recorded, canonical URL (rewritten under record_base_url when set)
    fetch_url: str | None  # URL actually requested (None when never requested)
    outcome: str  # see OUTCOMES / failed:<reason>
    detail: str | None  # what the outcome needs to be understood (rule, address, limit, error...)
    status: int | None  # HTTP status of the response, None without one
    content_type: str | None  # lower-case media type without parameters
    charset: str | None  # encoding used to decode the body (after detection); None if binary
    fetched_at: str  # ISO-8601 UTC, e.g. 2026-11-02T10:11:12.123456Z (WARC-Date for WARC)
    depth: int | None  # link depth from a start URL (None for dumps)
    referer: str | None  # recorded URL of the page that linked here; None for start URLs/dumps
    body_bytes: int | None  # size of the (decompressed) body received, None without one
    content_hash: str | None  # md5 hex of the undecoded body bytes (or of the UTF-8 text for text dumps)
    etag: str | None  # response ETag header, verbatim
    last_modified: str | None  # response Last-Modified header, verbatim
    headers: str | None  # JSON object of the response headers: {lower-case name: first value}
    title: str | None  # dumps only: a title field given by the dump
    text: str | None  # dumps only: already-extracted text (html is then None)
    html: str | None  # decoded HTML body; only for outcome "fetched"


#: Kept for the first batch format's name.
PageItem = LandedRecord
