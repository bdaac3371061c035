"""Extraction: HTML page -> main text, title, publication date and language.

Which responses are extractable at all is one SQL pass (set-based triage); the per-page work
(an extractor chain, then CLD2) runs over bounded batches on a process pool, with a time bound
per page, and the results are written back in a deterministic order (by id). A text dump's
records (``text`` set, ``html`` null) need no extractor: they are done in the stage's own process,
a batch at a time (``extract_text_batch``: the line folding vectorised, CLD2 in a tight loop),
with the same rows as ``from_text`` gives one by one; no process pool is started when there is no
HTML to extract.

Extractors (``ExtractSettings.chain``, tried in order until one returns main text):

- ``trafilatura``: ``trafilatura.bare_extraction`` (tables kept, comments dropped), paragraphs
  separated by "\\n"; it also gives the title and the date;
- ``trafilatura_recall``: the same with ``favor_recall=True``;
- ``resiliparse``: ``resiliparse.extract.html2text.extract_plain_text(main_content=True)``
  (needs the optional ``resiliparse`` package; skipped when it is not installed).

``extracted_documents.extractor`` records which one produced each row (``text`` for text dumps,
whose text passes through). The chain by default is the one that measured best on the labelled
corpus (see ``bench/extract_eval.py`` and BENCHMARKS.md).

Title and date come from trafilatura's metadata (htmldate without its "extensive" guessing: a
copyright year in a footer is not a publication date); the date is ISO ``YYYY-MM-DD`` or NULL.
HTML given as bytes is decoded with ``dataset_platform.text.charset.decode_html`` (BOM, declaration that
decodes cleanly, detection: GBK/GB2312 pages come out right).

Rules recorded in ``rejected_documents`` (stage ``extract``):

- ``http_status`` (value: the status), ``not_html`` (the content type), ``empty_body`` (0):
  set-based triage, before any parsing;
- ``no_main_text`` (value: length of the HTML): no extractor of the chain found main text;
- ``extract_timeout`` (value: the bound in seconds): the page took longer than
  ``ExtractSettings.timeout_s``; it is abandoned and the rest of its batch goes on;
- ``extract_error`` (value: the exception's class name): extracting the page raised;
- ``blocklist.domain`` / ``blocklist.url`` (value: the listed entry): the page's host or URL is on a
  blocklist of ``ExtractSettings.blocklist``, found after the triage and before any parsing;
  ``blocklist.words`` (value: the hits and entries): the extracted title and text hold banned words
  over the thresholds (see ``stages/blocklist.py``).

The time bound is a ``SIGALRM`` timer in the process doing the work: it interrupts Python code
(trafilatura's tree walks, htmldate, CLD2 calls between C steps). A single uninterruptible C call
(one lxml parse) is not cut short, but trafilatura refuses inputs over 20 MB before parsing. Text
records in bulk have no timer (their work is linear: ~0.2 ms per 3 KB, ~75 ms per MB); one over
``BULK_MAX_BYTES`` goes through ``extract_page`` and its timer.
"""

from __future__ import annotations

import re
import signal
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dataset_platform.stages import blocklist as bl
from dataset_platform.stages.base import (
    Prepared,
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    available_cpus,
    exit_with_parent,
    finish_stage,
    streamable_view,
)

NAME = "extract"
#: every value ``extracted_documents.extractor`` can take
EXTRACTORS = ("trafilatura", "trafilatura_recall", "resiliparse", "text")
#: default chain: the best measured on the labelled corpus (bench/extract_eval.py)
DEFAULT_CHAIN = ("trafilatura", "resiliparse")
#: default ``min_chars``: a shorter text lets the next extractor of the chain try
DEFAULT_MIN_CHARS = 1

