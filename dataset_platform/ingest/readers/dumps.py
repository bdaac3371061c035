"""JSON Lines and Parquet dumps: see the module docstring of ``dataset_platform.ingest.files``."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dataset_platform.ingest.readers.common import (
    DEFAULT_FETCHED_AT,
    HTTP_URL,
    MAX_GZIP_RATIO,
    RATIO_FROM,
    ArchiveBroken,
    clean_str,
    corrupt,
    file_url,
    md5_hex,
    parse_date,
)

if TYPE_CHECKING:
    from dataset_platform.ingest.batchfile import BatchWriter
    from dataset_platform.ingest.files import IngestSummary

_READ_CHUNK = 64 * 1024
#: our dump fields in the order :func:`dump_record` takes their values
_KEYS = ("url", "text", "html", "title", "fetched_at")
#: a Parquet record batch holds about this many bytes (uncompressed), between these many rows
_PARQUET_BATCH_BYTES = 16 * 1024 * 1024
_PARQUET_BATCH_ROWS = (64, 8192)


# ----------------------------------------------------------------------------- JSON Lines


#: a JSON line longer than this is not read into memory: it lands as ``too_large`` (the reader
#: skips to the next line); beyond DuckDB's largest JSON object a landed line could not be loaded
MAX_LINE_BYTES = 64 * 1024 * 1024
_RATIO_FROM = RATIO_FROM
#: inflated bytes per decompress call (so one call never holds more)
_INFLATE_CHUNK = 1024 * 1024


class _Oversized(int):
    """A line longer than the bound, as its length (its bytes were never held)."""


def _jsonl_lines(path: Path, s: IngestSummary, max_line: int = MAX_LINE_BYTES,
                 max_ratio: float = MAX_GZIP_RATIO, span: tuple[int, int | None, int] | None = None,
                 ) -> Iterator[tuple[int, bytes | _Oversized]]:
    """(line number, line bytes, or :class:`_Oversized` for a line past ``max_line``) of a (gzip)
    JSON Lines file, in bounded memory; raises ArchiveBroken (after the readable lines) when the
    gzip stream is cut, corrupt, or inflates past ``max_ratio`` times its size. ``span``
    (start byte, end byte or None, number of the first line): the lines of that byte range of a
    plain file only (it starts at a line's first byte: see ``files.jsonl_ranges``)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        if span is not None:
            if gz:
                raise ValueError(f"{path.name}: a gzip file is not read by byte range")
            start, end, first = span
            f.seek(start)
            yield from _split_lines(_plain_chunks(f, s, None if end is None else end - start), max_line, first - 1)
            return
        f.seek(0)
        yield from _split_lines(_gzip_chunks(f, s, max_ratio) if gz else _plain_chunks(f, s), max_line)


def _plain_chunks(f, s: IngestSummary, limit: int | None = None) -> Iterator[bytes]:
    while (limit is None or limit > 0) and (chunk := f.read(_READ_CHUNK if limit is None else min(limit, _READ_CHUNK))):
        s.bytes_read += len(chunk)
        if limit is not None:
            limit -= len(chunk)
        yield chunk


def _gzip_chunks(f, s: IngestSummary, max_ratio: float) -> Iterator[bytes]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pos = inflated = 0
    while True:
        chunk = f.read(_READ_CHUNK)
        if not chunk:
            if not d.eof or d.unused_data:
                raise ArchiveBroken(f"gzip stream ends at byte {pos} without its end marker (file truncated)")
            return
        pos += len(chunk)
        s.bytes_read = pos
        while chunk:
            try:
                data = d.decompress(chunk, _INFLATE_CHUNK)
            except zlib.error as e:
                raise ArchiveBroken(f"gzip data corrupt near byte {pos - len(chunk)}: {e}") from e
            chunk = d.unconsumed_tail
            inflated += len(data)
            if inflated > _RATIO_FROM and inflated > max_ratio * pos:
                raise ArchiveBroken(f"gzip stream inflates more than {max_ratio:g} times its size ({inflated} bytes "
                                    f"from the first {pos}): a decompression bomb; the rest of the file is not read")
            if data:
                yield data
            if d.eof:  # next member (concatenated gzip files)
                chunk = d.unused_data
                if chunk:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)


