"""Deduplication: exact (set-based in DuckDB), then near-duplicates (MinHash-LSH), incremental.

Exact: two documents are exact duplicates when their text is equal after lower-casing and
folding runs of whitespace (``content_hash``), or when they share a URL. In each group one keeper
is chosen deterministically (lowest URL, then lowest id); every other member is dropped with rule
``exact_duplicate`` / ``duplicate_url``. Only a slim table (id, URL, hash, quality, fetch time) is
built; texts stay in the input and ``kept`` is a view over it.

Near: the exact keepers not in the MinHash index (new or changed text) are streamed in bounded
batches through :func:`core.minhash.sign_batch` on a process pool (all CPUs by default) and their
signatures and band keys written to a new index part. The band keys of every document are cut
into shards by key (:mod:`.shards`: as many as a task's memory bound requires, at least one per
CPU of a Ray cluster), and each shard is a task (:class:`~dataset_platform.stages.base.Tasks`: in
this process, or a Ray task): candidate edges from shared band keys (each member linked to its
bucket's smallest member and to its predecessor in the bucket: linear in the bucket size, never
all pairs), only in buckets holding a new document, verified by estimated Jaccard similarity
(``threshold``) against signatures read by position from the index's arrays in bounded batches.
Edges between old documents are the index's verified edges. The clusters are the connected
components of the edges, computed in rounds of DuckDB SQL (:mod:`.components`), so that no
process holds every edge in memory. One keeper per cluster: a document kept by the previous run first (it may already be
published), then highest ``quality`` (when the input has it), then earliest ``fetched_at`` (when
present), then smallest id. Others are dropped with rule ``near_duplicate``, except documents
kept by the previous run: a newcomer linking two old clusters does not drop either old keeper.

Refresh: when the index holds the last run's state for these settings and fewer than 1/FEW of
the documents are new, changed or gone, the run goes by difference (:mod:`core.dedup_refresh`:
only the groups and clusters a change touches are ranked again); otherwise this module's full
pass runs, which still reuses the index: the raw text hash comes from the input's ``text_hash``
when it has one (the cleaned layer does), so only texts that are new or changed (by id) are read,
normalised and signed. ``kept_rows`` (id, row fingerprint) and :func:`kept_rows_query` let the
writer of a layer stored in parts write only what is new.

``duplicate_clusters`` has one row per dropped document: cluster_id (the keeper's content hash),
doc_id, keeper_id (always a kept document: an exact duplicate of a document that was then dropped
as a near-duplicate points at the final keeper), similarity (1.0 exact; estimated Jaccard with the
keeper for near), kind (exact | near). The rejected value is the keeper id.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.config import size_bytes
from dataset_platform.stages.base import (
    CliOption,
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    Tasks,
    available_cpus,
    exit_with_parent,
    finish_stage,
)
from dataset_platform.stages.dedup import exact as exact_shards
from dataset_platform.stages.dedup import shards
from dataset_platform.stages.dedup.components import connected_components
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.stages.dedup.minhash import MinHashParams, kernel_loaded, sig_matrix, sign_batch
from dataset_platform.storage import scratch, sql_str, task_memory_limit

NAME = "dedup"
# Runs of whitespace fold to one space. Written so that RE2 only rewrites what changes (runs of
# two or more, and single tabs/newlines): the same result as '\s+' -> ' ' at a quarter of its cost.
CONTENT_HASH_SQL = "md5(lower(regexp_replace(trim(text), '\\s\\s+|[\\t\\n\\r\\f\\v]', ' ', 'g')))"
OPTIONAL = ("source", "url", "lang")
#: a refresh reads texts by id (a join) instead of in one ordered pass when fewer than 1/FEW of
#: the documents need them
FEW = 10
#: up to this many batches to sign are signed on threads of this process: starting worker
#: processes (each imports numpy, Arrow and the compiled kernel) costs about 3 s, as long as
#: signing ~40 000 news-sized documents on one core (bench/dedup.py: a 1 % refresh of 1M documents)
IN_PROCESS = 8
#: fewer documents than this, signed in a process that has not loaded the compiled kernel, take
#: the numpy path: loading the kernel costs about 0.5 s, as long as the numpy path takes for ~3 000
#: news-sized documents (1 000: 0.18 s vs 0.54 + 0.04 s; 5 000: 0.77 s vs 0.54 + 0.2 s)
KERNEL_MIN_DOCS = 4000


# Group by content hash, then merge groups that share a URL (a URL seen twice, e.g. in two sources,
# is one document). Keeper: the document kept last time (it may be published already: a newcomer
# with its text is the duplicate), then lowest URL, then lowest id - stable across runs.
RANKED_SQL = """
    CREATE OR REPLACE TABLE {table} AS
    WITH by_hash AS (  -- (ids are unique in _index_docs)
      SELECT m.*, first_value(m.id) OVER w AS hash_keeper,
                row_number() OVER w AS hash_rank
      FROM {meta} m LEFT JOIN _index_docs p ON p.id = m.id
      WINDOW w AS (PARTITION BY m.content_hash ORDER BY coalesce(p.kept, FALSE) DESC, m._url_key, m.id)
    ), by_url AS (
      SELECT *, first_value(hash_keeper) OVER w2 AS keeper_id,
                row_number() OVER w2 AS url_rank
      FROM by_hash
      WINDOW w2 AS (PARTITION BY _url_key ORDER BY hash_rank, id)
    )
    SELECT *,
      CASE WHEN hash_rank > 1 THEN 'content' WHEN url_rank > 1 THEN 'url' END AS dup_by
    FROM by_url
"""
EXACT_SQL = """
    SELECT r.content_hash AS cluster_id, r.id AS doc_id,
           CASE WHEN r.dup_by = 'content' THEN r.hash_keeper ELSE r.keeper_id END AS keeper_id,
           1.0 AS similarity, 'exact' AS kind,
           CASE WHEN r.dup_by = 'content' THEN 'exact_duplicate' ELSE 'duplicate_url' END AS rule
    FROM {ranked} r WHERE r.dup_by IS NOT NULL