# CLD2 names a few codes differently from ISO 639-1.
_LANG_FIX = {"zh-Hant": "zh", "un": "und", "iw": "he", "jw": "jv"}
_WS = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: dates are accepted up to this day whatever today is (htmldate's default is "today": not deterministic)
_MAX_DATE = "2099-12-31"


@dataclass(frozen=True)
class Extracted:
    title: str | None
    text: str
    lang: str
    lang_score: float
    date: str | None = None
    extractor: str = "trafilatura"


@dataclass(frozen=True)
class Options:
    """Plain-library view of ``config.ExtractSettings`` (this module imports no config)."""

    chain: tuple[str, ...] = DEFAULT_CHAIN
    timeout_s: float = 10.0
    workers: int = field(default_factory=lambda: available_cpus())
    #: pages per task sent to a worker
    chunk_size: int = 32
    #: a text shorter than this (characters) counts as "nothing": the next extractor is tried
    min_chars: int = DEFAULT_MIN_CHARS
    #: chunks a worker process handles before it is replaced (bounds its memory)
    max_tasks_per_child: int = 100


def options_from(settings) -> Options:
    """:class:`Options` from ``config.ExtractSettings`` (or anything with the same fields)."""
    return Options(
        chain=tuple(settings.chain),
        timeout_s=float(settings.timeout_s),
        workers=settings.workers or available_cpus(),
        chunk_size=settings.chunk_size,
        min_chars=settings.min_chars,
    )


class PageTimeout(Exception):
    """A page took longer than the time bound."""


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code or 'und', confidence 0..1) from CLD2, offline."""
    import pycld2

    if not text.strip():
        return "und", 0.0
    try:
        reliable, _, details = pycld2.detect(text)
    except pycld2.error:
        # CLD2 rejects some invalid UTF-8 surrogates; retry on a cleaned copy
        reliable, _, details = pycld2.detect(text.encode("utf-8", "ignore").decode("utf-8", "ignore"))
    name, code, percent, _score = details[0]
    code = _LANG_FIX.get(code, code).split("-")[0]
    if code == "und" or name == "Unknown":
        return "und", 0.0
    score = percent / 100.0 if reliable else percent / 200.0
    return code, round(score, 4)


def _fold_lines(text: str) -> str:
    """NFC; whitespace folded within lines, empty lines dropped: paragraphs joined by one "\\n"."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    lines = (_WS.sub(" ", ln).strip() for ln in text.splitlines())
    return "\n".join(ln for ln in lines if ln)


def decode(html: str | bytes, content_type: str | None = None) -> str:
    """HTML as text; bytes are decoded with the crawler's charset logic."""
    if isinstance(html, str):
        return html
    from dataset_platform.text.charset import decode_html

    return decode_html(html, content_type)[0]


# ------------------------------------------------------------------ extractors


def _trafilatura(html: str, url: str | None, *, recall: bool, metadata: bool):
    import trafilatura

    return trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=metadata,
        favor_recall=recall,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        date_extraction_params={"original_date": True, "extensive_search": False, "max_date": _MAX_DATE},
    )


def _resiliparse(html: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True, preserve_formatting=True, list_bullets=False,
                              alt_texts=False)


def run_chain(html: str, url: str | None, chain: Sequence[str], min_chars: int = 1) -> Extracted | None:
    """Main text of one page from the first extractor of ``chain`` whose text has at least
    ``min_chars`` characters; else the longest non-empty text any of them found; else None."""
    title = date = None
    meta_done = False
    best: tuple[str, str] | None = None  # (text, extractor) longest so far
    for name in chain:
        text = ""
        if name in ("trafilatura", "trafilatura_recall"):
            doc = _trafilatura(html, url, recall=name == "trafilatura_recall", metadata=not meta_done)
            if doc is not None:
                if not meta_done:
                    title = (doc.title or "").strip() or None
                    date = doc.date if doc.date and _ISO_DATE.match(doc.date) else None
                text = doc.text or ""
            meta_done = True
        elif name == "resiliparse":
            try:
                text = _resiliparse(html)
            except ImportError:
                continue
        else:
            raise ValueError(f"unknown extractor {name!r}; known: {EXTRACTORS[:-1]}")
        text = _fold_lines(text)
        if text and (best is None or len(text) > len(best[0])):
            best = (text, name)
        if len(text) >= min_chars:
            break
    if best is None:
        return None
    text, name = best
    if not meta_done:  # title/date still come from trafilatura's metadata
        doc = _trafilatura(html, url, recall=False, metadata=True)
        if doc is not None:
            title = (doc.title or "").strip() or None
            date = doc.date if doc.date and _ISO_DATE.match(doc.date) else None
    lang, score = detect_language(text)
    return Extracted(title=title, text=text, lang=lang, lang_score=score, date=date, extractor=name)