def _split_lines(chunks: Iterator[bytes], max_line: int, before: int = 0) -> Iterator[tuple[int, bytes | _Oversized]]:
    n = before  # (lines before the first chunk)
    pending = bytearray()
    skipped = -1  # >= 0: bytes of an oversized line skipped so far
    chunks = iter(chunks)
    while True:
        try:
            data = next(chunks)
        except StopIteration:
            break
        except ArchiveBroken as e:  # lines already yielded stand; a partial last line is part of the break
            partial = skipped if skipped >= 0 else len(pending)
            if partial:
                e.args = (f"{e.args[0]}; incomplete line {n + 1} ({partial} bytes) dropped",)
            raise
        start = 0
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                if skipped >= 0:
                    skipped += len(data) - start
                else:
                    pending += data[start:] if start else data
                    if len(pending) > max_line:
                        skipped, pending = len(pending), bytearray()
                break
            n += 1
            if skipped >= 0:
                yield n, _Oversized(skipped + i + 1 - start)
                skipped = -1
            elif pending:
                pending += data[start : i + 1]
                line = bytes(pending)
                pending = bytearray()
                yield n, (_Oversized(len(line)) if len(line) > max_line else line)
            else:
                yield n, (_Oversized(i + 1 - start) if i + 1 - start > max_line else data[start : i + 1])
            start = i + 1
    if skipped >= 0:
        yield n + 1, _Oversized(skipped)
    elif pending:
        yield n + 1, bytes(pending)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_json(raw: bytes) -> dict[str, Any]:
    """The object of a JSON line, by the standard library's rules (its error messages); ValueError
    (or RecursionError) if the line is not a JSON object."""
    obj = json.loads(raw.rstrip(b"\r\n"), parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but a JSON {_json_type(obj)}")
    return obj


def ingest_jsonl(path: Path, w: BatchWriter, s: IngestSummary, mapping: dict[str, str],
                 span: tuple[int, int | None, int] | None = None) -> None:
    """Each line through orjson (C, strict); a line it refuses, or whose mapped fields hold a float
    (orjson reads integers beyond 64 bits as floats), again through :func:`_strict_json`, which decides
    what the line is, so the result is the standard library's for every line. ``span``: one byte
    range of the file only (see :func:`_jsonl_lines`); its lines keep their numbers in the file."""
    name = path.name
    prefix = file_url("jsonl", name, "line=")
    keys = tuple(mapping[k] for k in _KEYS)
    fast = orjson.loads
    n = 0
    try:
        for n, raw in _jsonl_lines(path, s, span=span):
            if isinstance(raw, _Oversized):  # (never read into memory: its length only)
                msg = f"line of {int(raw)} bytes, over the bound of {MAX_LINE_BYTES} bytes"
                w.write({"url": f"{prefix}{n}", "outcome": "too_large", "detail": msg,
                         "fetched_at": DEFAULT_FETCHED_AT})
                w.quarantine(name, n, msg, "")
                continue
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                obj = fast(raw)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                values = [obj.get(k) for k in keys]
                if float in map(type, values):
                    obj = None
            if type(obj) is not dict:
                if not raw.strip():
                    continue
                try:
                    obj = _strict_json(raw)
                except (ValueError, RecursionError) as e:
                    msg = f"{type(e).__name__}: {e}" if isinstance(e, UnicodeDecodeError) else str(e)
                    w.write({"url": f"{prefix}{n}", "outcome": "failed:bad_json", "detail": msg,
                             "fetched_at": DEFAULT_FETCHED_AT})
                    w.quarantine(name, n, msg, _line_text(raw), raw)
                    continue
                values = [obj.get(k) for k in keys]
            rec, problem = dump_record(*values, f"{prefix}{n}", mapping)
            w.write(rec)
            if problem:
                w.quarantine(name, n, problem, _line_text(raw), raw)
    except ArchiveBroken as e:
        where = n + 1
        s.errors.append(f"{name}: broken after line {n}: {e}; {s.records} records before it were landed")
        w.write(corrupt(file_url("jsonl", name, f"line={where}"), str(e)))


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")


def _line_text(raw: bytes) -> str:
    return clean_str(raw.rstrip(b"\r\n").decode("utf-8", "replace"))


def _as_text(value: Any, what: str) -> str | None:
    """A string field of a dump: str kept, bytes decoded, numbers spelt; objects/arrays refused."""
    if value is None:
        return None
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, (bytes, bytearray)):
        return clean_str(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"field {what!r} is a {type(value).__name__}, not a string")


