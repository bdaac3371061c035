"""Landing files: a WARC, JSON Lines or Parquet file becomes one raw batch.

A batch is a gzip JSON Lines file of landed records (``dataset_platform/contracts/records.py``), one per URL (WARC
response/revisit/resource record) or dump record, written under ``<output>.part`` and renamed
into place, so a killed ingest leaves no batch behind. The same input file always gives the same
bytes: nothing in a record comes from the clock (WARC records carry their ``WARC-Date``; a dump's
``fetched_at`` field is used when mapped, else :data:`DEFAULT_FETCHED_AT`).

Files are read as streams: one WARC record payload (bounded by ``max_body_bytes``), one JSON line
or one Parquet record batch is in memory at a time.

Damaged input never raises and never loses what could be read:

* a WARC or gzip stream that is truncated or corrupt: every record before the break is landed,
  then ONE ``failed:corrupt_file`` record, url ``warc://<file>#offset=<byte offset of the record
  that broke>``; the same for a ``.jsonl.gz`` (``jsonl://<file>#line=<n>``) and a Parquet file
  that cannot be opened (``parquet://<file>``). Parquet row groups are independent: a damaged one
  gives one ``failed:corrupt_file`` record (``parquet://<file>#row=<n>``, the first row lost) and
  the following row groups are read on;
* a JSON Lines line that is not a JSON object: ``failed:bad_json`` (url
  ``jsonl://<file>#line=<n>``, 1-based); a record without text or html: ``failed:bad_record``.
  Both lines are also copied verbatim to ``<batch>.quarantine.jsonl`` beside the batch (one
  ``{"file", "line", "error", "raw"}`` object per line), so nothing is lost. That name does not
  end in ``.jsonl.gz``: the loader never takes it for a batch.

Notes on each break are in :attr:`IngestSummary.errors` and passed to ``log``.

WARC mapping (per record type):

* ``response`` (HTTP): 2xx ``text/html``/``application/xhtml+xml`` -> ``fetched`` (``html``
  decoded by :func:`dataset_platform.text.charset.decode_html`); other 2xx -> ``not_html``; 304 ->
  ``not_modified`` (detail ``http_304``); other 3xx -> ``redirected`` (detail: the Location,
  resolved against the target URI); other statuses -> ``failed:http_<status>``. The payload is
  de-chunked and its Content-Encoding (gzip, deflate, br) undone; ``body_bytes``/``content_hash``
  are the size and md5 of those bytes; over ``max_body_bytes`` -> ``too_large``.
* ``revisit`` -> ``not_modified`` (detail: the WARC-Profile's last path segment, e.g.
  ``identical-payload-digest``; no hash: WARC digests are not md5).
* ``resource`` with an HTML content type -> ``fetched`` (status null); other types -> ``not_html``.
* ``request``, ``metadata``, ``warcinfo``, ``conversion`` (WET), ... and records whose target is
  not an http(s) URL are not URLs of the source: counted in :attr:`IngestSummary.skipped`.

WARC library: warcio (pure Python, long maintained). FastWARC 2.0 parses about 4x faster, but
its payload decoding aborts on records that keep a ``Transfer-Encoding: chunked`` header over an
already de-chunked payload (as the pywb captures of the test corpus do), and parsing is a
minority of the ingest time (see BENCHMARKS.md). warcio's readers are subclassed below so that a
damaged gzip stream raises (warcio prints to stderr and stops) and a damaged Content-Encoding
fails one record only.

JSONL/Parquet mapping: ``fields`` maps our fields (``url``, ``text``, ``html``, ``title``,
``fetched_at``) to the dump's; unmapped fields are looked up under their own name. A record with
``text`` lands as ``fetched`` with ``text`` (``html`` null, ``content_type`` ``text/plain``); one
with only ``html`` as ``fetched`` with ``html`` (``text/html``). A record without an http(s) ``url``
gets ``jsonl://<file>#line=<n>`` / ``parquet://<file>#row=<n>`` (1-based) and, if it had a url
that is not http(s), a ``detail`` saying so.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from datetime import time as dtime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urljoin

from dataset_platform.contracts.records import LANDED_FIELDS

Log = Callable[[str], None]

#: fetched_at of a dump record that gives no date (deterministic: never the clock or a file time)
DEFAULT_FETCHED_AT = "1970-01-01T00:00:00Z"
#: largest decoded WARC payload kept (bytes); a larger one lands as ``too_large``
MAX_BODY_BYTES = 20 * 1024 * 1024
#: a progress line every this many records
PROGRESS_EVERY = 10_000
#: the fields a dump (JSONL/Parquet) can map
DUMP_FIELDS = ("url", "text", "html", "title", "fetched_at")
#: accepted file name endings (case-insensitive) -> kind
SUFFIXES = {
    ".warc": "warc",
    ".warc.gz": "warc",
    ".wat.gz": "warc",  # Common Crawl metadata (WARC metadata records: no URLs to land)
    ".wet.gz": "warc",  # Common Crawl extracted text (WARC conversion records: no URLs to land)
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".ndjson.gz": "jsonl",
    ".parquet": "parquet",
}
KINDS = ("warc", "jsonl", "parquet")
HTML_TYPES = ("text/html", "application/xhtml+xml")
SKIPPED_HEADERS = frozenset({"set-cookie", "set-cookie2"})

_READ_CHUNK = 64 * 1024
_PARQUET_BATCH_ROWS = 512
_DETAIL_MAX = 500
_HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)
_ORDINAL_QUIRK = re.compile(r"^(\d{4})-\d{2}-(\d{3})T(.+)$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTENT_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br"}


@dataclass
class IngestSummary:
    """What one ingested file gave."""

    path: str
    kind: str
    records: int = 0  # lines written to the batch
    outcomes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # WARC records that are not URLs, by type
    bytes_read: int = 0  # bytes of the input file read (compressed size for .gz)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # where and how the file broke
    quarantined: int = 0  # JSONL lines copied to the quarantine file
    quarantine_path: str | None = None

    def line(self) -> str:
        """One human-readable line."""
        parts = [f"{Path(self.path).name}: {self.records} records"]
        if self.outcomes:
            parts.append(", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if self.quarantined:
            parts.append(f"{self.quarantined} line(s) quarantined in {self.quarantine_path}")
        mb = self.bytes_read / 1e6
        rate = f", {self.records / self.elapsed_s:.0f} records/s" if self.elapsed_s > 0 else ""
        parts.append(f"{mb:.1f} MB read in {self.elapsed_s:.1f}s{rate}")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        return "; ".join(parts)


# ----------------------------------------------------------------------------- public helpers


def kind_for_path(path: str | os.PathLike) -> str:
    """``warc``, ``jsonl`` or ``parquet`` from a file name's ending; ValueError otherwise."""
    name = Path(path).name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise ValueError(
        f"{Path(path).name}: cannot tell the file kind from its name; accepted endings: "
        + ", ".join(SUFFIXES)
    )