def extract_html(html: str | bytes, url: str | None = None, chain: Sequence[str] = DEFAULT_CHAIN) -> Extracted | None:
    """Main text of one page (paragraphs separated by newlines), or None if there is none."""
    return run_chain(decode(html), url, chain)


def from_text(text: str, title: str | None) -> Extracted | None:
    """A text dump's record: its text is the document (whitespace folded per line)."""
    body = _fold_lines(text)
    if not body:
        return None
    lang, score = detect_language(body)
    return Extracted(title=(title or "").strip() or None, text=body, lang=lang, lang_score=score, extractor="text")


# ------------------------------------------------------------------ one page, under a time bound

#: (title, date, text, lang, lang_score, extractor, reject_rule, reject_value)
Row = tuple


def _on_alarm(signum, frame):  # pragma: no cover - exercised through extract_page
    raise PageTimeout()


def extract_page(
    url: str | None,
    html: str | None,
    text: str | None,
    title: str | None,
    opts: Options,
    extract_fn: Callable[[str, str | None], Extracted | None] | None = None,
) -> Row:
    """One page -> a result row; never raises (timeouts and errors become reject rules).

    ``extract_fn(html, url)`` replaces the chain (for tests and custom extractors; must be
    picklable by reference when workers > 1).
    """
    timed = opts.timeout_s > 0 and threading.current_thread() is threading.main_thread()
    previous = None
    try:
        if timed:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, opts.timeout_s)
        if html is None and text is not None:
            ex = from_text(text, title)
        elif extract_fn is not None:
            ex = extract_fn(html, url)
        else:
            ex = run_chain(html, url, opts.chain, opts.min_chars)
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except PageTimeout:
        return (None, None, None, None, None, None, "extract_timeout", f"{opts.timeout_s:g}")
    except Exception as e:
        return (None, None, None, None, None, None, "extract_error", type(e).__name__)
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    if ex is None:
        return (None, None, None, None, None, None, "no_main_text", str(len(html or text or "")))
    return (ex.title, ex.date, ex.text, ex.lang, ex.lang_score, ex.extractor, None, None)


def _extract_chunk(rows: list[tuple], opts: Options, extract_fn) -> list[tuple]:
    """Worker task: ``rows`` of (id, url, html, text, title) -> (id, *Row)."""
    return [(rid, *extract_page(url, html, text, title, opts, extract_fn)) for rid, url, html, text, title in rows]


def new_pool(opts: Options) -> ProcessPoolExecutor:
    """The stage's worker processes. Spawned: the parent holds DuckDB threads, and forking a
    threaded process is unsafe. Workers are replaced after ``max_tasks_per_child`` chunks:
    lxml/trafilatura keep memory they once needed for a large page, so a long-lived worker's
    footprint only grows."""
    return ProcessPoolExecutor(max_workers=opts.workers, mp_context=get_context("spawn"),
                               max_tasks_per_child=opts.max_tasks_per_child, initializer=exit_with_parent)


