"""WARC files: see the module docstring of ``dataset_platform.ingest.files`` for what lands."""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin

from dataset_platform.ingest.readers.common import (
    DEFAULT_FETCHED_AT,
    HTTP_URL,
    MAX_GZIP_RATIO,
    RATIO_FROM,
    ArchiveBroken,
    clean_str,
    corrupt,
    describe,
    file_url,
    md5_hex,
    parse_date,
)
from dataset_platform.text.charset import decode_html

if TYPE_CHECKING:
    from dataset_platform.ingest.batchfile import BatchWriter
    from dataset_platform.ingest.files import IngestSummary

HTML_TYPES = ("text/html", "application/xhtml+xml")
SKIPPED_HEADERS = frozenset({"set-cookie", "set-cookie2"})

READ_CHUNK = 64 * 1024
#: json.dumps(..., sort_keys=True, ensure_ascii=False), without making an encoder per record
_HEADERS_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)
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

        compressed = inflated = 0

        def _decompress(self, data):
            if not (self.decompressor and data):
                return data
            try:
                out = self.decompressor.decompress(data)
            except Exception as e:
                if self.num_read == 0 and self.num_block_read == 0:
                    self.decompressor = None
                    return data
                raise ArchiveBroken(f"gzip data is corrupt: {type(e).__name__}: {e}") from e
            self.compressed += len(data)
            self.inflated += len(out)
            if self.inflated > RATIO_FROM and self.inflated > MAX_GZIP_RATIO * self.compressed:
                raise ArchiveBroken(f"decompression bomb: {self.compressed} bytes of gzip inflated to more than "
                                    f"{self.inflated} (over {MAX_GZIP_RATIO} times); the rest is not read")
            return out

        def readline(self, length=None):
            """A line of record or HTTP headers, bounded: a WARC whose "line" never ends (zeros, a
            bomb) must not be gathered into memory."""
            cap = MAX_HEADER_LINE + 1 if length is None or length < 0 else min(length, MAX_HEADER_LINE + 1)
            line = super().readline(cap)
            if len(line) > MAX_HEADER_LINE and not line.endswith(b"\n"):
                raise ArchiveBroken(f"a header line longer than {MAX_HEADER_LINE} bytes: not a WARC record")
            return line

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

#: a WARC or HTTP header line longer than this ends the file's reading (real ones are a few KB)
MAX_HEADER_LINE = 1024 * 1024


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
    if type(stream) is io.BytesIO:  # the fast reader's payload: in memory already
        body = stream.read()
        return (None, len(body)) if len(body) > limit else (body, len(body))
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
    return _HEADERS_JSON.encode(out)


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
    """Land a WARC file: the fast reader, then warcio from where (if anywhere) it stopped."""
    resume_at = _ingest_fast(path, w, s, max_body)
    if resume_at is not None:
        _ingest_warcio(path, w, s, max_body, start=resume_at)


class _BlockAligned:
    """A file read in warcio's blocks as from its start (the first read stops at a block boundary),
    so warcio started mid-file meets a damaged gzip member in the same reads, hence with the same
    error, as a pass from the start."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def read(self, size: int = -1) -> bytes:
        if size is None or size <= 0:
            return self.f.read()
        return self.f.read(size - self.f.tell() % size)

    def tell(self) -> int:
        return self.f.tell()


def _ingest_warcio(path: Path, w: BatchWriter, s: IngestSummary, max_body: int, start: int = 0) -> None:
    """Land the records of a WARC file from byte ``start`` (a record's, or its gzip member's, first
    byte) to the end with warcio, as a warcio pass from the file's start would land them."""
    iterator_cls, _, _ = _warc_classes()
    name = path.name
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
        f.seek(start)
        it = iterator_cls(_BlockAligned(f) if start > 0 else f)
        if start > 0:  # as a pass from the start would be here: a WARC file, data read before, and
            it.known_format = "warc"  # for an uncompressed file no gzip decompressor any more
            it.reader.num_read = 1
            if not is_gzip:
                it.reader.decompressor = None
        start = it.offset
        broken: str | None = None
        rtype, uri = None, None
        while broken is None:
            try:
                rec = next(it)
            except StopIteration:
                break
            except Exception as e:
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
                except Exception as e:
                    out = {"url": clean_str((uri or "").strip("<>")) or file_url("warc", name, f"offset={start}"),
                           "outcome": "failed:bad_record", "detail": f"{type(e).__name__}: {e}",
                           "fetched_at": DEFAULT_FETCHED_AT}
                it.read_to_end()
            except Exception as e:
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