"""


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    cleaned_sql: str,
    settings=None,
    *,
    batch_size: int = 5000,
    log: Callable[[str], None] | None = None,
    index: MinHashIndex | None = None,
    workers: int | None = None,
    tasks: Tasks | None = None,
    files: list[str] | None = None,
) -> StageResult:
    """Leaves ``kept`` (a view over ``cleaned_sql``: keep it readable until written; write it
    with :func:`kept_query`), ``rejected`` and ``clusters`` on ``con``.

    ``cleaned_sql`` is FROM-able with at least id and text (url, lang, quality, fetched_at
    optional); ids must be unique. ``settings``: ``config.DedupSettings`` (or anything with its
    fields); None: defaults. ``index``: the MinHash index of previous runs, read here and extended
    with a part for the newly signed documents; call ``index.commit(con)`` once the outputs are
    written. ``workers``: signing processes (default ``settings.workers``, else every CPU).
    ``tasks``: where the shards of band keys are verified (default: one after another here, each
    with every CPU and ``settings.memory_limit``). ``files``: the Parquet files ``cleaned_sql``
    reads, in its order (``read_parquet`` of them); on a cluster each file's texts are then hashed
    by a task of its own.
    """
    src = cleaned_sql
    cols = set(con.sql(f"SELECT * FROM {src} LIMIT 0").columns)
    for need in ("id", "text"):
        if need not in cols:
            raise ValueError(f"dedup input needs a {need!r} column (has: {', '.join(sorted(cols))})")
    quality = "TRY_CAST(s.quality AS DOUBLE)" if "quality" in cols else "NULL::DOUBLE"
    fetched = "TRY_CAST(s.fetched_at AS TIMESTAMPTZ)" if "fetched_at" in cols else "NULL::TIMESTAMPTZ"
    near_on = settings is None or getattr(settings, "near", True)
    params = _params(settings)
    threshold = 0.7 if settings is None else float(settings.threshold)
    if index is not None:
        index.load(con, _params_tag(params), threshold)
    else:
        MinHashIndex.empty_tables(con)
    # the rows of new or changed texts, when a refresh reads them by id (else empty)
    con.sql(f"CREATE OR REPLACE TABLE _fresh AS SELECT * FROM {src} LIMIT 0")
    norm = CONTENT_HASH_SQL.replace("(text)", "(s.text)")
    # the raw text hash: the input's text_hash (the cleaned layer carries DuckDB's hash(text)), so
    # that a refresh reads no text it has seen before; else computed here
    raw = "s.text_hash::UBIGINT" if "text_hash" in cols else "hash(s.text)"
    # a fingerprint of everything a kept row carries: the layer keeps stored rows whose
    # fingerprint is unchanged
    carried = ", ".join(f's."{c}"' for c in sorted(cols - {"text", "text_hash"}))
    if workers is None:
        workers = getattr(settings, "workers", None) or available_cpus()
    if tasks is None:
        tasks = Tasks(memory_bytes=size_bytes(getattr(settings, "memory_limit", None) or "2GB"), threads=available_cpus())
    q = _Query(src, cols, quality, fetched, raw, carried, norm, tuple(files or ()))
    n = None
    if index is not None and near_on and index.reuse_edges:  # a refresh: by difference when little changed
        from dataset_platform.stages.dedup.refresh import refresh_by_difference

        n = refresh_by_difference(con, q, params, threshold, batch_size, log, index, workers, tasks)
    positional = n is None
    if n is None:
        n = _full_pass(con, q, near_on, params, threshold, batch_size, log, index, workers, tasks)
    _finish_outputs(con, q, positional, index, near_on)
    return _result(con, n)


@dataclass(frozen=True)
class _Query:
    """The input (``src``, its column names ``cols``) and the SQL expressions over its rows
    (``s``) that both passes use."""

    src: str
    cols: set[str]
    quality: str
    fetched: str
    raw: str  # the raw text hash
    carried: str  # the columns a kept row carries (for its fingerprint)
    norm: str  # the content hash: md5 of the normalised text
    files: tuple[str, ...] = ()  # the Parquet files ``src`` reads, in order, when it reads files

    def metadata(self, content_hash: str) -> str:
        """The select list of a row's metadata: id, source, url, lang, q, f, raw_hash,
        content_hash (``content_hash``: its expression) and row_hash."""
        opt = {c: f"s.{c}::VARCHAR" if c in self.cols else "NULL::VARCHAR" for c in OPTIONAL}
        return (f"s.id::VARCHAR AS id, {opt['source']} AS source, {opt['url']} AS url, {opt['lang']} AS lang, "
                f"{self.quality} AS q, {self.fetched} AS f, {self.raw} AS raw_hash, {content_hash} AS content_hash, "
                f"hash({self.raw}, {self.carried}) AS row_hash")


def _full_pass(con, q: _Query, near_on, params, threshold, batch_size, log, index, workers, tasks: Tasks) -> int:
    """Exact and near steps over every document (the index's hashes, signatures and verified edges
    reused); leaves ``_meta``, ``_exact``, ``_near``, ``_keep`` (and ``_docs``). Returns the
    number of input documents."""
    src, norm = q.src, q.norm
    # One ordered scan of the input (no join carries the texts): ids, metadata, a raw text hash.
    # ``pos`` is the input position: later passes over the texts pair input rows with per-row
    # flags by a positional join. The content hash (normalised text) of a document whose raw
    # hash is in the index is taken from there: a refresh normalises only new or changed texts.
    cached = con.sql("SELECT count(*) FROM _index_state").fetchall()[0][0] > 0
    select = q.metadata("NULL::VARCHAR" if cached else norm)
    if not cached and tasks.where != "local" and index is not None and len(q.files) > max(1, tasks.min_tasks):
        # on a cluster, every text normalised and hashed where its part is read: a task per file,
        # once there are more files than the cluster's CPUs (with fewer, this process's threads
        # scan as many at once without the round trip: +0.7 s at 100k on 2 CPUs, 2 parts)
        _scan_in_tasks(con, select, q.files, index.path.with_name(index.path.name + ".scan"), tasks)
    else:
        con.sql(f"CREATE OR REPLACE TABLE _scan AS SELECT {select} FROM {src} s")
    content_hash, joins = "x.content_hash", ""
    if cached:  # the index's hash where the raw hash matches; the others normalised
        con.sql("CREATE OR REPLACE TABLE _miss AS SELECT x.rowid AS pos, x.id, h.content_hash FROM _scan x "
                "LEFT JOIN _index_state h ON h.id = x.id AND h.raw_hash = x.raw_hash ORDER BY x.rowid")
        misses, total = con.sql("SELECT count(*) FILTER (content_hash IS NULL), count(*) FROM _miss").fetchall()[0]
        if misses * FEW < total:  # a few new texts: their rows read once, by id, for every later step
            con.sql(f"CREATE OR REPLACE TABLE _fresh AS SELECT s.* FROM {src} s "
                    "SEMI JOIN (SELECT id FROM _miss WHERE content_hash IS NULL) m ON m.id = s.id::VARCHAR")
            con.sql(f"CREATE OR REPLACE TABLE _normed AS SELECT m.pos, {norm} AS content_hash "
                    "FROM _fresh s JOIN _miss m ON m.id = s.id::VARCHAR")
        else:  # many: one ordered pass with per-row flags
            con.sql(f"CREATE OR REPLACE TABLE _normed AS SELECT m.pos, {norm} AS content_hash "
                    f"FROM {src} s POSITIONAL JOIN _miss m WHERE m.content_hash IS NULL")
        content_hash = "coalesce(m.content_hash, n.content_hash)"
        joins = "JOIN _miss m ON m.pos = x.rowid LEFT JOIN _normed n ON n.pos = x.rowid"
    if con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = '_meta'").fetchall()[0][0]:
        con.sql("DROP VIEW _meta")  # (left by a refresh by difference that gave up)
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _meta AS
        SELECT x.rowid AS pos, x.id, x.source, x.url, x.lang, x.q, x.f, x.raw_hash, {content_hash} AS content_hash,
               coalesce(x.url, x.id) AS _url_key, x.row_hash
        FROM _scan x {joins}
        """
    )
    con.sql("DROP TABLE _scan")
    n, distinct = con.sql("SELECT count(*), count(DISTINCT id) FROM _meta").fetchall()[0]
    if n != distinct:
        dup = con.sql("SELECT id FROM _meta GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 3").fetchall()
        raise ValueError(f"dedup input has {n - distinct} repeated ids (e.g. {', '.join(r[0] for r in dup)}): "
                         "ids must be unique")
    if tasks.where != "local" and index is not None and exact_shards.shard_count(n, tasks.memory_bytes) > 1:
        # on a cluster, more rows than one task may hold: in shard tasks, on the index's path (below
        # that the single query here is faster than the round trip: +0.3-0.5 s at 61 330 rows)
        exact_shards.rank_in_shards(con, "_meta", "_ranked", index.path.with_name(index.path.name + ".exact"), tasks, log)
    else:
        con.sql(RANKED_SQL.format(table="_ranked", meta="_meta"))
    con.sql("CREATE OR REPLACE TABLE _exact AS " + EXACT_SQL.format(ranked="_ranked"))
    if log:
        exact = con.sql("SELECT count(*) FROM _exact").fetchall()[0][0]
        log(f"dedup: {n} documents, {exact} exact duplicates (same normalised text or URL)")
    # (doc_id, keeper_id, similarity) of near-duplicates among the exact keepers
    con.sql("CREATE OR REPLACE TABLE _near (doc_id VARCHAR, keeper_id VARCHAR, similarity DOUBLE)")
    if near_on:
        _NearDuplicates(con, src, "lang" in q.cols, params, threshold, batch_size, log, index, workers, tasks,
                        q.files).run()
    con.sql(
        """
        CREATE OR REPLACE TABLE _keep AS
        SELECT id, content_hash, row_hash FROM _ranked
        WHERE dup_by IS NULL AND id NOT IN (SELECT doc_id FROM _near)
        """
    )
    return n