def batch_id_for(path: str | os.PathLike, source: str) -> str:
    """``<source>-<first 16 hex digits of sha256(file bytes)>``: the same file lands once.

    Hex digits never contain ``T`` or ``Z``, so this never looks like a crawl id
    (``<source>-<yyyymmdd>T<hhmmss...>Z``).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"{source}-{digest.hexdigest()[:16]}"


def quarantine_path_for(output_path: str | os.PathLike) -> Path:
    """``<batch without .jsonl.gz>.quarantine.jsonl`` (never matched by the loader's ``*.jsonl.gz``)."""
    out = Path(output_path)
    stem = out.name[: -len(".jsonl.gz")] if out.name.endswith(".jsonl.gz") else out.name
    return out.with_name(stem + ".quarantine.jsonl")


def ingest_file(
    path: str | os.PathLike,
    *,
    source: str,
    kind: str,
    output_path: str | os.PathLike,
    fields: Mapping[str, str] | None = None,
    log: Log | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> IngestSummary:
    """Land ``path`` (a ``kind`` file) as the batch ``output_path``; see the module docstring."""
    path = Path(path)
    if kind not in KINDS:
        raise ValueError(f"{path.name}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    mapping = _field_mapping(fields)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    say = log or (lambda _m: None)
    summary = IngestSummary(path=str(path), kind=kind)
    t0 = time.perf_counter()
    writer = _BatchWriter(Path(output_path), summary, say, source, path.name)
    try:
        if kind == "warc":
            if fields:
                say(f"{source}: {path.name}: field mapping ignored for a WARC file")
            _ingest_warc(path, writer, summary, max_body_bytes)
        elif kind == "jsonl":
            _ingest_jsonl(path, writer, summary, mapping)
        else:
            _ingest_parquet(path, writer, summary, mapping, explicit=set(fields or {}))
        summary.elapsed_s = time.perf_counter() - t0
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    for note in summary.errors:
        say(f"{source}: {note}")
    say(f"{source}: {summary.line()}")
    return summary


# ----------------------------------------------------------------------------- writing


class _BatchWriter:
    """The batch (gzip JSONL, sorted keys, mtime 0) and its quarantine file, both atomic."""

    def __init__(self, out: Path, summary: IngestSummary, log: Log, source: str, name: str) -> None:
        self.out = out
        self.part = out.with_name(out.name + ".part")
        self.qpath = quarantine_path_for(out)
        self.qpart = self.qpath.with_name(self.qpath.name + ".part")
        self.summary = summary
        self.log = log
        self.prefix = f"{source}: {name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        self._raw: IO[bytes] = open(self.part, "wb")
        # compresslevel 6: ~3x faster than the default 9, batches ~2% larger
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        self._q: IO[str] | None = None

    def write(self, rec: dict[str, Any]) -> None:
        extra = set(rec) - set(LANDED_FIELDS)
        if extra:
            raise AssertionError(f"not landed fields: {sorted(extra)}")
        full = {k: rec.get(k) for k in LANDED_FIELDS}
        if full["detail"] is not None and len(full["detail"]) > _DETAIL_MAX:
            full["detail"] = full["detail"][:_DETAIL_MAX]
        self._gz.write((json.dumps(full, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        s = self.summary
        s.records += 1
        s.outcomes[full["outcome"]] = s.outcomes.get(full["outcome"], 0) + 1
        if s.records % PROGRESS_EVERY == 0:
            self.log(f"{self.prefix}: {s.records} records, {s.bytes_read / 1e6:.1f} MB read")

    def quarantine(self, file: str, line: int, error: str, raw: str) -> None:
        if self._q is None:
            self._q = open(self.qpart, "w", encoding="utf-8", newline="\n")
        self._q.write(json.dumps({"file": file, "line": line, "error": error, "raw": raw}, ensure_ascii=False) + "\n")
        self.summary.quarantined += 1

    def commit(self) -> None:
        # The quarantine first: once the batch exists, everything it refers to exists.
        if self._q is not None:
            self._q.flush()
            os.fsync(self._q.fileno())
            self._q.close()
            self._q = None
            os.replace(self.qpart, self.qpath)
            self.summary.quarantine_path = str(self.qpath)
        self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.part, self.out)

    def abort(self) -> None:
        for f in (self._q, self._gz, self._raw):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass
        for p in (self.part, self.qpart):
            p.unlink(missing_ok=True)


def _corrupt(url: str, detail: str) -> dict[str, Any]:
    return {"url": url, "outcome": "failed:corrupt_file", "detail": detail, "fetched_at": DEFAULT_FETCHED_AT}


def _file_url(kind: str, name: str, anchor: str | None = None) -> str:
    return f"{kind}://{quote(name)}" + (f"#{anchor}" if anchor else "")


# ----------------------------------------------------------------------------- small helpers


def _field_mapping(fields: Mapping[str, str] | None) -> dict[str, str]:
    fields = dict(fields or {})
    bad = sorted(set(fields) - set(DUMP_FIELDS))
    if bad:
        raise ValueError(f"unknown landed field(s) {bad} in the field mapping; map any of {list(DUMP_FIELDS)}")
    return {f: str(fields.get(f, f)) for f in DUMP_FIELDS}


def _iso_utc(dt: datetime) -> str:
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _parse_date(value: Any) -> str | None:
    """ISO-8601 UTC (``...Z``) of a date given as ISO text, a datetime or Unix seconds/milliseconds."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, datetime):
            return _iso_utc(value)
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                return None
            seconds = value / 1000 if abs(value) >= 1e11 else value  # milliseconds beyond year 5138 s
            return _iso_utc(datetime.fromtimestamp(seconds, tz=timezone.utc))
        if isinstance(value, str) and value.strip():
            return _iso_utc(_parse_date_text(value.strip()))
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


def _clean_str(value: str) -> str:
    """``value`` encodable as UTF-8 (lone surrogates from JSON escapes become U+FFFD)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, _ArchiveBroken) else f"{type(e).__name__}: {e}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----------------------------------------------------------------------------- WARC


class _ArchiveBroken(Exception):
    """The WARC (or its gzip stream) cannot be read past this point."""


class _PayloadError(Exception):
    """One record's HTTP payload cannot be decoded (the file itself reads on)."""


def _warc_classes():
    """warcio subclasses, built on first use (warcio is imported lazily)."""
    global _WARC
    if _WARC is not None:
        return _WARC
    from warcio.archiveiterator import ArchiveIterator
    from warcio.bufferedreaders import BufferedReader, ChunkedDataReader, DecompressingBufferedReader
    from warcio.utils import BUFF_SIZE

    class StrictGzipReader(DecompressingBufferedReader):
        """The file's reader: a gzip error after data was decompressed is a break, not a silent EOF
        (warcio writes the error to stderr and stops). Before any data, it means "not gzip" (a
        plain .warc file), as in warcio."""

        def _decompress(self, data):
            if not (self.decompressor and data):
                return data
            try:
                return self.decompressor.decompress(data)
            except Exception as e:
                if self.num_read == 0 and self.num_block_read == 0:
                    self.decompressor = None
                    return data
                raise _ArchiveBroken(f"gzip data is corrupt: {type(e).__name__}: {e}") from e

    class StrictContentMixin:
        """A record payload's Content-Encoding: an error after the first block is the record's."""

        def _decompress(self, data):
            if not (self.decompressor and data):
                return data
            try:
                return self.decompressor.decompress(data)
            except Exception as e:
                gzip_magic = self.decomp_type == "gzip" and data[:2] == b"\x1f\x8b"
                if self.num_block_read == 0 and not gzip_magic:  # not encoded after all: keep the bytes (as warcio)
                    if self.decomp_type == "deflate":
                        self._init_decomp("deflate_alt")
                        return self._decompress(data)
                    self.decompressor = None
                    return data
                raise _PayloadError(f"content-encoding {self.decomp_type}: {type(e).__name__}: {e}") from e

    class ContentReader(StrictContentMixin, BufferedReader):
        pass

    class ChunkedContentReader(StrictContentMixin, ChunkedDataReader):
        pass

    class Iterator(ArchiveIterator):
        """ArchiveIterator over the strict reader; a gzip file that is one member holding every
        record is read on (warcio raises); ``tail_incomplete`` tells whether the last gzip member
        ended without its end marker (a file cut right after a record's data)."""

        def __init__(self, fileobj):
            super().__init__(fileobj, block_size=BUFF_SIZE)
            self.reader = StrictGzipReader(self.fh, block_size=BUFF_SIZE)
            self.tail_incomplete = False

        def _raise_invalid_gzip_err(self):
            return None

        def close(self):
            reader = self.reader
            d = reader.decompressor if reader is not None else None
            if d is not None and hasattr(d, "eof") and not d.eof and reader.num_read > 0:
                self.tail_incomplete = True
            super().close()

    _WARC = (Iterator, ContentReader, ChunkedContentReader)
    return _WARC


_WARC = None


def _content_stream(rec) -> IO[bytes]:
    """The payload of an HTTP record, de-chunked and with its Content-Encoding undone."""
    _, content_reader, chunked_reader = _warc_classes()
    h = rec.http_headers
    encoding = _CONTENT_ENCODINGS.get((h.get_header("content-encoding") or "").strip().lower())
    if encoding == "br":
        from warcio.bufferedreaders import BufferedReader

        if "br" not in BufferedReader.get_supported_decompressors():
            raise _PayloadError("content-encoding br: the brotli package is not installed")
    chunked = "chunked" in (h.get_header("transfer-encoding") or "").lower()
    if chunked:
        return chunked_reader(rec.raw_stream, decomp_type=encoding)
    if encoding:
        return content_reader(rec.raw_stream, decomp_type=encoding)
    return rec.raw_stream


def _read_bounded(stream: IO[bytes], limit: int) -> tuple[bytes | None, int]:
    """(payload, size); payload None when it exceeds ``limit`` (reading stops there)."""
    parts: list[bytes] = []
    n = 0
    while chunk := stream.read(_READ_CHUNK):
        n += len(chunk)
        if n > limit:
            return None, n
        parts.append(chunk)
    return b"".join(parts), n


def _media_type(raw: str | None) -> str | None:
    if not raw:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


def _headers_json(h) -> str:
    out: dict[str, str] = {}
    for name, value in h.headers:
        key = name.strip().lower()
        if key in SKIPPED_HEADERS or key in out:
            continue
        out[key] = _clean_str(value)
    return json.dumps(out, sort_keys=True, ensure_ascii=False)


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml")) and b"<html" in body[:4096].lower()


def _warc_record(rec, max_body: int) -> dict[str, Any] | str:
    """The landed record of a WARC record, or the key it is counted under in ``skipped``."""
    rtype = rec.rec_type or "unknown"
    if rtype not in ("response", "revisit", "resource"):
        return rtype
    wh = rec.rec_headers
    uri = (wh.get_header("WARC-Target-URI") or "").strip().strip("<>")
    if not _HTTP_URL.match(uri):
        return f"{rtype}:non_http_uri"
    uri = _clean_str(uri)
    h = rec.http_headers
    raw_date = wh.get_header("WARC-Date")
    date = _parse_date(raw_date)
    notes: list[str] = []
    if date is None:
        date = _parse_date(h.get_header("date")) if h is not None else None
        used = "HTTP Date" if date else DEFAULT_FETCHED_AT
        notes.append(f"WARC-Date {raw_date!r} unreadable; {used} used")
    r: dict[str, Any] = {"url": uri, "fetch_url": uri, "fetched_at": date or DEFAULT_FETCHED_AT}
    truncated = wh.get_header("WARC-Truncated")
    if truncated:
        notes.append(f"warc-truncated:{truncated}")

    def done(outcome: str, detail: str | None = None) -> dict[str, Any]:
        r["outcome"] = outcome
        # a redirect's detail is its target URL alone; elsewhere the notes follow the detail
        r["detail"] = detail if outcome == "redirected" else "; ".join([*([detail] if detail else []), *notes]) or None
        return r

    if rtype == "resource":
        raw_ct = wh.get_header("Content-Type")
        r["content_type"] = _media_type(raw_ct)
        return _with_body(r, rec.raw_stream, raw_ct, max_body, done)

    if rtype == "revisit":
        profile = (wh.get_header("WARC-Profile") or "").rstrip("/")
        detail = profile.rsplit("/", 1)[-1] or "revisit"
        if h is not None:
            status = _status(h)
            r.update(status=status, headers=_headers_json(h), content_type=_media_type(h.get_header("content-type")),
                     etag=h.get_header("etag"), last_modified=h.get_header("last-modified"))
        return done("not_modified", detail)

    if h is None:
        return done("failed:bad_record", "response record without HTTP headers")
    status = _status(h)
    raw_ct = h.get_header("content-type")
    r.update(headers=_headers_json(h), content_type=_media_type(raw_ct), etag=h.get_header("etag"),
             last_modified=h.get_header("last-modified"))
    if status is None:
        return done("failed:bad_record", f"HTTP status line {h.statusline!r} unreadable")
    r["status"] = status
    if status == 304:
        return done("not_modified", "http_304")
    if 300 <= status < 400:
        location = (h.get_header("location") or "").strip()
        if not location:
            return done(f"failed:http_{status}", "no Location header")
        return done("redirected", _clean_str(urljoin(uri, location)))
    if not 200 <= status < 300:
        return done(f"failed:http_{status}")
    try:
        stream = _content_stream(rec)
    except _PayloadError as e:
        return done("failed:bad_record", str(e))
    return _with_body(r, stream, raw_ct, max_body, done)


def _status(h) -> int | None:
    try:
        status = int((h.get_statuscode() or "").strip())
    except ValueError:
        return None
    return status if 100 <= status <= 599 else None


def _with_body(r: dict[str, Any], stream: IO[bytes], raw_ct: str | None, max_body: int, done) -> dict[str, Any]:
    """Read a 2xx/resource payload: fetched (HTML), not_html, too_large or failed:bad_record."""
    try:
        body, size = _read_bounded(stream, max_body)
    except _PayloadError as e:
        return done("failed:bad_record", str(e))
    if body is None:
        return done("too_large", f"max_body_bytes={max_body}; decoded payload larger")
    r["body_bytes"] = size
    r["content_hash"] = _md5(body)
    ctype = r.get("content_type")
    if ctype is None and _looks_like_html(body):
        ctype = r["content_type"] = "text/html"  # no Content-Type: sniffed, as the crawler does
    if ctype not in HTML_TYPES:
        return done("not_html")
    from dataset_platform.text.charset import decode_html

    text, encoding = decode_html(body, raw_ct)
    r["html"] = _clean_str(text)
    r["charset"] = encoding
    return done("fetched")


def _gzip_problem(path: Path, offset: int) -> str | None:
    """What is wrong with the gzip member starting at ``offset`` (None if it reads to its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pos = offset
            while not d.eof:
                chunk = f.read(_READ_CHUNK)
                if not chunk:
                    return (f"the gzip member starting at byte {offset} ends at byte {pos} without its end marker "
                            "(file truncated)")
                try:
                    d.decompress(chunk)
                except zlib.error as e:
                    return f"gzip member starting at byte {offset} is corrupt near byte {pos}: {e}"
                pos += len(chunk)
        return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def _ingest_warc(path: Path, w: _BatchWriter, s: IngestSummary, max_body: int) -> None:
    iterator_cls, _, _ = _warc_classes()
    name = path.name
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        it = iterator_cls(f)
        start = it.offset
        broken: str | None = None
        rtype, uri = None, None
        while broken is None:
            try:
                rec = next(it)
            except StopIteration:
                break
            except Exception as e:  # a record's headers could not be parsed: the file breaks here
                broken = f"record at byte {start} unreadable: {_describe(e)}"
                break
            rtype = rec.rec_type
            uri = rec.rec_headers.get_header("WARC-Target-URI") if rec.rec_headers else None
            if rec.length is None and not is_gzip:  # the rest of the file would be read as its block
                broken = f"{rtype} record at byte {start} has no Content-Length (headers cut short?)"
                break
            try:
                try:
                    out = _warc_record(rec, max_body)
                except (_ArchiveBroken, zlib.error, OSError):
                    raise
                except Exception as e:  # never lose the rest of the file to one odd record
                    out = {"url": _clean_str((uri or "").strip("<>")) or _file_url("warc", name, f"offset={start}"),
                           "outcome": "failed:bad_record", "detail": f"{type(e).__name__}: {e}",
                           "fetched_at": DEFAULT_FETCHED_AT}
                it.read_to_end()
            except Exception as e:
                broken = f"{rtype} record of {uri} at byte {start}: {_describe(e)}"
                break
            remaining = getattr(rec.raw_stream, "limit", 0) or 0
            if remaining > 0:
                declared = rec.length or 0
                broken = (f"{rtype} record of {uri} at byte {start} is cut short: {declared - remaining} of its "
                          f"{declared} bytes could be read")
                break
            if isinstance(out, str):
                s.skipped[out] = s.skipped.get(out, 0) + 1
            else:
                w.write(out)
            s.bytes_read = f.tell()
            start = it.offset
        size = os.fstat(f.fileno()).st_size
        if broken is None and it.tail_incomplete:
            broken = f"the file ends inside a gzip member after byte {start} (truncated after its last record)"
        elif broken is None and start < size:
            broken = (f"the {size - start} bytes from byte {start} to the end are not a complete record "
                      "(file truncated inside a record's headers?)")
        if broken is not None:
            if is_gzip and "gzip" not in broken:  # say whether the gzip stream is cut or corrupt
                why = _gzip_problem(path, start)
                if why:
                    broken += f" ({why})"
            s.errors.append(f"{name}: broken at byte offset {start}: {broken}; "
                            f"{s.records} records before it were landed")
            w.write(_corrupt(_file_url("warc", name, f"offset={start}"), broken))
        s.bytes_read = max(s.bytes_read, f.tell())


# ----------------------------------------------------------------------------- JSON Lines


def _jsonl_lines(path: Path, s: IngestSummary) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes) of a (gzip) JSON Lines file; raises _ArchiveBroken
    (after the readable lines) when the gzip stream is cut or corrupt."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        n = 0
        if not gz:
            for line in f:
                n += 1
                s.bytes_read += len(line)
                yield n, line
            return
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = b""
        pos = 0
        while True:
            chunk = f.read(_READ_CHUNK)
            if not chunk:
                if not d.eof or d.unused_data:
                    # lines already yielded stand; a partial last line is part of the break
                    raise _ArchiveBroken(
                        f"gzip stream ends at byte {pos} without its end marker (file truncated)"
                        + (f"; incomplete line {n + 1} ({len(pending)} bytes) dropped" if pending else ""),
                    )
                break
            pos += len(chunk)
            s.bytes_read = pos
            data = b""
            while chunk:
                try:
                    data += d.decompress(chunk)
                except zlib.error as e:
                    raise _ArchiveBroken(f"gzip data corrupt near byte {pos - len(chunk)}: {e}"
                                         + (f"; incomplete line {n + 1} dropped" if pending else "")) from e
                if d.eof:  # next member (concatenated gzip files)
                    chunk = d.unused_data
                    if chunk:
                        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    chunk = b""
            pending += data
            if b"\n" in pending:
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    n += 1
                    yield n, line + b"\n"
        if pending:
            n += 1
            yield n, pending


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _ingest_jsonl(path: Path, w: _BatchWriter, s: IngestSummary, mapping: dict[str, str]) -> None:
    name = path.name
    n = 0
    try:
        for n, raw in _jsonl_lines(path, s):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            url = _file_url("jsonl", name, f"line={n}")
            try:
                obj = json.loads(raw.rstrip(b"\r\n"), parse_constant=_reject_constant)
                if not isinstance(obj, dict):
                    raise ValueError(f"not a JSON object but a JSON {_json_type(obj)}")
            except (ValueError, RecursionError) as e:
                msg = f"{type(e).__name__}: {e}" if isinstance(e, UnicodeDecodeError) else str(e)
                w.write({"url": url, "outcome": "failed:bad_json", "detail": msg, "fetched_at": DEFAULT_FETCHED_AT})
                w.quarantine(name, n, msg, _line_text(raw))
                continue
            rec, problem = _dump_record(lambda k: obj.get(mapping[k]), "jsonl", name, f"line={n}", mapping)
            w.write(rec)
            if problem:
                w.quarantine(name, n, problem, _line_text(raw))
    except _ArchiveBroken as e:
        where = n + 1
        s.errors.append(f"{name}: broken after line {n}: {e}; {s.records} records before it were landed")
        w.write(_corrupt(_file_url("jsonl", name, f"line={where}"), str(e)))


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")


def _line_text(raw: bytes) -> str:
    return _clean_str(raw.rstrip(b"\r\n").decode("utf-8", "replace"))


def _as_text(value: Any, what: str) -> str | None:
    """A string field of a dump: str kept, bytes decoded, numbers spelt; objects/arrays refused."""
    if value is None:
        return None
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, (bytes, bytearray)):
        return _clean_str(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"field {what!r} is a {type(value).__name__}, not a string")


def _dump_record(get: Callable[[str], Any], kind: str, name: str, anchor: str,
                 mapping: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """(landed record, problem) of one dump record; problem is set for ``failed:bad_record``."""
    fallback_url = _file_url(kind, name, anchor)
    notes: list[str] = []
    try:
        url = (_as_text(get("url"), mapping["url"]) or "").strip()
    except TypeError as e:
        url = ""
        notes.append(str(e))
    if url and not _HTTP_URL.match(url):
        notes.append(f"url {url[:200]!r} is not an http(s) URL")
        url = ""
    url = url or fallback_url
    raw_date = get("fetched_at")
    date = _parse_date(raw_date)
    if raw_date is not None and date is None:
        notes.append(f"fetched_at {str(raw_date)[:60]!r} unreadable; {DEFAULT_FETCHED_AT} used")
    rec: dict[str, Any] = {"url": url, "fetched_at": date or DEFAULT_FETCHED_AT}
    try:
        text = _as_text(get("text"), mapping["text"])
        html = _as_text(get("html"), mapping["html"])
    except TypeError as e:
        problem = str(e)
        rec.update(outcome="failed:bad_record", detail="; ".join([problem, *notes]))
        return rec, problem
    try:
        title = _as_text(get("title"), mapping["title"])
    except TypeError as e:
        title = None
        notes.append(str(e))
    if text is not None and not text.strip():
        text = None
    if html is not None and not html.strip():
        html = None
    if text is None and html is None:
        problem = (f"no text or html: fields {mapping['text']!r} and {mapping['html']!r} are missing, null or "
                   "empty")
        rec.update(outcome="failed:bad_record", detail="; ".join([problem, *notes]))
        return rec, problem
    body = (text if text is not None else html).encode("utf-8")
    rec.update(
        outcome="fetched",
        detail="; ".join(notes) or None,
        content_type="text/plain" if text is not None else "text/html",
        charset="utf-8",
        body_bytes=len(body),
        content_hash=_md5(body),
        title=title,
        text=text,
        html=None if text is not None else html,
    )
    return rec, None


# ----------------------------------------------------------------------------- Parquet


def _ingest_parquet(path: Path, w: _BatchWriter, s: IngestSummary, mapping: dict[str, str],
                    explicit: set[str]) -> None:
    import pyarrow.parquet as pq

    name = path.name
    try:
        pf = pq.ParquetFile(path)
        have = list(pf.schema_arrow.names)
    except Exception as e:
        detail = f"cannot read the Parquet file: {type(e).__name__}: {e}"
        s.errors.append(f"{name}: {detail}")
        s.bytes_read = path.stat().st_size
        w.write(_corrupt(_file_url("parquet", name), detail))
        return
    missing = [f"{ours}->{mapping[ours]!r}" for ours in sorted(explicit) if mapping[ours] not in have]
    if missing:
        raise ValueError(f"{name}: mapped column(s) {', '.join(missing)} not in the file; its columns are {have}")
    if mapping["text"] not in have and mapping["html"] not in have:
        raise ValueError(f"{name}: no text column {mapping['text']!r} or html column {mapping['html']!r}; "
                         f"its columns are {have} (map one with fields: {{text: <column>}})")
    used = {ours: col for ours, col in mapping.items() if col in have}
    columns = sorted(set(used.values()))
    size = path.stat().st_size
    total = max(pf.metadata.num_rows, 1)
    first = 0  # rows before the current row group
    for group in range(pf.num_row_groups):  # row group by row group: a damaged one loses only itself
        group_rows = pf.metadata.row_group(group).num_rows
        row = first
        batches = pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=columns,
                                  use_threads=False)
        while True:
            try:
                batch = next(batches)
                values = {ours: batch.column(col).to_pylist() for ours, col in used.items()}
            except StopIteration:
                break
            except Exception as e:  # the row group cannot be read or decoded past this row
                detail = (f"row group {group} (rows {first + 1}-{first + group_rows}) unreadable after row {row}: "
                          f"{type(e).__name__}: {e}")
                s.errors.append(f"{name}: {detail}; the rest of the file is read on")
                w.write(_corrupt(_file_url("parquet", name, f"row={row + 1}"), detail))
                break
            for i in range(batch.num_rows):
                row += 1
                fields_of_row = {ours: v[i] for ours, v in values.items()}
                rec, _problem = _dump_record(fields_of_row.get, "parquet", name, f"row={row}", mapping)
                w.write(rec)
            s.bytes_read = min(size, size * row // total)
        first += group_rows
    s.bytes_read = size
