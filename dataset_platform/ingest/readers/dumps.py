"""JSON Lines and Parquet dumps: see the module docstring of ``dataset_platform.ingest.files``."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataset_platform.ingest.readers.common import (
    DEFAULT_FETCHED_AT,
    HTTP_URL,
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
_PARQUET_BATCH_ROWS = 512


# ----------------------------------------------------------------------------- JSON Lines


def _jsonl_lines(path: Path, s: IngestSummary) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes) of a (gzip) JSON Lines file; raises ArchiveBroken
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
                    raise ArchiveBroken(
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
                    raise ArchiveBroken(f"gzip data corrupt near byte {pos - len(chunk)}: {e}"
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


def ingest_jsonl(path: Path, w: BatchWriter, s: IngestSummary, mapping: dict[str, str]) -> None:
    name = path.name
    n = 0
    try:
        for n, raw in _jsonl_lines(path, s):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            url = file_url("jsonl", name, f"line={n}")
            try:
                obj = json.loads(raw.rstrip(b"\r\n"), parse_constant=_reject_constant)
                if not isinstance(obj, dict):
                    raise ValueError(f"not a JSON object but a JSON {_json_type(obj)}")  # noqa: TRY004 - caught below
            except (ValueError, RecursionError) as e:
                msg = f"{type(e).__name__}: {e}" if isinstance(e, UnicodeDecodeError) else str(e)
                w.write({"url": url, "outcome": "failed:bad_json", "detail": msg, "fetched_at": DEFAULT_FETCHED_AT})
                w.quarantine(name, n, msg, _line_text(raw))
                continue
            get = obj.get
            rec, problem = _dump_record(lambda k: get(mapping[k]), "jsonl", name, f"line={n}", mapping)  # noqa: B023
            w.write(rec)
            if problem:
                w.quarantine(name, n, problem, _line_text(raw))
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


def _dump_record(get: Callable[[str], Any], kind: str, name: str, anchor: str,
                 mapping: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """(landed record, problem) of one dump record; problem is set for ``failed:bad_record``."""
    fallback_url = file_url(kind, name, anchor)
    notes: list[str] = []
    try:
        url = (_as_text(get("url"), mapping["url"]) or "").strip()
    except TypeError as e:
        url = ""
        notes.append(str(e))
    if url and not HTTP_URL.match(url):
        notes.append(f"url {url[:200]!r} is not an http(s) URL")
        url = ""
    url = url or fallback_url
    raw_date = get("fetched_at")
    date = parse_date(raw_date)
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
        content_hash=md5_hex(body),
        title=title,
        text=text,
        html=None if text is not None else html,
    )
    return rec, None


# ----------------------------------------------------------------------------- Parquet


def ingest_parquet(path: Path, w: BatchWriter, s: IngestSummary, mapping: dict[str, str],
                    explicit: set[str]) -> None:
    import pyarrow.parquet as pq

    name = path.name
    try:
        pf = pq.ParquetFile(path)
        have = list(pf.schema_arrow.names)
    except Exception as e:  # noqa: BLE001 - any failure to open it is a corrupt file
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
            except Exception as e:  # noqa: BLE001 - the row group cannot be read or decoded past this row
                detail = (f"row group {group} (rows {first + 1}-{first + group_rows}) unreadable after row {row}: "
                          f"{type(e).__name__}: {e}")
                s.errors.append(f"{name}: {detail}; the rest of the file is read on")
                w.write(corrupt(file_url("parquet", name, f"row={row + 1}"), detail))
                break
            for i in range(batch.num_rows):
                row += 1
                fields_of_row = {ours: v[i] for ours, v in values.items()}
                rec, _problem = _dump_record(fields_of_row.get, "parquet", name, f"row={row}", mapping)
                w.write(rec)
            s.bytes_read = min(size, size * row // total)
        first += group_rows
    s.bytes_read = size