@dataclass(frozen=True)
class ScanTask:
    """One input file's rows of dedup's scan (``select``: the select list over its rows ``s``),
    written in file order to ``out``."""

    file: str
    select: str
    out: str
    memory_limit: str = "1GB"
    threads: int = 1


def scan_task(task: ScanTask) -> int:
    """:class:`ScanTask`: a task of :class:`Tasks`; returns the rows written."""
    con = shards.task_connection(task.memory_limit, task.threads, None)
    try:
        out = Path(task.out)
        tmp = out.with_name(out.name + ".tmp")
        con.sql(f"COPY (SELECT {task.select} FROM read_parquet({sql_str(task.file)}) s) TO {sql_str(tmp)} "
                "(FORMAT parquet, COMPRESSION zstd)")
        tmp.replace(out)  # (a retried task writes the same file again)
        return int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchall()[0][0])
    finally:
        con.close()


def _scan_in_tasks(con, select: str, files: tuple[str, ...], folder: Path, tasks: Tasks) -> None:
    """``_scan`` as the single scan over ``files`` makes it (rows in file order, then row order),
    each file scanned by a task."""
    with scratch(folder):
        todo = [ScanTask(f, select, str(folder / f"scan-{i:05d}.parquet"), task_memory_limit(tasks.memory_bytes),
                         tasks.threads) for i, f in enumerate(files)]
        sum(tasks.run(scan_task, todo))
        con.sql("CREATE OR REPLACE TABLE _scan AS SELECT * FROM read_parquet(["
                + ", ".join(sql_str(t.out) for t in todo) + "])")