def extract_rows(
    chunks: Iterator[list[tuple]],
    opts: Options,
    extract_fn=None,
    pool: Executor | None = None,
) -> Iterator[list[tuple]]:
    """Results of each chunk, in input order; at most ``2 * workers`` chunks in flight. ``pool``:
    worker processes to use (None: started here when ``opts.workers`` > 1, else in-process)."""
    if pool is None and opts.workers <= 1:
        for chunk in chunks:
            yield _extract_chunk(chunk, opts, extract_fn)
        return
    own = pool is None
    pool = pool or new_pool(opts)
    try:
        pending: deque[Future] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_extract_chunk, chunk, opts, extract_fn))
            if len(pending) >= 2 * max(1, opts.workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ the stage

_RESULT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("date", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float64()),
        ("extractor", pa.string()),
        ("rule", pa.string()),
        ("value", pa.string()),
    ]
)


# ------------------------------------------------------------------ text rows, in bulk
# A text dump's record needs no parsing: ``from_text`` is line folding and CLD2. Sent row by row
# through the process pool it cost more in pickling and per-row calls than in work, so text rows
# are done in the stage's own process a batch at a time: the folding with Arrow compute (RE2) over
# the whole batch, CLD2 in a tight loop (on threads when there are several workers: pycld2
# releases the GIL). The rows are the ones ``extract_page`` gives, value for value
# (tests/test_extract.py compares both on tricky text).

#: where ``str.splitlines`` breaks lines (test_extract checks it against Python's own)
_LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
#: what ``str.strip`` removes besides the line breaks (``str.isspace``)
_SPACES = "\t\x1f \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"
#: ``_WS`` less the line breaks (there are none within a line)
_FOLD = " \t\xa0\u200b"


def _re2_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


# A run of _FOLD characters becomes one space; a lone space is left unmatched (it would become
# itself), so RE2 does not replace every space of the text.
_FOLD_RUN = f"{_re2_class(_FOLD)}{{2,}}|{_re2_class(_FOLD[1:])}"
# A run of whitespace holding a line break becomes one "\n": stripping the lines and dropping the
# empty ones does just that. A lone "\n" is left unmatched.
_SP, _BR, _SP_BR = _re2_class(_SPACES), _re2_class(_LINE_BREAKS), _re2_class(_SPACES + _LINE_BREAKS)
_BREAK_RUN = f"{_SP}+{_BR}{_SP_BR}*|{_BR}{_SP_BR}+|{_re2_class(_LINE_BREAKS[1:])}"
#: a text longer than this (bytes) goes through ``extract_page``, under its per-page time bound
#: (below it the work cannot come near any sensible bound: from_text takes ~75 ms CPU on 1 MB)
BULK_MAX_BYTES = 1 << 20


def fold_lines_array(texts: pa.Array) -> pa.Array:
    """``_fold_lines`` of every string of ``texts``, as one large_string array (nulls stay null)."""
    texts = texts.cast(pa.large_string())
    non_ascii = pc.fill_null(pc.invert(pc.string_is_ascii(texts)), False)
    if pc.any(non_ascii).as_py():
        # NFC with Python's unicodedata (the Unicode version _fold_lines has), on non-ASCII texts only
        normal = [unicodedata.normalize("NFC", t) for t in texts.filter(non_ascii).to_pylist()]
        texts = pc.replace_with_mask(texts, non_ascii, pa.array(normal, pa.large_string()))
    texts = pc.replace_substring_regex(texts, _FOLD_RUN, " ")
    texts = pc.replace_substring_regex(texts, _BREAK_RUN, "\n")
    return pc.utf8_trim(texts, characters=_SPACES + "\n")


def _detect_each(texts: list[str]) -> list[tuple[str, float] | Exception]:
    out: list[tuple[str, float] | Exception] = []
    for text in texts:
        try:
            out.append(detect_language(text))
        except Exception as e:
            out.append(e)
    return out