# ----------------------------------------------------------------------------- the fast reader
#
# Reads the WARC in Python over zlib (one gzip member at a time, so every record's offset is
# known exactly and every member's checksum is checked) and parses headers as warcio does
# (StatusAndHeadersParser: lines split at LF, UTF-8 else Latin-1, continuation lines, the
# WARC-Target-URI fix-ups), without warcio's per-line buffered reads, which were most of the
# time. It takes only what it reads exactly as warcio would: anything else (a gzip member or
# record that is damaged, cut short, larger than _FAST_MAX_UNIT, or framed unusually) raises
# _Irregular with the offset of the member (or uncompressed record) it starts at, and warcio
# lands the file from there on, as a warcio pass from the start would.

#: a gzip member (decompressed) or an uncompressed record larger than this is left to warcio
_FAST_MAX_UNIT = 64 * 1024 * 1024
_FEED = 16 * 1024  # compressed bytes given to zlib at a time (the part past a member's end is copied)
_FILE_CHUNK = 1024 * 1024
_WARC_VERSIONS = (b"WARC/1.0", b"WARC/1.1", b"WARC/0.17", b"WARC/0.18")  # as warcio reads them
_HTTP_RECORDS = ("response", "request", "revisit")


class _Irregular(Exception):
    """What the fast reader leaves to warcio, from ``offset`` on."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class _Headers:
    """A status line and headers as warcio's StatusAndHeaders holds them (what the mapping reads);
    ``get_header`` looks a name up in a dict of each lower-case name's first value."""

    __slots__ = ("_first", "headers", "protocol", "statusline")

    def __init__(self, statusline: str, headers: list[tuple[str, str]], protocol: str,
                 first: dict[str, str] | None = None) -> None:
        self.statusline = statusline
        self.headers = headers
        self.protocol = protocol
        if first is None:
            first = {}
            for key, value in headers:
                first.setdefault(key.lower(), value)
        self._first = first

    def get_header(self, name: str, default_value: str | None = None) -> str | None:
        return self._first.get(name.lower(), default_value)

    def get_statuscode(self) -> str:
        return self.statusline.split(" ", 1)[0]

    def replace_first(self, name: str, value: str) -> None:
        """The value of the one header ``name`` (case-insensitive)."""
        name_lower = name.lower()
        self.headers = [(k, value if k.lower() == name_lower else v) for k, v in self.headers]
        self._first[name_lower] = value


class _Record:
    """A WARC record as the mapping (_warc_record) reads a warcio record."""

    __slots__ = ("http_headers", "length", "raw_stream", "rec_headers", "rec_type")


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("iso-8859-1")


def _fields(readline) -> list[tuple[str, str]]:
    """Header fields from decoded, right-stripped lines (warcio's rules: ``name: value``, a line
    without a colon dropped, continuation lines appended as they are); stops at an empty line."""
    headers: list[tuple[str, str]] = []
    line = readline()
    while line:
        name, sep, value = line.partition(":")
        value = value.lstrip() if sep else None
        name = name.rstrip(" \t")
        next_line = readline()
        while next_line and next_line.startswith((" ", "\t")):
            if value is not None:
                value += next_line
            next_line = readline()
        if value is not None:
            headers.append((name, value))
        line = next_line
    return headers


def _lines_headers(statusline: str, lines: list[str], protocol: str) -> _Headers:
    """:class:`_Headers` of lines that are decoded and right-stripped already, none of them empty
    (:func:`_fields`, in one pass when no line continues another)."""
    if any(line[0] in " \t" for line in lines):  # continuation lines: the general reader
        return _Headers(statusline, _fields(iter([*lines, ""]).__next__), protocol)
    headers = []
    first: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            name = name.rstrip(" \t")
            value = value.lstrip()
            headers.append((name, value))
            first.setdefault(name.lower(), value)
    return _Headers(statusline, headers, protocol, first)


def _crlf_lines(head: bytes) -> list[str] | None:
    """The decoded, right-stripped lines of a header block that ends with CRLF, if warcio reads the
    same lines in it (no bare LF, no line blank after stripping); else None."""
    if head.count(b"\n") != head.count(b"\r\n"):
        return None
    try:
        text = head.decode("utf-8")  # then every line is UTF-8 too (no multi-byte sequence holds a LF)
    except UnicodeDecodeError:
        lines = [_decode(x).rstrip() for x in head.split(b"\r\n")[:-1]]
    else:
        lines = [x.rstrip() for x in text.split("\r\n")[:-1]]
    return None if "" in lines else lines


