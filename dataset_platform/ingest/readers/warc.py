"""WARC files: see the module docstring of ``dataset_platform.ingest.files`` for what lands."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin

from dataset_platform.ingest.readers.common import (
    DEFAULT_FETCHED_AT,
    HTTP_URL,
    ArchiveBroken,
    clean_str,
    corrupt,
    describe,
    file_url,
    md5_hex,
    parse_date,
)

if TYPE_CHECKING:
    from dataset_platform.ingest.batchfile import BatchWriter
    from dataset_platform.ingest.files import IngestSummary

HTML_TYPES = ("text/html", "application/xhtml+xml")
SKIPPED_HEADERS = frozenset({"set-cookie", "set-cookie2"})

READ_CHUNK = 64 * 1024
_CONTENT_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br"}


class _PayloadError(Exception):
    """One record's HTTP payload cannot be decoded (the file itself reads on)."""


def _warc_classes():
    """warcio subclasses, built on first use (warcio is imported lazily)."""
    global _WARC
    if _WARC is not None:
        return _WARC
    from warcio.archiveiterator import ArchiveIterator
    from warcio.bufferedreaders import (
        BufferedReader,
        ChunkedDataReader,
        DecompressingBufferedReader,
    )
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
                raise ArchiveBroken(f"gzip data is corrupt: {type(e).__name__}: {e}") from e

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
    while chunk := stream.read(READ_CHUNK):
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
        out[key] = clean_str(value)
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
    if not HTTP_URL.match(uri):
        return f"{rtype}:non_http_uri"
    uri = clean_str(uri)
    h = rec.http_headers
    raw_date = wh.get_header("WARC-Date")
    date = parse_date(raw_date)
    notes: list[str] = []
    if date is None:
        date = parse_date(h.get_header("date")) if h is not None else None
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
        return done("redirected", clean_str(urljoin(uri, location)))
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
    r["content_hash"] = md5_hex(body)
    ctype = r.get("content_type")
    if ctype is None and _looks_like_html(body):
        ctype = r["content_type"] = "text/html"  # no Content-Type: sniffed, as the crawler does
    if ctype not in HTML_TYPES:
        return done("not_html")
    from dataset_platform.text.charset import decode_html

    text, encoding = decode_html(body, raw_ct)
    r["html"] = clean_str(text)
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
                chunk = f.read(READ_CHUNK)
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


def ingest_warc(path: Path, w: BatchWriter, s: IngestSummary, max_body: int) -> None:
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
            except Exception as e:  # noqa: BLE001 - a record's headers could not be parsed: the file breaks here
                broken = f"record at byte {start} unreadable: {describe(e)}"
                break
            rtype = rec.rec_type
            uri = rec.rec_headers.get_header("WARC-Target-URI") if rec.rec_headers else None
            if rec.length is None and not is_gzip:  # the rest of the file would be read as its block
                broken = f"{rtype} record at byte {start} has no Content-Length (headers cut short?)"
                break
            try:
                try:
                    out = _warc_record(rec, max_body)
                except (ArchiveBroken, zlib.error, OSError):
                    raise
                except Exception as e:  # noqa: BLE001 - never lose the rest of the file to one odd record
                    out = {"url": clean_str((uri or "").strip("<>")) or file_url("warc", name, f"offset={start}"),
                           "outcome": "failed:bad_record", "detail": f"{type(e).__name__}: {e}",
                           "fetched_at": DEFAULT_FETCHED_AT}
                it.read_to_end()
            except Exception as e:  # noqa: BLE001 - the file breaks here
                broken = f"{rtype} record of {uri} at byte {start}: {describe(e)}"
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
            w.write(corrupt(file_url("warc", name, f"offset={start}"), broken))
        s.bytes_read = max(s.bytes_read, f.tell())
