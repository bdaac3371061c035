"""What the readers share: the field helpers (dates, strings, file URLs, hashes) and the errors."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from datetime import time as dtime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

#: fetched_at of a dump record that gives no date (deterministic: never the clock or a file time)
DEFAULT_FETCHED_AT = "1970-01-01T00:00:00Z"
#: a gzip file (JSONL or WARC) that has inflated to more than this many times its compressed size
#: (past :data:`RATIO_FROM` bytes) is a decompression bomb: the rest of it is not read. Text
#: compresses 3-10x; 10 GiB of zeros in a 10 MB file is 1000x
MAX_GZIP_RATIO = 200
RATIO_FROM = 256 * 1024 * 1024
#: the fields a dump (JSONL/Parquet) can map
DUMP_FIELDS = ("url", "text", "html", "title", "fetched_at")

HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)
_ORDINAL_QUIRK = re.compile(r"^(\d{4})-\d{2}-(\d{3})T(.+)$")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: a date already as :func:`iso_utc` writes it (4-digit year; a fraction only if not zero)
_CANONICAL = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!000000)\d{6})?Z")


class ArchiveBroken(Exception):
    """The file (or its gzip stream) cannot be read past this point."""


def corrupt(url: str, detail: str) -> dict[str, Any]:
    """The one ``failed:corrupt_file`` record of a file that breaks."""
    return {"url": url, "outcome": "failed:corrupt_file", "detail": detail, "fetched_at": DEFAULT_FETCHED_AT}


def file_url(kind: str, name: str, anchor: str | None = None) -> str:
    """``<kind>://<quoted file name>[#<anchor>]``: the url of a record that has none."""
    return f"{kind}://{quote(name)}" + (f"#{anchor}" if anchor else "")


def field_mapping(fields: Mapping[str, str] | None) -> dict[str, str]:
    """Our dump field -> the dump's field (unmapped fields under their own name)."""
    fields = dict(fields or {})
    bad = sorted(set(fields) - set(DUMP_FIELDS))
    if bad:
        raise ValueError(f"unknown landed field(s) {bad} in the field mapping; map any of {list(DUMP_FIELDS)}")
    return {f: str(fields.get(f, f)) for f in DUMP_FIELDS}


def iso_utc(dt: datetime) -> str:
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: Any) -> str | None:
    """ISO-8601 UTC (``...Z``) of a date given as ISO text, a datetime or Unix seconds/milliseconds."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, datetime):
            return iso_utc(value)
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                return None
            seconds = value / 1000 if abs(value) >= 1e11 else value  # milliseconds beyond year 5138 s
            return iso_utc(datetime.fromtimestamp(seconds, tz=UTC))
        if isinstance(value, str):
            if _CANONICAL.fullmatch(value):  # the answer already, if it is a real date
                datetime.fromisoformat(value)
                return value
            if value.strip():
                return iso_utc(_parse_date_text(value.strip()))
    except (ValueError, OverflowError, OSError, TypeError):
        return None
    return None


def _parse_date_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    m = _ORDINAL_QUIRK.match(text)  # ClueWeb09: "2008-10-294T05:21:46-0700" (day of the year)
    if m:
        day = datetime.strptime(f"{m.group(1)}-{m.group(2)}", "%Y-%j")
        t = dtime.fromisoformat(m.group(3))
        return datetime.combine(day.date(), t.replace(tzinfo=None), tzinfo=t.tzinfo)
    return parsedate_to_datetime(text)  # RFC 2822 (HTTP dates, mail); raises ValueError/TypeError


def clean_str(value: str) -> str:
    """``value`` encodable as UTF-8 (lone surrogates from JSON escapes become U+FFFD)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)


def describe(e: BaseException) -> str:
    return str(e) if isinstance(e, ArchiveBroken) else f"{type(e).__name__}: {e}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