def _http_headers(block: bytes) -> tuple[_Headers | None, int]:
    """(headers, offset of the payload) of an HTTP block, as warcio's parser (verify off) reads it."""
    end = block.find(b"\r\n\r\n")
    lines = _crlf_lines(block[:end + 2]) if end > 0 else None
    if lines:
        parts = lines[0].split(" ", 1)
        status = parts[1].strip() if len(parts) > 1 else ""
        return _lines_headers(status, lines[1:], parts[0]), end + 4
    return _http_headers_by_line(block)


def _http_headers_by_line(block: bytes) -> tuple[_Headers | None, int]:
    """:func:`_http_headers` line by line, as warcio reads them (LF line ends, headers up to the end)."""
    pos = 0
    size = len(block)

    def readline() -> bytes:
        nonlocal pos
        i = block.find(b"\n", pos)
        end = size if i < 0 else i + 1
        line = block[pos:end]
        pos = end
        return line

    first = readline()
    if not first:
        return None, 0  # warcio: EOFError (an empty revisit has no headers)
    statusline = _decode(first).rstrip()
    if not statusline:
        return _Headers("", [], ""), pos
    protocol_status = statusline.split(" ", 1)
    headers = _fields(lambda: _decode(readline()).rstrip())
    status = protocol_status[1].strip() if len(protocol_status) > 1 else ""
    return _Headers(status, headers, protocol_status[0]), pos


def _parse_record(buf: bytes, p: int, offset: int) -> tuple[_Record, int] | None:
    """The record starting at ``buf[p]`` and where the next one starts; None if ``buf`` ends before
    the record does; _Irregular(offset) for a record the fast reader does not take."""
    hend = buf.find(b"\r\n\r\n", p)
    if hend < 0:
        return None
    first = buf.find(b"\r\n", p)
    if buf[p:first] not in _WARC_VERSIONS:
        raise _Irregular(offset)
    lines = _crlf_lines(buf[first + 2:hend + 2]) if first < hend else None
    if not lines:
        raise _Irregular(offset)
    wh = _lines_headers("", lines, buf[p:first].decode())
    length = wh.get_header("Content-Length")
    if length is None or not (length.isascii() and length.isdigit()):
        raise _Irregular(offset)
    start = hend + 4
    end = start + int(length)
    if end + 4 > len(buf):
        return None
    if buf[end:end + 4] != b"\r\n\r\n":
        raise _Irregular(offset)
    rec = _Record()
    rec.rec_type = wh.get_header("WARC-Type")
    rec.rec_headers = wh
    rec.length = int(length)
    rec.http_headers = None
    block = buf[start:end]
    payload_at = 0
    uri = _fixed_target_uri(wh, offset)
    if rec.rec_type in _HTTP_RECORDS and rec.length:
        if uri is None:
            raise _Irregular(offset)  # warcio fails on it (no target URI to check)
        if uri.startswith(("http:", "https:")) and rec.rec_type != "request":  # requests: not read
            rec.http_headers, payload_at = _http_headers(block)
    rec.raw_stream = io.BytesIO(block)
    rec.raw_stream.seek(payload_at)
    return rec, end + 4


def _fixed_target_uri(wh: _Headers, offset: int) -> str | None:
    """warcio's WARC-Target-URI fix-ups (``<...>`` unwrapped, spaces as %20), made in the headers."""
    uri = wh.get_header("WARC-Target-URI")
    if uri is None:
        return None
    fixed = uri[1:-1] if uri.startswith("<") and uri.endswith(">") else uri
    fixed = fixed.replace(" ", "%20")
    if fixed != uri:
        if sum(k.lower() == "warc-target-uri" for k, _ in wh.headers) > 1:
            raise _Irregular(offset)  # warcio fixes the last one, the mapping reads the first
        wh.replace_first("WARC-Target-URI", fixed)
    return fixed