def dump_record(url_value: Any, text_value: Any, html_value: Any, title_value: Any, date_value: Any,
                fallback_url: str, mapping: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """(landed record, problem) of one dump record from the values of its mapped fields (in
    :data:`_KEYS` order); ``problem`` is set for ``failed:bad_record``."""
    notes: list[str] = []
    try:
        url = (_as_text(url_value, mapping["url"]) or "").strip()
    except TypeError as e:
        url = ""
        notes.append(str(e))
    if url and not HTTP_URL.match(url):
        notes.append(f"url {url[:200]!r} is not an http(s) URL")
        url = ""
    date = parse_date(date_value)
    if date_value is not None and date is None:
        notes.append(f"fetched_at {str(date_value)[:60]!r} unreadable; {DEFAULT_FETCHED_AT} used")
    rec: dict[str, Any] = {"url": url or fallback_url, "fetched_at": date or DEFAULT_FETCHED_AT}
    try:
        text = _as_text(text_value, mapping["text"])
        html = _as_text(html_value, mapping["html"])
    except TypeError as e:
        problem = str(e)
        rec["outcome"] = "failed:bad_record"
        rec["detail"] = "; ".join([problem, *notes])
        return rec, problem
    try:
        title = _as_text(title_value, mapping["title"])
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
        rec["outcome"] = "failed:bad_record"
        rec["detail"] = "; ".join([problem, *notes])
        return rec, problem
    if text is not None:
        body = text.encode("utf-8")
        rec["content_type"] = "text/plain"
        rec["text"] = text
    else:
        body = html.encode("utf-8")
        rec["content_type"] = "text/html"
        rec["html"] = html
    rec["outcome"] = "fetched"
    if notes:
        rec["detail"] = "; ".join(notes)
    rec["charset"] = "utf-8"
    rec["body_bytes"] = len(body)
    rec["content_hash"] = md5_hex(body)
    if title is not None:
        rec["title"] = title
    return rec, None


# ----------------------------------------------------------------------------- Parquet


def ingest_parquet(path: Path, w: BatchWriter, s: IngestSummary, mapping: dict[str, str],
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
        w.write(corrupt(file_url("parquet", name), detail))
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
    meta = pf.metadata
    total = max(meta.num_rows, 1)
    prefix = file_url("parquet", name, "row=")
    date_col = used.get("fetched_at")
    first = 0  # rows before the current row group
    for group in range(pf.num_row_groups):  # row group by row group: a damaged one loses only itself
        group_rows = meta.row_group(group).num_rows
        row = first
        batches = pf.iter_batches(batch_size=_batch_rows(meta.row_group(group), columns), row_groups=[group],
                                  columns=columns, use_threads=False)
        while True:
            try:
                batch = next(batches)
                table = _plain_batch(batch, used, date_col)
                values = None if table is not None else {
                    col: _pylist(batch.column(col), dates=col == date_col) for col in columns}
            except StopIteration:
                break
            except Exception as e:
                detail = (f"row group {group} (rows {first + 1}-{first + group_rows}) unreadable after row {row}: "
                          f"{type(e).__name__}: {e}")
                s.errors.append(f"{name}: {detail}; the rest of the file is read on")
                w.write(corrupt(file_url("parquet", name, f"row={row + 1}"), detail))
                break
            if table is not None:
                w.write_table(table, "fetched")
                row += batch.num_rows
                s.bytes_read = min(size, size * row // total)
                continue
            fields = [values[used[k]] if k in used else repeat(None, batch.num_rows) for k in _KEYS]
            for url_v, text_v, html_v, title_v, date_v in zip(*fields, strict=False):
                row += 1
                w.write(dump_record(url_v, text_v, html_v, title_v, date_v, f"{prefix}{row}", mapping)[0])
            s.bytes_read = min(size, size * row // total)
        first += group_rows
    s.bytes_read = size


#: every character Python's str.strip() strips (str.isspace()), as an RE2 character class
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"


def _is_string(t) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _plain_batch_possible(batch, used: dict[str, str]) -> bool:
    """Whether the column types allow :func:`_plain_batch` (then the values are not turned into
    Python objects before it is tried)."""
    import pyarrow as pa

    body = "text" if "text" in used else "html"
    if "url" not in used or any(not _is_string(batch.schema.field(used[k]).type)
                                for k in ("url", "text", "html", "title") if k in used):
        return False
    t = batch.schema.field(used["fetched_at"]).type if "fetched_at" in used else None
    return batch.num_rows > 0 and body in used and (t is None or pa.types.is_timestamp(t) or pa.types.is_null(t))


def _plain_batch(batch, used: dict[str, str], date_col: str | None):
    """The landed records of a record batch, computed column by column by Arrow, when every row is
    the plain case and they would land exactly so one by one (:func:`dump_record`): an http(s) url
    that strip() leaves as it is, a text (else html) that is not blank, string columns of valid
    UTF-8, dates from a timestamp column. None otherwise (or on any doubt): row by row."""
    if not _plain_batch_possible(batch, used):
        return None
    try:
        return _plain_batch_table(batch, used, date_col)
    except Exception:
        return None


def _plain_batch_table(batch, used: dict[str, str], date_col: str | None):
    import pyarrow as pa
    import pyarrow.compute as pc

    from dataset_platform.ingest.batchfile import batch_schema

    n = batch.num_rows
    body_key = "text" if "text" in used else "html"
    strings = {k: batch.column(used[k]) for k in ("url", "text", "html", "title") if k in used}
    try:
        for column in strings.values():
            column.validate(full=True)  # invalid UTF-8: row by row (which reports it)
    except pa.ArrowInvalid:
        return None
    url, body = strings["url"], strings[body_key]
    if url.null_count or body.null_count:
        return None
    if not pc.all(pc.match_substring_regex(url, "^[hH][tT][tT][pP][sS]?://")).as_py():
        return None
    if pc.any(pc.match_substring_regex(url, _SPACE + "$")).as_py():
        return None
    if not pc.all(pc.match_substring_regex(body, "[^" + _SPACE[1:])).as_py():  # a blank one
        return None
    if date_col is not None and not pa.types.is_null(batch.column(date_col).type):
        dates = _iso_utc_column(batch.column(date_col))
        if dates is None:
            return None
        dates = pc.fill_null(dates, DEFAULT_FETCHED_AT)
    else:
        dates = pa.array([DEFAULT_FETCHED_AT] * n, pa.string())
    body = body.cast(pa.string())
    buffers = body.buffers()
    offsets = memoryview(buffers[1]).cast("i")[body.offset:body.offset + n + 1].tolist()
    data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
    hashes = [md5_hex(data[offsets[i]:offsets[i + 1]]) for i in range(n)]
    columns = {
        "url": url.cast(pa.string()),
        "outcome": pa.array(["fetched"] * n, pa.string()),
        "content_type": pa.array(["text/plain" if body_key == "text" else "text/html"] * n, pa.string()),
        "charset": pa.array(["utf-8"] * n, pa.string()),
        "fetched_at": dates.cast(pa.string()),
        "body_bytes": pc.binary_length(body).cast(pa.int64()),
        "content_hash": pa.array(hashes, pa.string()),
        "title": strings["title"].cast(pa.string()) if "title" in strings else None,
        body_key: body,
    }
    schema = batch_schema()
    arrays = [columns[f.name] if columns.get(f.name) is not None else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _pylist(column, *, dates: bool) -> list[Any]:
    """A column's values; a timestamp column of dates as the ISO strings :func:`parse_date` gives
    back unchanged (computed by Arrow instead of a datetime object and a strftime per row)."""
    if dates:
        iso = _iso_utc_column(column)
        if iso is not None:
            return iso.to_pylist()
    return column.to_pylist()


#: seconds since 1970 of 1000-01-01 and of 10000-01-01: the years iso_utc writes with 4 digits
_YEAR_1000, _YEAR_10000 = -30_610_224_000, 253_402_300_800
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}


def _iso_utc_column(column):
    """``iso_utc`` of every value of a timestamp column (s, ms or us; naive values taken as UTC, as
    ``iso_utc`` takes naive datetimes), or None when it must go value by value (ns, negative
    sub-second values, years outside 1000-9999)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if not pa.types.is_timestamp(t) or t.unit not in _PER_SECOND:
        return None
    per_s = _PER_SECOND[t.unit]
    ints = pc.cast(column, pa.int64())
    low, high = pc.min(ints).as_py(), pc.max(ints).as_py()
    if low is None:
        return None  # all null
    if low < (_YEAR_1000 * per_s if per_s == 1 else 0) or high >= _YEAR_10000 * per_s:
        return None
    utc = pc.cast(column, pa.timestamp(t.unit, "UTC"))
    base = pc.strftime(pc.cast(utc, pa.timestamp("s", "UTC"), safe=False), format="%Y-%m-%dT%H:%M:%S")
    if per_s == 1:
        return pc.binary_join_element_wise(base, "Z", "")
    micros = pc.multiply(pc.subtract(ints, pc.multiply(pc.divide(ints, per_s), per_s)), 1_000_000 // per_s)
    fraction = pc.if_else(pc.equal(micros, 0), "",
                          pc.binary_join_element_wise(".", pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0"), ""))
    return pc.binary_join_element_wise(base, fraction, "Z", "")


def _batch_rows(group_meta, columns: list[str]) -> int:
    """Rows per record batch: about :data:`_PARQUET_BATCH_BYTES` of the read columns, uncompressed."""
    wanted = set(columns)
    nbytes = sum(group_meta.column(i).total_uncompressed_size for i in range(group_meta.num_columns)
                 if group_meta.column(i).path_in_schema in wanted)
    per_row = max(1, nbytes // max(group_meta.num_rows, 1))
    low, high = _PARQUET_BATCH_ROWS
    return max(low, min(high, _PARQUET_BATCH_BYTES // per_row))