def _finish_outputs(con, q: _Query, positional: bool, index: MinHashIndex | None, near_on: bool) -> None:
    """``kept``, ``kept_rows``, ``clusters``, ``rejected`` and the index's tables from ``_meta``,
    ``_exact``, ``_near`` and ``_keep``."""
    src, cols = q.src, q.cols
    missing = "".join(f", NULL::VARCHAR AS {c}" for c in OPTIONAL if c not in cols)
    if positional:
        # ``kept`` is a view over the input: a keep flag per input row, in input order (a
        # positional join), so the texts are streamed once, in order, never sorted or held
        con.sql("CREATE OR REPLACE TABLE _flags AS SELECT k.id IS NOT NULL AS keep, k.content_hash "
                "FROM _meta m LEFT JOIN _keep k ON k.id = m.id ORDER BY m.pos")
        con.sql(f"CREATE OR REPLACE VIEW kept AS SELECT s.*{missing}, f.content_hash FROM {src} s "
                "POSITIONAL JOIN _flags f WHERE f.keep")
        in_order = con.sql("SELECT coalesce(bool_and(id > prev), TRUE) FROM (SELECT id, lag(id) OVER (ORDER BY pos) "
                           "AS prev FROM _meta) WHERE prev IS NOT NULL").fetchall()[0][0]
    else:  # (a refresh by difference writes only its few rows; every kept row is a join away)
        con.sql(f"CREATE OR REPLACE VIEW kept AS SELECT s.*{missing}, k.content_hash FROM {src} s "
                "JOIN _keep k ON k.id = s.id::VARCHAR ORDER BY s.id")
        in_order = True
    con.sql(f"CREATE OR REPLACE TABLE _kept_in_id_order AS SELECT {str(bool(in_order)).upper()} AS yes")
    # for a writer that needs only some kept rows (kept_rows_query): the input, and the kept
    # rows' fingerprints
    con.sql(f"CREATE OR REPLACE VIEW _dedup_input AS SELECT s.*{missing} FROM {src} s")
    con.sql(f"CREATE OR REPLACE VIEW _dedup_fresh AS SELECT s.*{missing} FROM _fresh s")
    con.sql("CREATE OR REPLACE VIEW kept_rows AS SELECT id, row_hash FROM _keep")
    con.sql(
        """
        CREATE OR REPLACE TABLE clusters AS
        WITH near AS (
          SELECT h.content_hash AS cluster_id, n.doc_id, n.keeper_id, n.similarity, 'near' AS kind,
                 'near_duplicate' AS rule
          FROM _near n JOIN _meta h ON h.id = n.keeper_id
        ),
        exact AS (  -- an exact keeper dropped as a near-duplicate hands its duplicates on
          SELECT coalesce(n.cluster_id, e.cluster_id) AS cluster_id, e.doc_id,
                 coalesce(n.keeper_id, e.keeper_id) AS keeper_id,
                 coalesce(n.similarity, e.similarity) AS similarity, e.kind, e.rule
          FROM _exact e LEFT JOIN near n ON n.doc_id = e.keeper_id
        )
        SELECT * FROM exact UNION ALL SELECT * FROM near
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT r.id, r.source, r.url, '{NAME}' AS stage, c.rule, c.keeper_id AS value
        FROM _meta r JOIN clusters c ON c.doc_id = r.id ORDER BY r.id
        """
    )
    con.sql("CREATE OR REPLACE TABLE clusters AS SELECT * EXCLUDE (rule) FROM clusters ORDER BY doc_id")
    if index is None:
        return
    if positional:  # (a refresh by difference leaves only the rows that changed: _index_state_delta)
        con.sql("CREATE OR REPLACE TABLE _index_state_out AS SELECT id, raw_hash, row_hash, content_hash, "
                "_url_key AS url_key, source, url, lang, q, f FROM _meta")
    if not near_on:  # nothing signed: the next run with near-dedup on signs everything
        con.sql("DROP TABLE IF EXISTS _index_docs_delta")
        for name in ("docs", "edges", "exact", "near", "flipped"):
            con.sql(f"CREATE OR REPLACE TABLE _index_{name}_out AS SELECT * FROM _index_{name} WHERE false")
        return
    if positional:  # (a refresh by difference leaves its own, and _index_docs_delta)
        con.sql("DROP TABLE IF EXISTS _index_state_delta")
        con.sql("DROP TABLE IF EXISTS _index_docs_delta")
        con.sql("CREATE OR REPLACE TABLE _index_docs_out AS SELECT d.id, d.content_hash, d.part, d.row, "
                "d.id IN (SELECT id FROM _keep) AS kept FROM _docs d")
        # documents kept by the last run and dropped by this one: the keeper of a group prefers
        # what was kept, so the next refresh by difference ranks their groups again (a document
        # that became kept is its groups' first already, and stays first)
        con.sql("CREATE OR REPLACE TABLE _index_flipped_out AS SELECT p.id FROM _index_docs p "
                "WHERE p.kept AND p.id NOT IN (SELECT id FROM _keep)")
    con.sql("CREATE OR REPLACE TABLE _index_exact_out AS SELECT * FROM _exact")
    con.sql("CREATE OR REPLACE TABLE _index_near_out AS SELECT * FROM _near")


def _result(con, n: int) -> StageResult:
    result = finish_stage(con, NAME, input_rows=n, kept_rows=con.sql("SELECT count(*) FROM _keep").fetchall()[0][0])
    result.extra["clusters"] = con.sql("SELECT count(DISTINCT cluster_id) FROM clusters").fetchall()[0][0]
    for kind, docs in con.sql("SELECT kind, count(*) FROM clusters GROUP BY 1 ORDER BY 1").fetchall():
        result.extra[f"{kind}_duplicates"] = int(docs)
    # duplicate rate by source, and how large clusters are (keeper included)
    for source, rate in con.sql(
        "SELECT coalesce(m.source, '-'), round(avg(CASE WHEN c.doc_id IS NULL THEN 0 ELSE 1 END), 4) "
        "FROM _meta m LEFT JOIN clusters c ON c.doc_id = m.id GROUP BY 1 ORDER BY 1"
    ).fetchall():
        result.extra[f"duplicate_rate:{source}"] = float(rate)
    for size, count in con.sql(
        "SELECT size, count(*) FROM (SELECT keeper_id, count(*) + 1 AS size FROM clusters GROUP BY 1) GROUP BY 1 ORDER BY 1"
    ).fetchall():
        result.extra[f"clusters_of_size:{size}"] = int(count)
    return result