def _detect_languages(texts: list[str], threads: ThreadPoolExecutor | None, n_threads: int):
    if threads is None or n_threads <= 1 or len(texts) < 4 * n_threads:
        return _detect_each(texts)
    step = -(-len(texts) // (4 * n_threads))  # a few slices per thread: long texts even out
    parts = threads.map(_detect_each, [texts[i : i + step] for i in range(0, len(texts), step)])
    return [r for part in parts for r in part]


def extract_text_batch(
    batch: pa.RecordBatch, opts: Options, threads: ThreadPoolExecutor | None = None
) -> pa.RecordBatch:
    """Text-dump rows (columns id, text, title; text not null, html null) -> result rows
    (``_RESULT_SCHEMA``), the same as ``extract_page`` gives for each (``threads``: CLD2 runs on
    them, ``opts.workers`` at a time)."""
    texts = batch.column("text")
    titles = batch.column("title").to_pylist()
    big = pc.greater(pc.binary_length(texts), BULK_MAX_BYTES)
    has_big = pc.any(big).as_py()
    bodies = fold_lines_array(pc.if_else(big, "", texts) if has_big else texts).to_pylist()
    n_chars = pc.utf8_length(texts).to_pylist()
    todo = [i for i, body in enumerate(bodies) if body]
    langs = _detect_languages([bodies[i] for i in todo], threads, opts.workers)
    rows: list[tuple] = [(None, None, None, None, None, None, "no_main_text", str(n)) for n in n_chars]
    for i, res in zip(todo, langs):
        if isinstance(res, Exception):
            rows[i] = (None, None, None, None, None, None, "extract_error", type(res).__name__)
        else:
            rows[i] = ((titles[i] or "").strip() or None, None, bodies[i], res[0], res[1], "text", None, None)
    if has_big:
        for i in pc.indices_nonzero(big).to_pylist():
            rows[i] = extract_page(None, None, texts[i].as_py(), titles[i], opts)
    cols = list(zip(*rows)) if rows else [()] * (len(_RESULT_SCHEMA) - 1)
    arrays = [batch.column("id").cast(pa.string())]
    arrays += [pa.array(list(c), f.type) for c, f in zip(cols, list(_RESULT_SCHEMA)[1:])]
    return pa.RecordBatch.from_arrays(arrays, schema=_RESULT_SCHEMA)


def _chunks(reader: pa.RecordBatchReader, size: int) -> Iterator[list[tuple]]:
    for b in reader:
        cols = [b.column(c).to_pylist() for c in ("id", "url", "html", "text", "title")]
        rows = list(zip(*cols))
        for i in range(0, len(rows), size):
            yield rows[i : i + size]


def _blank(col: str) -> str:
    """SQL: ``length(trim(col)) = 0``, trimming only where the first character is trimmed (DuckDB
    evaluates a CASE branch only for its rows; trimming every text cost 25 µs per 3 KB text)."""
    return f"CASE WHEN length(trim(left({col}, 1))) = 0 THEN length(trim({col})) = 0 ELSE false END"


def run_extract(
    con: duckdb.DuckDBPyConnection,
    raw_sql: str,
    *,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = None,
    options: Options | None = None,
    extract_fn: Callable[[str, str | None], Extracted | None] | None = None,
    pool: Executor | Callable[[], Executor | None] | None = None,
    blocklist: bl.Blocklist | None = None,
) -> StageResult:
    """Extract every raw page; leaves tables ``kept`` and ``rejected`` on ``con``.

    ``raw_sql`` is a FROM-able expression with the raw_pages columns: at least id and html (or
    text); without ``status`` / ``content_type`` every row is taken for a 200 ``text/html`` page
    (a file of pages). Output rows are ordered by id whatever the number of workers. ``pool``:
    worker processes shared with other calls (see :func:`new_pool`), or a function returning them
    (called only when the pool is worth it); without one, a pool is
    started for this call when there is more than a chunk to do and ``options.workers`` > 1.
    ``blocklist``: the lists (:func:`blocklist.load`) whose pages are dropped before extraction and
    whose documents with banned words after it.
    """
    opts = options or Options()
    # A view, not a table: the pages are streamed from the input (Parquet in the pipeline) on each
    # pass, so the HTML of the whole corpus is never held in memory; later passes read no HTML.
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {raw_sql}").fetchall()}
    if "html" not in cols and "text" not in cols:
        raise ValueError(f"extract input needs an 'html' (or 'text') column (has: {', '.join(sorted(cols))})")
    missing = [c for c in ("url", "html", "text", "title", "source", "crawl_id") if c not in cols]  # text/title: dumps
    extra = "".join(f", NULL::VARCHAR AS {c}" for c in missing)
    if "status" not in cols:
        extra += ", 200 AS status"
    if "content_type" not in cols:
        extra += ", 'text/html' AS content_type"
    streamable_view(con, "_raw", f"SELECT *{extra} FROM {raw_sql}")  # batches stream on a second cursor
    # Set-based triage: which responses can hold a document at all.
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _triage AS
        SELECT id, source, url,
          CASE
            WHEN status < 200 OR status > 299 THEN 'http_status'
            WHEN text IS NOT NULL AND html IS NULL THEN
              CASE WHEN {_blank("text")} THEN 'empty_body' END
            WHEN coalesce(content_type, '') NOT IN ('text/html', 'application/xhtml+xml') THEN 'not_html'
            WHEN html IS NULL OR {_blank("html")} THEN 'empty_body'
          END AS rule,
          CASE
            WHEN status < 200 OR status > 299 THEN CAST(status AS VARCHAR)
            WHEN text IS NOT NULL AND html IS NULL THEN '0'
            WHEN coalesce(content_type, '') NOT IN ('text/html', 'application/xhtml+xml') THEN coalesce(content_type, '')
            ELSE '0'
          END AS value,
          text IS NOT NULL AND html IS NULL AS is_text
        FROM _raw
        """
    )
    if blocklist is not None and blocklist.has_addresses:  # blocked pages are never parsed
        bl.address_hits(con, blocklist, "SELECT id, url FROM _triage WHERE rule IS NULL")
        con.sql("UPDATE _triage SET rule = h.rule, value = h.value FROM _bl_hits h WHERE _triage.id = h.id")
    n_text, n_html = con.sql(
        "SELECT count(*) FILTER (is_text), count(*) FILTER (NOT is_text) FROM _triage WHERE rule IS NULL"
    ).fetchall()[0]
    n_todo = n_text + n_html
    con.sql(
        "CREATE OR REPLACE TABLE _extracted (id VARCHAR, title VARCHAR, date VARCHAR, text VARCHAR, lang VARCHAR, "
        "lang_score DOUBLE, extractor VARCHAR, rule VARCHAR, value VARCHAR)"
    )
    done = 0
    step = max(1, min(batch_size, 1000))
    next_log = step

    def insert(out: pa.RecordBatch) -> None:
        con.register("_batch", out)
        con.sql("INSERT INTO _extracted SELECT * FROM _batch")
        con.unregister("_batch")

    def progress(n: int) -> None:
        nonlocal done, next_log
        done += n
        if log and (done >= next_log or done == n_todo):
            log(f"extract: {done}/{n_todo} pages")
            next_log = done + step

    # Stream bounded batches from a second cursor while inserting results on the first.
    # No ORDER BY here: sorting would hold every page's HTML in memory at once. Pages stream in
    # input order through a semi-join on the (small) triage table; the outputs are sorted by id
    # at the end, so the result does not depend on the order pages were processed in.
    cur = con.cursor()
    if n_text:  # text dumps' records: here, in bulk (see extract_text_batch)
        reader = cur.sql(
            "SELECT id, text, title FROM _raw WHERE id IN (SELECT id FROM _triage WHERE rule IS NULL AND is_text)"
        ).to_arrow_reader(batch_size)
        threads = ThreadPoolExecutor(opts.workers) if opts.workers > 1 else None
        try:
            for b in reader:
                if b.num_rows:
                    insert(extract_text_batch(b, opts, threads))
                    progress(b.num_rows)
        finally:
            if threads is not None:
                threads.shutdown()
    if n_html:  # pages: the extractor chain, on the process pool
        reader = cur.sql(
            "SELECT id, url, html, text, title FROM _raw "
            "WHERE id IN (SELECT id FROM _triage WHERE rule IS NULL AND NOT is_text)"
        ).to_arrow_reader(batch_size)
        buf: list[tuple] = []

        def flush() -> None:
            cols = list(zip(*buf))
            insert(pa.RecordBatch.from_arrays(
                [pa.array(list(c), t.type) for c, t in zip(cols, _RESULT_SCHEMA)], schema=_RESULT_SCHEMA
            ))
            buf.clear()

        small = n_html <= 2 * max(1, opts.chunk_size)  # not worth a pool
        if not small and callable(pool) and not isinstance(pool, Executor):
            pool = pool()  # (a shared pool, started on first use)
        for res in extract_rows(_chunks(reader, max(1, opts.chunk_size)), replace(opts, workers=1) if small else opts,
                                extract_fn, None if small else pool):
            buf.extend(res)
            progress(len(res))
            if len(buf) >= batch_size:
                flush()
        if buf:
            flush()
    cur.close()
    if blocklist is not None and blocklist.has_words:
        bl.word_hits(con, blocklist, "SELECT id, title, text FROM _extracted WHERE rule IS NULL")
        con.sql("UPDATE _extracted SET rule = h.rule, value = h.value FROM _bl_word_hits h WHERE _extracted.id = h.id")
    con.sql(
        """
        CREATE OR REPLACE TABLE kept AS
        SELECT r.id, r.source, r.crawl_id, r.url, e.title, e.date, e.text, e.lang, e.lang_score, e.extractor
        FROM _extracted e JOIN _raw r USING (id)
        WHERE e.rule IS NULL
        ORDER BY r.id
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT id, source, url, '{NAME}' AS stage, rule, value FROM _triage WHERE rule IS NOT NULL
        UNION ALL
        SELECT r.id, r.source, r.url, '{NAME}', e.rule, e.value
        FROM _extracted e JOIN _raw r USING (id) WHERE e.rule IS NOT NULL
        ORDER BY id
        """
    )
    return finish_stage(con, NAME, input_rows=con.sql("SELECT count(*) FROM _raw").fetchall()[0][0])


# ------------------------------------------------------------------ as a stage of the graph


def _prepare(ctx: StageContext) -> Prepared:
    """The blocklists, read once per materialisation; their fingerprint (of the normalised
    entries and words, not of the file names) enters every part's chain, so an edited list
    recomputes extraction and the layers below."""
    if ctx.settings is None:
        return Prepared()
    lists = bl.load(ctx.con, ctx.settings.blocklist)
    return Prepared(state=lists, fingerprint=lists.fingerprint, counters=dict(lists.counters))


def _run(ctx: StageContext, src: str) -> StageOutput:
    lists = ctx.state
    if lists is None and ctx.settings is not None:  # (not prepared: the stage CLI on a file)
        lists = bl.load(ctx.con, ctx.settings.blocklist)
    res = run_extract(ctx.con, src, batch_size=ctx.batch_size, log=ctx.log,
                      options=options_from(ctx.settings) if ctx.settings is not None else None, pool=ctx.pool,
                      blocklist=lists)
    return StageOutput(kept=ctx.con.table("kept"), rejected=ctx.con.table("rejected"), result=res)


STAGE = Stage(
    name=NAME, input="raw_pages", output="extracted_documents", settings=lambda p: p.extract, run=_run,
    prepare=_prepare,
    libraries=("trafilatura", "resiliparse", "pycld2", "htmldate"), requires=("id",),
    passthrough=("source", "crawl_id", "url"), new_pool=lambda s: new_pool(options_from(s)),
    description="Main text (paragraphs kept), title, date and language of each HTML page: extractor chain "
                "(trafilatura, then resiliparse), a time bound per page, CLD2; dump records that carry text pass; "
                "pages of blocked domains / URLs and documents full of banned words are dropped.",
)
