"""Cleaning: normalisation, language-routed quality rules, PII redaction.

Per bounded Arrow batch (in worker processes on all cores when there is more than one batch):
normalise (ftfy, one newline convention, no control characters, single spaces; NFKC for CJK on
request), measure every rule of the four families set-based and decide
and redact structured PII in the kept texts (:mod:`dataset_platform.stages.clean.pii`: typed placeholders,
counts per type) (:func:`dataset_platform.stages.clean.score.score_batch`). DuckDB applies the language
filter first and writes ``kept`` / ``rejected``.

Rules are measured on the normalised text before redaction. Rejection reasons
(``rejected_documents.rule``), in the order they are applied:

* ``language_not_wanted`` (value: the language) when ``clean.languages`` is not empty;
* the first failing rule in drop mode, named ``<family>.<rule>`` (see
  ``contracts/rules.py`` for every rule, what it measures and its default; value: the
  measured value). Rules in annotate mode never drop: they are listed in ``annotations``.

Kept documents carry ``quality`` (JSON object rule -> measured value, keys sorted),
``annotations`` and ``pii_<type>`` (spans redacted, per type of ``core.pii.PII_TYPES``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import duckdb
import pyarrow as pa

from dataset_platform.config import CleanSettings
from dataset_platform.stages.base import (
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    available_cpus,
    exit_with_parent,
    finish_stage,
    streamable_view,
)
from dataset_platform.stages.clean.pii import PII_TYPES
from dataset_platform.stages.clean.score import SCORED_SCHEMA, score_batch
from dataset_platform.stages.clean.text import normalise_text  # noqa: F401  (public helper)
from dataset_platform.storage import sql_str

NAME = "clean"

PII_COLUMNS = [f"pii_{t}" for t in PII_TYPES]


def new_pool(workers: int) -> Executor:
    """Worker processes for scoring (spawned: the parent holds DuckDB threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent)


