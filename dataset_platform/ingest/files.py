"""Landing files: a WARC, JSON Lines or Parquet file becomes one raw batch.

A batch is a file of landed records (``dataset_platform/contracts/records.py``), one per URL (WARC
response/revisit/resource record) or dump record, in record order, written under
``<output>.part`` and renamed into place, so a killed ingest leaves no batch behind. Its format
follows the output's name (``dataset_platform/ingest/batchfile.py``): ``<batch id>.parquet``
(:func:`batch_file_name`: what the pipeline lands) or ``<batch id>.jsonl.gz`` (gzip JSON Lines,
the crawler's format); the loader reads both alike. The same input file always gives the same
bytes: nothing in a record comes from the clock (WARC records carry their ``WARC-Date``; a dump's
``fetched_at`` field is used when mapped, else :data:`DEFAULT_FETCHED_AT`).

Files are read as streams: one WARC gzip member or uncompressed record (at most 64 MB; warcio
reads a larger one as a stream, the payload bounded by ``max_body_bytes``), one block of JSON
lines or one Parquet record batch (about 16 MB) is in memory at a time, and at most one row group of
landed records (``batchfile.ROW_GROUP_ROWS`` records or ``ROW_GROUP_BYTES`` of text) waits to be
written.

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

WARC reading (``readers/warc.py``): warcio's reading is the reference. Most of its time went to
its line-by-line buffered reads, so a fast reader reads the file itself - zlib, one gzip member at
a time (so every member's offset is known and its checksum checked), headers parsed by warcio's
rules (lines split at LF, UTF-8 else Latin-1, continuation lines, the WARC-Target-URI fix-ups) -
and hands the file to warcio from the first byte of the gzip member (or uncompressed record) it
does not take: a damaged, cut or unusually framed one, or one over 64 MB. warcio lands the rest
as a pass from the start would (the same records and error details; tests/test_ingest_warc_reader.py
checks it on damaged copies). FastWARC (re-checked at 2.0.1) decompresses about 1.4x faster than
zlib, but reads headers otherwise than warcio (folded lines joined with one space, invalid UTF-8
replaced instead of read as Latin-1, control characters kept, spaces in the target URI kept), does
not report a gzip member cut short at the end of the file, and its payload decoding aborts on
records that keep a ``Transfer-Encoding: chunked`` header over a de-chunked payload (as the pywb
captures of the test corpus do); decompression is about a fifth of the time. warcio's readers are
subclassed so that a damaged gzip stream raises (warcio prints to stderr and stops) and a damaged
Content-Encoding fails one record only.

Byte ranges: a plain (not gzip) JSON Lines file larger than :data:`RANGE_BYTES` lands in ranges cut
after a line break (:func:`jsonl_ranges`), each a :class:`LandUnit` that a task lands on its own
(``ingest/refresh.ingest_source_files``: a Ray task, or a worker process); each keeps the line
numbers of the whole file, so the records, the quarantine file and the batch read through the
loader are those of the file landed in one piece (``tests/test_ingest_ranges.py``).

JSONL/Parquet mapping: ``fields`` maps our fields (``url``, ``text``, ``html``, ``title``,
``fetched_at``) to the dump's; unmapped fields are looked up under their own name. A record with
``text`` lands as ``fetched`` with ``text`` (``html`` null, ``content_type`` ``text/plain``); one
with only ``html`` as ``fetched`` with ``html`` (``text/html``). A record without an http(s) ``url``
gets ``jsonl://<file>#line=<n>`` / ``parquet://<file>#row=<n>`` (1-based) and, if it had a url
that is not http(s), a ``detail`` saying so.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dataset_platform.ingest.batchfile import (
    PARQUET_SUFFIX,
    PROGRESS_EVERY,
    BatchWriter,
    Log,
    quarantine_path_for,
)
from dataset_platform.ingest.readers.common import (
    DEFAULT_FETCHED_AT,
    DUMP_FIELDS,
    field_mapping,
)

__all__ = [
    "DEFAULT_FETCHED_AT", "DUMP_FIELDS", "KINDS", "MAX_BODY_BYTES", "PROGRESS_EVERY", "SUFFIXES", "IngestSummary",
    "RANGE_BYTES", "LandUnit", "batch_file_name", "batch_id_and_ranges", "batch_id_for", "combined_summary", "ingest_file",
    "jsonl_ranges", "kind_for_path", "land_unit", "quarantine_path_for",
]

#: largest decoded WARC payload kept (bytes); a larger one lands as ``too_large``
MAX_BODY_BYTES = 20 * 1024 * 1024
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
        name = Path(self.path).name
        parts = [f"{name if name.isprintable() else repr(name)}: {self.records} records"]
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
    return _batch_id(digest, path, source)


def _batch_id(digest, path: str | os.PathLike, source: str) -> str:
    if Path(path).stat().st_size == 0:  # empty files all hash alike: name them apart, so each gets its own outcome
        digest.update(b"empty file " + os.fsencode(Path(path).name))
    return f"{source}-{digest.hexdigest()[:16]}"


def batch_file_name(batch_id: str) -> str:
    """The name ``ingest_file`` lands a file's batch under: ``<batch id>.parquet`` (see ``batchfile``)."""
    return batch_id + PARQUET_SUFFIX