def kept_query(con: duckdb.DuckDBPyConnection, select: str = "*") -> str:
    """The query that writes ``kept`` in id order: without a sort when the input was in id order
    (every layer is written so), else with ORDER BY id (a sort of every kept text)."""
    in_order = con.sql("SELECT yes FROM _kept_in_id_order").fetchall()[0][0]
    return f"SELECT {select} FROM kept" + ("" if in_order else " ORDER BY id")


def _rows_of(con: duckdb.DuckDBPyConnection, ids_table: str, fresh: str, otherwise: str) -> str:
    """Where to read the input rows of ``ids_table``'s ids: ``fresh`` (over the rows a refresh
    has read already, ``_fresh``) when those hold all of them, else ``otherwise``."""
    outside = con.sql(f"SELECT count(*) FROM {ids_table} t ANTI JOIN _fresh f ON f.id::VARCHAR = t.id").fetchall()[0][0]
    return fresh if outside == 0 else otherwise


def sign_into_part(con: duckdb.DuckDBPyConnection, query: str, new: int, reused: int, index: MinHashIndex,
                   params: MinHashParams, batch_size: int, workers: int, log: Callable[[str], None],
                   tasks: Tasks | None = None, from_files: tuple[tuple[str, ...], str, bool] | None = None):
    """Sign the ``new`` documents of ``query`` (id, content_hash, text, lang) in bounded batches
    (on a process pool when there are many; as tasks of a cluster when ``tasks`` run there, i.e.
    ``pipeline.executor: ray``) into the index's new part: its Parquet file (part, row, id,
    content_hash, sig, keys; rows numbered in query order, a row group per ``batch_size`` rows)
    and its arrays. Leaves ``_signed`` (id, row) on ``con``; returns the part's written arrays
    (their band keys still in memory), or None when nothing was signed. The signatures, and the
    part's bytes, are the same wherever a batch is signed.

    ``from_files``: (the Parquet files ``query`` reads its texts from, in order; a table of a
    flag per row of them in that order: id, content_hash, sign; whether they have a ``lang``
    column). On a cluster, each file's rows to sign are then read and signed by a task of its own
    (:class:`SignTask`), so the texts never pass through this process."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    con.sql("CREATE OR REPLACE TABLE _signed (id VARCHAR, row INTEGER)")
    if new == 0:
        return None
    part = index.new_part
    index.path.mkdir(parents=True, exist_ok=True)
    on_cluster = tasks is not None and tasks.where != "local" and new > batch_size
    kernel = new >= KERNEL_MIN_DOCS or kernel_loaded()
    if on_cluster and from_files is not None and from_files[0]:
        todo = _sign_tasks(con, *from_files, params, kernel, batch_size,
                           index.path.with_name(index.path.name + ".sign"))
        reader = None
    else:
        todo = None
        # streamed on ``con`` itself (a cursor would not see views registered on it); nothing
        # else runs on it until the reader is drained
        reader = con.sql(query).to_arrow_reader(batch_size)
    arrays = index.part_arrays(part, new, params)
    writer = None
    done = 0
    ids = []
    held: list = []  # signed rows not written yet (less than a row group)

    def flush(rows: int) -> None:
        nonlocal writer, held
        table = pa.Table.from_batches(held).combine_chunks()
        if writer is None:
            writer = pq.ParquetWriter(index.part_path(part), table.schema, compression="zstd")
        # row groups of ``batch_size`` rows whatever the batches signed (a reader's batches vary
        # with how DuckDB cuts its chunks, a task's with its file)
        writer.write_table(table.slice(0, rows), row_group_size=batch_size)
        held = table.slice(rows).to_batches()

    def write(batch) -> None:
        nonlocal done
        n = batch.num_rows
        arrays.add(sig_matrix(batch.column("sig"), params.permutations))
        ids.append(batch.column("id"))
        held.append(pa.RecordBatch.from_arrays(
            [pa.array(np.full(n, part, np.int32)), pa.array(np.arange(done, done + n, dtype=np.int32)), *batch.columns],
            names=["part", "row", *batch.schema.names]))
        done += n
        waiting = sum(b.num_rows for b in held)
        if waiting >= batch_size:
            flush(waiting - waiting % batch_size)
        log(f"dedup: signatures for {done}/{new} new or changed documents ({reused} reused)")

    try:
        if todo is not None:
            # the cluster's workers read and sign each input file's rows; their signed rows come
            # back through files on the index's path, in file order
            log(f"dedup: {new} texts to sign, read where they are stored: {len(todo)} task(s), one per input file")
            with scratch(index.path.with_name(index.path.name + ".sign")):
                for task, _rows in zip(todo, tasks.run(sign_task_of_file, todo), strict=True):
                    with pq.ParquetFile(task.out) as signed:
                        for b in signed.iter_batches(batch_size=batch_size):
                            # (the keys' list type as :func:`sign_batch` makes it: Parquet names
                            # its items otherwise, and the part's schema would differ)
                            write(b.set_column(3, "keys", b.column(3).cast(pa.list_(pa.uint64()))))
        elif on_cluster:
            # the cluster's workers sign (on a cluster the signing, the stage's work per document,
            # must not stay in the run's process); a window of batches at a time, so that the
            # texts in flight stay bounded (two batches per CPU of the cluster)
            window: list = []
            for b in reader:
                window.append((b, params, kernel))
                if len(window) >= 2 * tasks.min_tasks:
                    for signed in tasks.run(sign_task, window):
                        write(signed)
                    window = []
            for signed in tasks.run(sign_task, window):
                write(signed)
        elif workers <= 1 or new <= batch_size:
            for b in reader:
                write(sign_batch(b, params, kernel))
        else:
            # a few batches on threads of this process (the kernel and Arrow's kernels release the
            # GIL; no pool to start), many on a process pool
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

            pool = (ThreadPoolExecutor(workers) if new <= IN_PROCESS * batch_size else
                    ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=exit_with_parent))
            with pool:
                pending: deque = deque()
                for b in reader:
                    pending.append(pool.submit(sign_batch, b, params, kernel))
                    while len(pending) >= 2 * workers:
                        write(pending.popleft().result())
                while pending:
                    write(pending.popleft().result())
        if held:
            flush(sum(b.num_rows for b in held))
    finally:
        if reader is not None:
            reader.close()
        if writer is not None:
            writer.close()
    arrays.close()
    con.register("_ids", pa.table({"id": pa.chunked_array(ids, pa.string()).cast(pa.string()),
                                   "row": pa.array(np.arange(done, dtype=np.int32))}))
    con.sql("INSERT INTO _signed SELECT id, row FROM _ids")
    con.unregister("_ids")
    return arrays


def sign_task(item: tuple) -> object:
    """:func:`sign_batch` of one ``(batch, params, kernel)``: a task of :class:`Tasks`."""
    return sign_batch(*item)


@dataclass(frozen=True)
class SignTask:
    """The rows of one input file to sign (``rows``: their positions in the file, ascending, as
    int64 bytes; ``ids`` and ``hashes``: theirs, Arrow strings), read from ``file`` by the task
    itself; their signed rows (id, content_hash, sig, keys) written to ``out`` in that order."""

    file: str
    rows: bytes
    ids: object
    hashes: object
    lang: bool
    params: MinHashParams
    kernel: bool
    batch_size: int
    out: str


def sign_task_of_file(task: SignTask) -> int:
    """:class:`SignTask`: a task of :class:`Tasks`; reads the file's texts a batch at a time and
    returns the rows signed. A retried task writes the same file again."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    want = np.frombuffer(task.rows, np.int64)
    out = Path(task.out)
    tmp = out.with_name(out.name + ".tmp")
    writer, start, k = None, 0, 0
    with pq.ParquetFile(task.file) as f:
        has_lang = task.lang and "lang" in f.schema_arrow.names
        for b in f.iter_batches(batch_size=task.batch_size, columns=["id", "text", "lang"] if has_lang else ["id", "text"]):
            end = start + b.num_rows
            j = int(np.searchsorted(want, end))
            if j > k:
                taken = b.take(pa.array(want[k:j] - start))
                ids = task.ids[k:j]
                if pa.types.is_string(taken.column("id").type) and not pc.all(pc.equal(taken.column("id"), ids)).as_py():
                    raise RuntimeError(f"dedup: the rows to sign in {task.file} are not where the scan found them "
                                       "(was the file rewritten during the run?)")
                lang = taken.column("lang").cast(pa.string()) if has_lang else pa.nulls(j - k, pa.string())
                signed = sign_batch(pa.RecordBatch.from_arrays([ids, task.hashes[k:j], taken.column("text"), lang],
                                                               names=["id", "content_hash", "text", "lang"]),
                                    task.params, task.kernel)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, signed.schema, compression="zstd")
                writer.write_batch(signed)
            k, start = j, end
    if k != len(want):
        raise RuntimeError(f"dedup: {len(want) - k} rows to sign are past the end of {task.file}")
    if writer is None:
        return 0
    writer.close()
    tmp.replace(out)
    return k