def score_batches(
    reader, settings: CleanSettings, *, workers: int, on_batch: Callable[[pa.RecordBatch], None],
    pool: Executor | None = None,
) -> None:
    """Score every batch of ``reader``; results reach ``on_batch`` in input order.

    With more than one worker, batches go to a process pool (``pool``, or one started here) with
    at most 2 per worker in flight, so memory stays bounded whatever the corpus size.
    """
    if workers <= 1:
        for b in reader:
            on_batch(score_batch(b, settings))
        return
    own = pool is None
    pool = pool or new_pool(workers)
    try:
        pending: deque = deque()
        for b in reader:
            pending.append(pool.submit(score_batch, b, settings))
            while len(pending) >= 2 * workers:
                on_batch(pending.popleft().result())
        while pending:
            on_batch(pending.popleft().result())
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def run_clean(
    con: duckdb.DuckDBPyConnection,
    extracted_sql: str,
    settings: CleanSettings | None = None,
    *,
    batch_size: int = 2000,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    pool: Executor | Callable[[], Executor | None] | None = None,
) -> StageResult:
    """Clean every extracted document; leaves ``kept`` and ``rejected`` on ``con``.

    ``extracted_sql`` is FROM-able with at least id, text (and optionally source, url, title, lang).
    ``workers``: processes for scoring (default: the CPUs this process may use; a single batch is
    always scored in-process). ``pool``: worker processes shared with other calls, or a function
    returning them (called only when there is more than one batch).
    """
    settings = settings or CleanSettings()
    # A view over the input: documents are streamed from it (Parquet in the pipeline), never held
    # all at once; the scored results keep text only for the documents that are kept.
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {extracted_sql}").fetchall()}
    extra = "".join(f", NULL::VARCHAR AS {c}" for c in ("source", "url", "title", "lang") if c not in cols)
    streamable_view(con, "_in", f"SELECT *{extra} FROM {extracted_sql}")  # batches are read on a second cursor
    n = con.sql("SELECT count(*) FROM _in").fetchall()[0][0]
    langs = ", ".join(sql_str(x) for x in settings.languages)
    wanted = f"coalesce(lang, 'und') IN ({langs})" if settings.languages else "TRUE"

    con.sql(
        "CREATE OR REPLACE TABLE _scored (id VARCHAR, title VARCHAR, text VARCHAR, n_words BIGINT, "
        "quality VARCHAR, annotations VARCHAR[], rule VARCHAR, value VARCHAR, "
        + ", ".join(f"{c} INTEGER" for c in PII_COLUMNS) + ")"
    )
    done = 0

    def insert(b: pa.RecordBatch) -> None:
        nonlocal done
        con.register("_batch", pa.Table.from_batches([b], SCORED_SCHEMA))
        con.sql("INSERT INTO _scored SELECT * FROM _batch")
        con.unregister("_batch")
        done += b.num_rows
        if log:
            log(f"clean: scored {done}/{to_score} documents")

    to_score = con.sql(f"SELECT count(*) FROM _in WHERE {wanted}").fetchall()[0][0]
    cur = con.cursor()
    reader = cur.sql(
        f"SELECT CAST(id AS VARCHAR) AS id, CAST(title AS VARCHAR) AS title, CAST(text AS VARCHAR) AS text, "
        f"CAST(lang AS VARCHAR) AS lang FROM _in WHERE {wanted}"  # input order: outputs are sorted at the end
    ).to_arrow_reader(batch_size)
    n_workers = max(1, workers) if workers is not None else available_cpus()
    n_workers = n_workers if to_score > batch_size else 1
    if n_workers > 1 and callable(pool) and not isinstance(pool, Executor):
        pool = pool()  # (a shared pool, started on first use)
    score_batches(reader, settings, workers=n_workers, on_batch=insert, pool=pool if n_workers > 1 else None)
    cur.close()

    pii_cols = ", ".join(f"s.{c}" for c in PII_COLUMNS)
    con.sql(
        f"""
        CREATE OR REPLACE TABLE kept AS
        SELECT i.id, i.source, i.url, s.title, s.text, i.lang, CAST(length(s.text) AS BIGINT) AS n_chars, s.n_words,
               {pii_cols}, s.quality, s.annotations, hash(s.text) AS text_hash
        FROM _in i JOIN _scored s USING (id) WHERE s.rule IS NULL
        ORDER BY id
        """
    )
    urls_redacted = _redact_urls(con) if getattr(settings, "redact_pii", True) else 0
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT id, source, url, '{NAME}' AS stage, 'language_not_wanted' AS rule, coalesce(lang, 'und') AS value
        FROM _in WHERE NOT ({wanted})
        UNION ALL
        SELECT i.id, i.source, i.url, '{NAME}', s.rule, s.value
        FROM _in i JOIN _scored s USING (id) WHERE s.rule IS NOT NULL
        ORDER BY id
        """
    )
    result = finish_stage(con, NAME, input_rows=n)
    result.extra.update(summarise(con, "kept", "rejected"))
    result.extra["urls_redacted"] = urls_redacted
    return result


def _redact_urls(con: duckdb.DuckDBPyConnection) -> int:
    """PII in the kept documents' URLs (a query string with an e-mail, a phone, a card number...)
    replaced by placeholders (:func:`~dataset_platform.stages.clean.pii.redact_urls`): the URL is
    released with the text. Returns how many changed."""
    from dataset_platform.stages.clean.pii import redact_urls

    t = con.sql("SELECT id, url FROM kept WHERE url IS NOT NULL").to_arrow_table()
    urls, found = redact_urls(t.column("url"))
    changed = sum(1 for types in found if types)
    if changed:
        con.register("_urls", pa.table({"id": t.column("id"), "url": urls}))
        con.sql("UPDATE kept SET url = u.url FROM _urls u WHERE kept.id = u.id AND kept.url <> u.url")
        con.unregister("_urls")
    return changed


def summarise(con: duckdb.DuckDBPyConnection, kept_sql: str, _rejected_sql: str) -> dict:
    """Counters of kept documents: PII spans redacted per type, documents per annotate-only rule."""
    sums = ", ".join(f"coalesce(sum({c}), 0)" for c in PII_COLUMNS)
    pii = con.sql(f"SELECT {sums} FROM {kept_sql}").fetchall()[0]
    out = {c: int(v) for c, v in zip(PII_COLUMNS, pii)}
    ann = con.sql(f"SELECT a, count(*) FROM (SELECT unnest(annotations) AS a FROM {kept_sql}) "
                  "GROUP BY a ORDER BY a").fetchall()
    out.update({f"annotated:{a}": int(c) for a, c in ann})
    return out


# ------------------------------------------------------------------ as a stage of the graph


def _run(ctx: StageContext, src: str) -> StageOutput:
    res = run_clean(ctx.con, src, *([ctx.settings] if ctx.settings is not None else []),
                    batch_size=ctx.batch_size, log=ctx.log, pool=ctx.pool)
    return StageOutput(kept=ctx.con.table("kept"), rejected=ctx.con.table("rejected"), result=res)


def _warm(settings: CleanSettings) -> None:
    """Score two tiny documents (English, Chinese): imports, the Chinese word dictionary, compiled
    patterns. A refresh's first batch paid 1.7 s of these on top of 1.1 s of scoring."""
    b = pa.RecordBatch.from_pydict({"id": ["w1", "w2"], "title": [None, None], "lang": ["en", "zh"], "text": [
        "A short note about rivers, written to warm up the cleaner. It has two sentences.",
        "这是一个用于预热的中文句子。它有两句话。"]})
    score_batch(b, settings or CleanSettings())


STAGE = Stage(
    name=NAME, input="extracted_documents", output="cleaned_documents", settings=lambda p: p.clean, run=_run,
    version="3",  # 2: PII in URLs, and in full-width or zero-width forms, redacted; 3: phone extensions, 19-digit and 12-digit grouped cards, (0xx) in full-width parentheses
    warm=_warm, new_pool=lambda s: new_pool(getattr(s, "workers", None) or available_cpus()),
    summarise=summarise, libraries=("ftfy", "rjieba", "phonenumbers"), passthrough=("source", "url", "title", "lang"),
    description="Normalised text (ftfy, NFC), Gopher / C4 / FineWeb quality rules per language (values in "
                "`quality`), structured PII redacted with typed placeholders (counts per type), in the text, the title and the URL.",
)