def _members(f: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(offset, end offset, decompressed bytes) of each gzip member; _Irregular at a member that is
    corrupt, cut short, or larger than _FAST_MAX_UNIT."""
    buf = f.read(_FILE_CHUNK)
    base = 0  # file offset of buf[0]
    p = 0
    while True:
        if p >= len(buf):
            base += len(buf)
            buf = f.read(_FILE_CHUNK)
            p = 0
            if not buf:
                return
        start = base + p
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out: list[bytes] = []
        size = 0
        view = memoryview(buf)
        while True:
            if p >= len(buf):
                base += len(buf)
                buf = f.read(_FILE_CHUNK)
                view = memoryview(buf)
                p = 0
                if not buf:
                    raise _Irregular(start)
            chunk = view[p:p + _FEED]
            try:
                piece = d.decompress(chunk)
            except zlib.error:
                raise _Irregular(start) from None
            out.append(piece)
            size += len(piece)
            if size > _FAST_MAX_UNIT:
                raise _Irregular(start)
            if d.eof:
                p += len(chunk) - len(d.unused_data)
                break
            p += len(chunk)
        if not size:
            raise _Irregular(start)
        yield start, base + p, out[0] if len(out) == 1 else b"".join(out)


def _ingest_fast(path: Path, w: BatchWriter, s: IngestSummary, max_body: int) -> int | None:
    """Land what the fast reader takes; None if that is the whole file, else the offset from which
    warcio must land the rest."""
    name = path.name
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        try:
            if gz:
                for offset, end, data in _members(f):
                    pending: list[dict[str, Any] | str] = []
                    p = 0
                    while p < len(data):
                        parsed = _parse_record(data, p, offset)
                        if parsed is None:  # the member ends inside a record
                            raise _Irregular(offset)
                        rec, p = parsed
                        pending.append(_fast_landed(rec, max_body, name, offset))
                    _commit(pending, w, s)
                    s.bytes_read = end
            else:
                _plain(f, w, s, max_body, name)
        except _Irregular as e:
            return e.offset
        s.bytes_read = f.tell()
    return None


def _plain(f: IO[bytes], w: BatchWriter, s: IngestSummary, max_body: int, name: str) -> None:
    """The records of an uncompressed WARC file, one after the other."""
    buf = b""
    base = 0  # file offset of buf[0]
    p = 0
    eof = False
    after_record = False
    while True:
        sure = True
        if after_record:  # warcio reads on over blank lines between records
            p, sure = _skip_blank_lines(buf, p, eof)
        if sure and eof and p >= len(buf):
            return
        parsed = _parse_record(buf, p, base + p) if sure and p < len(buf) else None
        if parsed is None:
            if eof or len(buf) - p > _FAST_MAX_UNIT:
                raise _Irregular(base + p)  # cut short, or too large to hold
            more = f.read(max(_FILE_CHUNK, len(buf) - p))
            base += p
            buf = buf[p:] + more
            p = 0
            eof = not more
            continue
        rec, q = parsed
        _commit([_fast_landed(rec, max_body, name, base + p)], w, s)
        p = q
        after_record = True
        s.bytes_read = base + p


def _skip_blank_lines(buf: bytes, p: int, eof: bool) -> tuple[int, bool]:
    """(where the first line from ``p`` that is not blank starts, whether that is certain); a line
    is blank if warcio's rstrip leaves nothing of it."""
    while p < len(buf):
        i = buf.find(b"\n", p)
        if i < 0:
            if not eof:
                return p, False  # the line may go on in the next read
            i = len(buf) - 1
        if _decode(buf[p:i + 1]).rstrip():
            return p, True
        p = i + 1
    return p, eof


def _fast_landed(rec: _Record, max_body: int, name: str, offset: int) -> dict[str, Any] | str:
    """The landed record (or skipped key), caught as the warcio loop catches it."""
    try:
        return _warc_record(rec, max_body)
    except (ArchiveBroken, zlib.error, OSError):
        raise _Irregular(offset) from None
    except Exception as e:
        uri = rec.rec_headers.get_header("WARC-Target-URI")
        return {"url": clean_str((uri or "").strip("<>")) or file_url("warc", name, f"offset={offset}"),
                "outcome": "failed:bad_record", "detail": f"{type(e).__name__}: {e}", "fetched_at": DEFAULT_FETCHED_AT}


def _commit(landed: list[dict[str, Any] | str], w: BatchWriter, s: IngestSummary) -> None:
    for out in landed:
        if isinstance(out, str):
            s.skipped[out] = s.skipped.get(out, 0) + 1
        else:
            w.write(out)