#: a plain (not gzip) JSON Lines file larger than this lands in byte ranges of about this size,
#: each a task of its own (a Ray task with ``pipeline.executor: ray``): see :func:`jsonl_ranges`
RANGE_BYTES = 32 * 1024 * 1024


def jsonl_ranges(path: str | os.PathLike, range_bytes: int | None = None,
                 digest=None) -> list[tuple[int, int | None, int]]:
    """``(start, end, first line number)`` of the byte ranges a plain JSON Lines file lands in:
    cut after the first line break at or past every ``range_bytes`` (default :data:`RANGE_BYTES`)
    bytes, so that every line (however long) is whole in one range, numbered as in the whole file.
    One range (``(0, None, 1)``) for a gzip file or a file of at most ``range_bytes``. The cut
    depends on the file only, never on where it lands, so the batch is the same on any executor.
    ``digest`` (a ``hashlib`` object): fed every byte of the file in the same pass (the file is
    then read whole even when it is not cut)."""
    path = Path(path)
    size = path.stat().st_size
    range_bytes = range_bytes or RANGE_BYTES
    ranges: list[tuple[int, int | None, int]] = []
    start, line, pos = 0, 1, 0
    lines_in_range = 0
    with open(path, "rb") as f:
        cut_it = size > range_bytes and f.read(2) != b"\x1f\x8b"
        f.seek(0)
        if not cut_it and digest is None:
            return [(0, None, 1)]
        while chunk := f.read(1 << 22):  # one pass: count line breaks (for the numbers) and find each cut
            if digest is not None:
                digest.update(chunk)
            if not cut_it:
                continue
            at = 0
            while start + range_bytes <= pos + len(chunk):
                cut = chunk.find(b"\n", max(at, start + range_bytes - 1 - pos))
                if cut < 0:
                    break
                lines_in_range += chunk.count(b"\n", at, cut + 1)
                ranges.append((start, pos + cut + 1, line))
                line += lines_in_range
                lines_in_range = 0
                start, at = pos + cut + 1, cut + 1
            lines_in_range += chunk.count(b"\n", at)
            pos += len(chunk)
    if not cut_it:
        return [(0, None, 1)]
    if start < size:
        ranges.append((start, None, line))
    elif ranges:  # (the last cut fell on the file's end)
        ranges[-1] = (ranges[-1][0], None, ranges[-1][2])
    return ranges


