"""Extraction: HTML page -> main text, title and language.

Set-based where it can be (which responses are extractable at all is one SQL pass); the
per-page work (trafilatura, pycld2) runs over bounded Arrow batches, never the whole corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from dataset_platform.core.stage import StageResult, finish_stage

STAGE = "extract"

# CLD2 names a few codes differently from ISO 639-1.
_LANG_FIX = {"zh-Hant": "zh", "un": "und", "iw": "he", "jw": "jv"}
_WS = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True)
class Extracted:
    title: str | None
    text: str
    lang: str
    lang_score: float


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


def extract_html(html: str, url: str | None = None) -> Extracted | None:
    """Main text of one page (paragraphs separated by newlines), or None if there is none."""
    import trafilatura

    doc = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
    )
    if doc is None or not (doc.text or "").strip():
        return None
    lines = [_WS.sub(" ", ln).strip() for ln in doc.text.splitlines()]
    text = "\n".join(ln for ln in lines if ln)
    lang, score = detect_language(text)
    title = (doc.title or "").strip() or None
    return Extracted(title=title, text=text, lang=lang, lang_score=score)


_EXTRACTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float64()),
    ]
)


def from_text(text: str, title: str | None) -> Extracted | None:
    """A text dump's record: its text is the document (whitespace folded per line)."""
    lines = [_WS.sub(" ", ln).strip() for ln in text.splitlines()]
    body = "\n".join(ln for ln in lines if ln)
    if not body:
        return None
    lang, score = detect_language(body)
    return Extracted(title=(title or "").strip() or None, text=body, lang=lang, lang_score=score)


def _extract_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    ids, titles, texts, langs, scores = [], [], [], [], []
    for rid, url, html, given_text, given_title in zip(
        batch.column("id").to_pylist(), batch.column("url").to_pylist(), batch.column("html").to_pylist(),
        batch.column("text").to_pylist(), batch.column("title").to_pylist(),
    ):
        try:
            if html is None and given_text is not None:
                ex = from_text(given_text, given_title)
            else:
                ex = extract_html(html, url)
        except Exception:  # a pathological page must not stop the batch: it is rejected below
            ex = None
        ids.append(rid)
        titles.append(ex.title if ex else None)
        texts.append(ex.text if ex else None)
        langs.append(ex.lang if ex else None)
        scores.append(ex.lang_score if ex else None)
    return pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.array(titles, pa.string()), pa.array(texts, pa.string()),
         pa.array(langs, pa.string()), pa.array(scores, pa.float64())],
        schema=_EXTRACTED_SCHEMA,
    )


def run_extract(
    con: duckdb.DuckDBPyConnection,
    raw_sql: str,
    *,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = None,
) -> StageResult:
    """Extract every raw page; leaves tables ``kept`` and ``rejected`` on ``con``.

    ``raw_sql`` is a FROM-able expression with the raw_pages columns (at least id, source,
    crawl_id, url, status, content_type, html).
    """
    con.sql(f"CREATE OR REPLACE TABLE _raw AS SELECT * FROM {raw_sql}")
    cols = {r[0] for r in con.sql("DESCRIBE _raw").fetchall()}
    for col in ("text", "title", "source", "crawl_id"):  # text/title: text dumps; absent for HTML-only input
        if col not in cols:
            con.sql(f"ALTER TABLE _raw ADD COLUMN {col} VARCHAR")
    # Set-based triage: which responses can hold a document at all.
    con.sql(
        """
        CREATE OR REPLACE TABLE _triage AS
        SELECT id, source, url,
          CASE
            WHEN status < 200 OR status > 299 THEN 'http_status'
            WHEN text IS NOT NULL AND html IS NULL THEN
              CASE WHEN length(trim(text)) = 0 THEN 'empty_body' END
            WHEN coalesce(content_type, '') NOT IN ('text/html', 'application/xhtml+xml') THEN 'not_html'
            WHEN html IS NULL OR length(trim(html)) = 0 THEN 'empty_body'
          END AS rule,
          CASE
            WHEN status < 200 OR status > 299 THEN CAST(status AS VARCHAR)
            WHEN text IS NOT NULL AND html IS NULL THEN '0'
            WHEN coalesce(content_type, '') NOT IN ('text/html', 'application/xhtml+xml') THEN coalesce(content_type, '')
            ELSE '0'
          END AS value
        FROM _raw
        """
    )
    n_todo = con.sql("SELECT count(*) FROM _triage WHERE rule IS NULL").fetchall()[0][0]
    con.sql(
        "CREATE OR REPLACE TABLE _extracted (id VARCHAR, title VARCHAR, text VARCHAR, lang VARCHAR, lang_score DOUBLE)"
    )
    # Stream bounded batches from a second cursor while inserting results on the first.
    cur = con.cursor()
    reader = cur.sql(
        "SELECT r.id, r.url, r.html, r.text, r.title FROM _raw r JOIN _triage t USING (id) "
        "WHERE t.rule IS NULL ORDER BY r.id"
    ).to_arrow_reader(batch_size)
    done = 0
    for b in reader:
        out = _extract_batch(b)
        con.register("_batch", out)
        con.sql("INSERT INTO _extracted SELECT * FROM _batch")
        con.unregister("_batch")
        done += b.num_rows
        if log:
            log(f"extract: {done}/{n_todo} pages")
    cur.close()
    con.sql(
        """
        CREATE OR REPLACE TABLE kept AS
        SELECT r.id, r.source, r.crawl_id, r.url, e.title, e.text, e.lang, e.lang_score
        FROM _extracted e JOIN _raw r USING (id)
        WHERE e.text IS NOT NULL
        ORDER BY r.id
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT id, source, url, '{STAGE}' AS stage, rule, value FROM _triage WHERE rule IS NOT NULL
        UNION ALL
        SELECT r.id, r.source, r.url, '{STAGE}', 'no_main_text', CAST(length(coalesce(r.html, r.text)) AS VARCHAR)
        FROM _extracted e JOIN _raw r USING (id) WHERE e.text IS NULL
        ORDER BY id
        """
    )
    return finish_stage(con, STAGE, input_rows=con.sql("SELECT count(*) FROM _raw").fetchall()[0][0])