def _sign_tasks(con: duckdb.DuckDBPyConnection, files: tuple[str, ...], flags: str, lang: bool,
                params: MinHashParams, kernel: bool, batch_size: int, folder: Path) -> list[SignTask]:
    """A :class:`SignTask` per input file with rows to sign: ``flags`` holds a row (id,
    content_hash, sign) per row of ``files``, in their order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = []
    for f in files:
        with pq.ParquetFile(f) as pf:
            sizes.append(pf.metadata.num_rows)
    ends = np.cumsum(sizes, dtype=np.int64)
    rows = con.sql(f"SELECT (rowid)::BIGINT AS pos, id::VARCHAR AS id, content_hash::VARCHAR AS content_hash "
                   f"FROM {flags} WHERE sign ORDER BY rowid").to_arrow_table()
    if len(rows) and rows.column("pos")[len(rows) - 1].as_py() >= (int(ends[-1]) if len(ends) else 0):
        raise RuntimeError(f"dedup: {flags} has more rows than the input files")
    pos = rows.column("pos").to_numpy()
    cut = np.searchsorted(pos, ends)  # rows of file i: cut[i-1]:cut[i]
    todo, lo = [], 0
    for i, (f, hi) in enumerate(zip(files, cut, strict=True)):
        hi = int(hi)
        if hi > lo:
            first = int(ends[i - 1]) if i else 0
            todo.append(SignTask(file=f, rows=(pos[lo:hi] - first).astype(np.int64).tobytes(),
                                 ids=rows.column("id").slice(lo, hi - lo).combine_chunks().cast(pa.string()),
                                 hashes=rows.column("content_hash").slice(lo, hi - lo).combine_chunks().cast(pa.string()),
                                 lang=lang, params=params, kernel=kernel, batch_size=batch_size,
                                 out=str(folder / f"signed-{i:05d}.parquet")))
        lo = hi
    return todo


def drop_near_duplicates(con: duckdb.DuckDBPyConnection, edges_sql: str, nodes_sql: str,
                         log: Callable[[str], None] | None = None, tasks: Tasks | None = None,
                         index: MinHashIndex | None = None) -> None:
    """``_drop`` (node, id, keeper_node, keeper_id): every document of a near-duplicate cluster
    but its keeper. Clusters: the connected components of the edges ``edges_sql`` (a, b: node
    numbers; :mod:`.components`). ``nodes_sql``: node, id, kept (by the last
    run), q, f of every node. Keeper: kept by the last run, then highest quality, then earliest
    fetch, then smallest id.

    History rule: a document the last run kept is never dropped here. When new documents link
    clusters that each had a keeper (a chain through a newcomer, whose ends may share little
    text), every one of those keepers stays; the other members go to the first of them.
    ``tasks`` and ``index``: on a cluster, edges beyond one task's bound are joined in shard tasks,
    on the index's path (:func:`.components.connected_components`)."""
    folder = index.path.with_name(index.path.name + ".components") if index is not None else None
    rounds = connected_components(con, edges_sql, "_c", tasks=tasks, folder=folder, log=log)
    if log:
        nodes, clusters = con.sql("SELECT count(*), count(DISTINCT comp) FROM _c").fetchall()[0]
        log(f"dedup: {nodes} documents in {clusters} near-duplicate clusters ({rounds} rounds of components)")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _drop AS
        SELECT * FROM (
          SELECT c.node, d.id, d.kept, first_value(c.node) OVER w AS keeper_node,
                 first_value(d.id) OVER w AS keeper_id, row_number() OVER w AS rank
          FROM _c c JOIN ({nodes_sql}) d USING (node)
          WINDOW w AS (PARTITION BY c.comp ORDER BY d.kept DESC, d.q DESC NULLS LAST, d.f ASC NULLS LAST, d.id)
        ) WHERE rank > 1 AND NOT kept
        """
    )
    con.sql("DROP TABLE _c")


def _params(settings) -> MinHashParams:
    if settings is None:
        return MinHashParams()
    return MinHashParams(ngram=settings.ngram, cjk_ngram=settings.cjk_ngram, bands=settings.bands,
                         rows=settings.rows, seed=settings.seed)


def _params_tag(params: MinHashParams) -> str:
    # "t2": units from Arrow kernels (Unicode lower-casing and word classes as RE2 sees them)
    return f"t2/{params.ngram}/{params.cjk_ngram}/{params.bands}x{params.rows}/{params.seed}"


class _NearDuplicates:
    """Fill ``_near`` from the exact keepers of ``_ranked`` (see the module docstring); leaves
    ``_docs`` (doc, id, content_hash, part, ...) and ``_index_edges_out`` on the connection."""

    def __init__(self, con, src: str, has_lang: bool, params: MinHashParams, threshold: float, batch_size: int,
                 log, index: MinHashIndex | None, workers: int, tasks: Tasks, files: tuple[str, ...] = ()):
        self.con, self.src, self.has_lang, self.params, self.files = con, src, has_lang, params, files
        self.threshold, self.batch_size, self.workers, self.tasks = threshold, batch_size, max(1, int(workers)), tasks
        self.log = log or (lambda _m: None)
        import tempfile

        if index is None:  # no history: an index in a scratch folder for this run only
            self._scratch = tempfile.TemporaryDirectory(prefix="dedup-")
            index = MinHashIndex(Path(self._scratch.name))
            index.load(con, _params_tag(params), threshold)
        self.index = index
        self.sigs = shards.SignatureReader(index.path, params.permutations)

    def run(self) -> None:
        con, index = self.con, self.index
        con.sql(
            f"""
            CREATE OR REPLACE TABLE _docs AS
            SELECT (row_number() OVER (ORDER BY r.id) - 1)::INTEGER AS doc, r.id, r.content_hash, r.q, r.f,
                   coalesce(x.kept, FALSE) AS was_kept, x.part AS part, x.row AS row,
                   x.part IS NULL OR NOT {str(index.reuse_edges).upper()} AS edge_new
            FROM _ranked r LEFT JOIN _index_docs x ON x.id = r.id AND x.content_hash = r.content_hash
            WHERE r.dup_by IS NULL
            """
        )
        self.n = con.sql("SELECT count(*) FROM _docs").fetchall()[0][0]
        self._sign_new()
        self._edges()
        self._clusters()

    # -- signatures of new or changed documents -> a new index part
    def _sign_new(self) -> None:
        con, index = self.con, self.index
        new = con.sql("SELECT count(*) FROM _docs WHERE part IS NULL").fetchall()[0][0]
        lang = "s.lang" if self.has_lang else "NULL::VARCHAR AS lang"
        from_files = None
        if new * FEW < self.n:  # a few: their texts read by id (or taken from the rows read already)
            con.sql("CREATE OR REPLACE TABLE _to_sign AS SELECT id, content_hash FROM _docs WHERE part IS NULL")
            query = (f"SELECT d.id, d.content_hash, s.text, {lang} FROM {_rows_of(con, '_to_sign', '_fresh', self.src)} s "
                     "JOIN _to_sign d ON d.id = s.id::VARCHAR ORDER BY d.id")
        else:  # a sign flag per input row, in input order: the texts are streamed by a positional join
            con.sql("CREATE OR REPLACE TABLE _sign AS SELECT m.id, m.content_hash, d.part IS NULL AND d.doc IS NOT NULL "
                    "AS sign FROM _meta m LEFT JOIN _docs d ON d.id = m.id ORDER BY m.pos")
            query = f"SELECT g.id, g.content_hash, s.text, {lang} FROM {self.src} s POSITIONAL JOIN _sign g WHERE g.sign"
            from_files = (self.files, "_sign", self.has_lang)
        sign_into_part(con, query, new, self.n - new, index, self.params, self.batch_size, self.workers, self.log,
                       self.tasks, from_files)
        if new:
            con.sql(f"UPDATE _docs SET part = {index.new_part}, row = p.row FROM _signed p "
                    "WHERE p.id = _docs.id AND _docs.part IS NULL")

    def _parts(self) -> str:
        parts = [r[0] for r in self.con.sql("SELECT DISTINCT part FROM _docs ORDER BY 1").fetchall()]
        return self.index.parts_sql(parts)

    # -- candidate edges touching a new document, verified shard by shard; plus the index's edges
    #    among old documents
    def _edges(self) -> None:
        con, tasks = self.con, self.tasks
        bands_sql = (
            "SELECT doc, (generate_subscripts(keys, 1) - 1)::SMALLINT AS band, unnest(keys) AS key, part, row, new "
            f"FROM (SELECT d.doc, d.part, d.row, d.edge_new AS new, p.keys FROM {self._parts()} p "
            "JOIN _docs d ON d.id = p.id AND d.part = p.part WHERE p.keys IS NOT NULL)"
        )
        n_shards = max(shards.shard_count(self.n * self.params.bands, tasks.memory_bytes), tasks.min_tasks)
        folder = self.index.path.with_name(self.index.path.name + ".shards")
        try:
            files = shards.write_band_shards(con, bands_sql, folder, n_shards)
            todo = [shards.ShardTask(shard=i, bands=str(f), out=str(folder / f"edges-{i}.parquet"),
                                     index=str(self.index.path), permutations=self.params.permutations,
                                     threshold=self.threshold,
                                     memory_limit=task_memory_limit(tasks.memory_bytes),
                                     threads=tasks.threads, temp_dir=str(folder / f"tmp-{i}"))
                    for i, f in enumerate(files)]
            n_cand = verified = 0
            for done, r in enumerate(tasks.run(shards.shard_edges, todo), 1):
                n_cand += r.candidates
                verified += r.verified
                self.log(f"dedup: shard {done}/{len(todo)} ({tasks.where}): {r.band_rows} band keys, "
                         f"{r.verified} of {r.candidates} candidate pairs verified")
            new_edges = ("SELECT DISTINCT a, b, similarity FROM read_parquet(["
                         + ", ".join(sql_str(t.out) for t in todo) + "])") if todo else \
                "SELECT NULL::INTEGER AS a, NULL::INTEGER AS b, NULL::DOUBLE AS similarity WHERE false"
            con.sql(
                f"""
                CREATE OR REPLACE TABLE _edges AS
                SELECT a, b, similarity, FALSE AS reused FROM ({new_edges})
                UNION ALL
                SELECT da.doc, db.doc, e.similarity, TRUE
                FROM _index_edges e JOIN _docs da ON da.id = e.a_id JOIN _docs db ON db.id = e.b_id
                WHERE NOT da.edge_new AND NOT db.edge_new
                """
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        old = con.sql("SELECT count(*) FILTER (reused) FROM _edges").fetchall()[0][0]
        self.log(f"dedup: {verified} of {n_cand} candidate pairs verified (estimated Jaccard >= {self.threshold:g}) "
                 f"in {len(todo)} shard{'s' if len(todo) != 1 else ''}"
                 + (f"; {old} verified pairs reused from the index" if old else ""))
        con.sql(
            "CREATE OR REPLACE TABLE _index_edges_out AS SELECT da.id AS a_id, db.id AS b_id, round(e.similarity, 4) "
            "AS similarity FROM _edges e JOIN _docs da ON da.doc = e.a JOIN _docs db ON db.doc = e.b"
        )

    # -- connected components, one keeper each
    def _clusters(self) -> None:
        import numpy as np
        import pyarrow as pa

        con = self.con
        if con.sql("SELECT count(*) FROM _edges").fetchall()[0][0] == 0:
            return
        drop_near_duplicates(con, "SELECT a, b FROM _edges",
                             "SELECT doc AS node, id, was_kept AS kept, q, f FROM _docs", self.log, self.tasks,
                             self.index)
        # the similarity of each dropped document with its keeper, in bounded batches
        reader = con.sql("SELECT x.node, da.part AS a_part, da.row AS a_row, db.part AS b_part, db.row AS b_row "
                         "FROM _drop x JOIN _docs da ON da.doc = x.node JOIN _docs db ON db.doc = x.keeper_node "
                         "ORDER BY x.node").to_arrow_reader(shards.PAIR_BATCH)
        nodes, sims = [], []
        for batch in reader:
            c = {name: batch.column(name).to_numpy() for name in batch.schema.names}
            nodes.append(c["node"].astype(np.int32))
            sims.append(self.sigs.similarity(c["a_part"], c["a_row"], c["b_part"], c["b_row"]).round(4))
        con.register("_s", pa.table({"node": pa.array(np.concatenate(nodes)), "similarity": pa.array(np.concatenate(sims))}))
        con.sql("INSERT INTO _near SELECT x.id, x.keeper_id, s.similarity FROM _drop x JOIN _s s USING (node) ORDER BY x.id")
        con.unregister("_s")


# ------------------------------------------------------------------ as a stage of the graph


def _run(ctx: StageContext, src: str) -> StageOutput:
    """The decision over the whole cleaned layer, against the MinHash index kept beside the layer
    (committed with the layer: a run that fails before leaves both as they were)."""
    settings = ctx.settings
    # (the CLI on a file keeps no index: everything is signed)
    index = MinHashIndex(ctx.workdir.stage_state("deduplicated_documents", "minhash_index")) if ctx.workdir else None
    res = run_dedup(ctx.con, src, settings, log=ctx.log, index=index, tasks=ctx.tasks, files=ctx.input_files)
    con = ctx.con

    def commit() -> None:
        if index is not None and (settings is None or settings.near):  # (near off: nothing signed, index stays)
            index.commit(con, _params(settings))

    return StageOutput(kept=con.sql("SELECT id, content_hash FROM _keep"), rejected=con.table("rejected"),
                       result=res, extra={"duplicate_clusters": con.table("clusters")}, commit=commit)


STAGE = Stage(
    name=NAME, input="scored_documents", output="deduplicated_documents", settings=lambda p: p.dedup, run=_run,
    per_batch=False, extra_outputs=("duplicate_clusters",), also_writes=("duplicate_clusters",),
    memory_limit=lambda s: s.memory_limit, passthrough=("source", "url", "lang"),
    cli_options=(CliOption("--clusters", {"required": True, "help": "write duplicate_clusters: cluster_id, doc_id, "
                                          "keeper_id, similarity, kind"}, output="duplicate_clusters"),),
    description="One document per cluster of duplicates: exact (same normalised text or URL) and near "
                "(MinHash-LSH, verified Jaccard); incremental over its MinHash index.",
)