def batch_id_and_ranges(path: str | os.PathLike, source: str, kind: str,
                        batch_id: str | None = None) -> tuple[str, list[tuple[int, int | None, int]]]:
    """:func:`batch_id_for` (unless ``batch_id`` is known) and the ranges the file lands in
    (:func:`jsonl_ranges` for a JSON Lines file, else the whole file), in one read of the file."""
    if kind != "jsonl":
        return batch_id or batch_id_for(path, source), [(0, None, 1)]
    digest = None if batch_id else hashlib.sha256()
    spans = jsonl_ranges(path, digest=digest)
    return batch_id or _batch_id(digest, path, source), spans


@dataclass(frozen=True)
class LandUnit:
    """One task of landing: a file, or one byte range of it (``span``), into ``output_path``."""

    path: str
    source: str
    kind: str
    output_path: str
    fields: tuple[tuple[str, str], ...] = ()
    span: tuple[int, int | None, int] | None = None


def land_unit(unit: LandUnit, log: Log | None = None) -> IngestSummary:
    """:func:`ingest_file` of one :class:`LandUnit` (a module-level function: it runs as a task
    in another process or on another machine); ``log`` receives its progress lines only."""
    return ingest_file(unit.path, source=unit.source, kind=unit.kind, output_path=unit.output_path,
                       fields=dict(unit.fields) or None, log=log, span=unit.span, summary_log=False)


def combined_summary(path: str | os.PathLike, kind: str, parts: list[IngestSummary]) -> IngestSummary:
    """The summary of a file landed in ranges, from its ranges' summaries (in file order); its
    ``elapsed_s`` is left to the caller (the ranges ran side by side: their times do not add up)."""
    out = IngestSummary(path=str(path), kind=kind)
    for s in parts:
        out.records += s.records
        out.bytes_read += s.bytes_read
        out.quarantined += s.quarantined
        out.errors += s.errors
        for k, v in s.outcomes.items():
            out.outcomes[k] = out.outcomes.get(k, 0) + v
        for k, v in s.skipped.items():
            out.skipped[k] = out.skipped.get(k, 0) + v
    return out


def ingest_file(
    path: str | os.PathLike,
    *,
    source: str,
    kind: str,
    output_path: str | os.PathLike,
    fields: Mapping[str, str] | None = None,
    log: Log | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    span: tuple[int, int | None, int] | None = None,
    summary_log: bool = True,
) -> IngestSummary:
    """Land ``path`` (a ``kind`` file) as the batch ``output_path``; see the module docstring.
    ``span``: land one byte range of a plain JSON Lines file only (:func:`jsonl_ranges`).
    ``summary_log``: pass the notes on breaks and the summary line to ``log`` at the end (else
    the caller does)."""
    path = Path(path)
    if span is not None and kind != "jsonl":
        raise ValueError(f"{path.name}: only a JSON Lines file lands by byte range (not {kind})")
    if kind not in KINDS:
        raise ValueError(f"{path.name}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    mapping = field_mapping(fields)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    say = log or (lambda _m: None)
    summary = IngestSummary(path=str(path), kind=kind)
    t0 = time.perf_counter()
    writer = BatchWriter(Path(output_path), summary, say, source, path.name)
    try:
        if kind == "warc":
            from dataset_platform.ingest.readers.warc import ingest_warc

            if fields:
                say(f"{source}: {path.name}: field mapping ignored for a WARC file")
            ingest_warc(path, writer, summary, max_body_bytes)
        elif kind == "jsonl":
            from dataset_platform.ingest.readers.dumps import ingest_jsonl

            ingest_jsonl(path, writer, summary, mapping, span)
        else:
            from dataset_platform.ingest.readers.dumps import ingest_parquet

            ingest_parquet(path, writer, summary, mapping, explicit=set(fields or {}))
        summary.elapsed_s = time.perf_counter() - t0
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    if summary_log:
        for note in summary.errors:
            say(f"{source}: {note}")
        say(f"{source}: {summary.line()}")
    return summary
