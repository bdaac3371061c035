"""Loading landed batches (one record per URL: see ``dataset_platform/contracts/records.py``).

A batch is ``<crawl id>.jsonl.gz`` (gzip JSON Lines: what a crawl lands) or ``<crawl id>.parquet``
(the same fields as columns: what ``ingest_file`` lands for a dump file), or ``<batch id>.ranges/``
(a JSON Lines file landed in byte ranges: one such Parquet file per range, in file order); see
``dataset_platform/ingest/batchfile.py`` and ``ingest/files.py``. All read alike through
:func:`batch_sql`.

A batch becomes:

* its ``crawl_log`` file - every record without the body, one Parquet file per batch, written
  once (reloading a batch rewrites the same file, so rows are never duplicated);
* parts of its source's raw layer (``storage.batched``: one folder per source, one part per
  batch, or per slice of ``part_rows`` documents of a large one) holding the pages it stored;
  and the rows of older parts it replaces leave them. The layer is the source's current state:

  - a **crawl** source is a *snapshot* of its newest crawl: URLs ``fetched`` in it (new body, in
    the new part), URLs ``not_modified`` in it (the stored row stays in its older part, body not
    stored again), and URLs whose fetch failed transiently (``failed:*`` except
    ``failed:http_404``/``failed:http_410``: the last good copy stays). URLs the newest crawl did
    not reach, or found gone, leave the layer.
  - a **dump** source (warc/jsonl/parquet files) *accumulates*: each file's ``fetched`` records
    replace the stored rows of the same URL; everything else stays.

  An older part that loses rows is rewritten without them (only such parts are touched), so a
  refresh costs what the batch holds plus the parts it changes, not the source. The batches
  merged are recorded in the source layer's manifest, committed with its parts: a batch is merged
  once, and a killed merge leaves the source as it was.

The new parts are written by tasks (:func:`write_fresh_parts`): each landed range scatters its
fresh rows by part, then each part is sorted and written on its own, so no process holds the
batch, and the tasks run where the executor puts them (Ray tasks with ``pipeline.executor: ray``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa

from dataset_platform.atomic import replacing
from dataset_platform.contracts import schema
from dataset_platform.storage import memory_connection, sql_str, task_memory_limit, write_parquet
from dataset_platform.storage import scratch as scratch_folder
from dataset_platform.storage.batched import DATA, BatchedLayer, PartInfo, ids_fingerprint
from dataset_platform.workdir import Workdir

# The JSON keys of a landed record (dataset_platform/contracts/records.py), with their types.
BATCH_COLUMNS = {
    "url": "VARCHAR",
    "fetch_url": "VARCHAR",
    "outcome": "VARCHAR",
    "detail": "VARCHAR",
    "status": "INTEGER",
    "content_type": "VARCHAR",
    "charset": "VARCHAR",
    "fetched_at": "VARCHAR",
    "depth": "INTEGER",
    "referer": "VARCHAR",
    "body_bytes": "BIGINT",
    "content_hash": "VARCHAR",
    "etag": "VARCHAR",
    "last_modified": "VARCHAR",
    "headers": "VARCHAR",
    "title": "VARCHAR",
    "text": "VARCHAR",
    "html": "VARCHAR",
}

ID_SQL = "left(md5({source} || ' ' || {url}), 16)"
#: failed outcomes that mean "the page is gone" (not transient): the stored copy is dropped
GONE_OUTCOMES = ("failed:http_404", "failed:http_410")


@dataclass(frozen=True)
class Batch:
    source: str
    crawl_id: str
    path: Path


def doc_id_sql(source_sql: str, url_sql: str) -> str:
    """SQL for a document id: 16 hex chars of md5(source + ' ' + url)."""
    return ID_SQL.format(source=source_sql, url=url_sql)


#: a file landed in byte ranges: a folder of one Parquet file per range (``ingest/files.py``)
RANGES = ".ranges"
#: batch file endings, the preferred first (a batch id landed under several is the same batch)
BATCH_SUFFIXES = (".parquet", ".jsonl.gz", RANGES)


def range_files(folder: Path) -> list[Path]:
    """The Parquet files of a batch landed in ranges, in file order."""
    return sorted(f for f in folder.glob("*.parquet") if f.name[:-len(".parquet")].isdigit())


def _batch_head(batch: Batch) -> str:
    return (f"SELECT {sql_str(batch.source)} AS source, {sql_str(batch.crawl_id)} AS crawl_id, seq, "
            f"{doc_id_sql(sql_str(batch.source), 'url')} AS id, * EXCLUDE (seq)")


_BATCH_CASTS = ", ".join(f'CAST("{k}" AS {v}) AS "{k}"' for k, v in BATCH_COLUMNS.items())


def _range_bases(batch: Batch) -> list[tuple[Path, int, int]]:
    """(file, records before it, records in it) of each range of a batch landed in ranges."""
    import pyarrow.parquet as pq

    out, base = [], 0
    for f in range_files(batch.path):
        n = pq.ParquetFile(f).metadata.num_rows
        out.append((f, base, n))
        base += n
    return out


def batch_sql(batch: Batch) -> str:
    """SELECT over a landed batch (either format): source, crawl_id, seq (record order), id and every
    landed field."""
    head, cols = _batch_head(batch), _BATCH_CASTS
    if batch.path.name.endswith(".parquet"):
        return (f"{head} FROM (SELECT file_row_number + 1 AS seq, {cols} "
                f"FROM read_parquet({sql_str(batch.path)}, file_row_number = true))")
    if batch.path.name.endswith(RANGES):  # a file landed in byte ranges: one Parquet file per range
        files = _range_bases(batch)  # (the rows before each range's: its records' numbers in the whole file)
        bases = ", ".join(f"({sql_str(f)}, {base})" for f, base, _n in files)
        return (f"{head} FROM (SELECT o.base + r.file_row_number + 1 AS seq, {cols} "
                f"FROM read_parquet([{', '.join(sql_str(f) for f, _b, _n in files)}], file_row_number = true, "
                f"filename = true) r JOIN (VALUES {bases}) o(file, base) ON o.file = r.filename)")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in BATCH_COLUMNS.items()) + "}"
    return (
        f"{head} FROM (SELECT row_number() OVER () AS seq, * "
        f"FROM read_json({sql_str(batch.path)}, format = 'newline_delimited', columns = {columns}, "
        "compression = 'gzip'))"
    )


#: the crawl_log columns of a landed batch (everything but the body, title and headers)
LOG_COLUMNS = ("id", "source", "crawl_id", "seq", "url", "fetch_url", "outcome", "detail", "status", "content_type",
               "fetched_at", "depth", "referer", "body_bytes", "content_hash")
#: documents per part of the raw layer (a larger batch is stored as several parts)
PART_ROWS = 50_000


def batch_crawl_id(path: Path) -> str | None:
    """The crawl id of a batch file name (None if the name is not a batch's)."""
    for suffix in BATCH_SUFFIXES:
        if path.name.endswith(suffix) and not path.name.startswith(("known-", ".")):
            return path.name[: -len(suffix)]
    return None


def landed_batch(wd: Workdir, source: str, crawl_id: str) -> Path | None:
    """The batch file of ``crawl_id`` if it was landed (in either format)."""
    folder = wd.raw_batches(source)
    for suffix in BATCH_SUFFIXES:
        path = folder / (crawl_id + suffix)
        if path.is_dir() if suffix == RANGES else path.is_file():
            return path
    return None


def batch_slices(batch: Batch) -> list[tuple[str, int, int]]:
    """The batch as slices that can be read apart: ``(SELECT, first seq, last seq)`` of each range
    of a batch landed in ranges (each SELECT as :func:`batch_sql`'s, over its range alone), or of
    the whole batch otherwise (its seqs then unbounded)."""
    if not batch.path.name.endswith(RANGES):
        return [(batch_sql(batch), 1, 2**62)]
    head = _batch_head(batch)
    return [(f"{head} FROM (SELECT {base} + file_row_number + 1 AS seq, {_BATCH_CASTS} "
             f"FROM read_parquet({sql_str(f)}, file_row_number = true))", base + 1, base + n)
            for f, base, n in _range_bases(batch)]


def load_batch(con: duckdb.DuckDBPyConnection, batch: Batch) -> dict[str, int]:
    """Leaves table ``_batch_log`` (the batch's crawl_log rows, typed: fetched_at as TIMESTAMPTZ)
    and returns the outcome counts. The bodies are not read here."""
    cols = ", ".join(c for c in LOG_COLUMNS if c not in ("fetched_at", "content_type"))
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _batch_log AS
        SELECT {cols}, CAST(fetched_at AS TIMESTAMPTZ) AS fetched_at,
               lower(coalesce(content_type, '')) AS content_type
        FROM ({batch_sql(batch)})
        """
    )
    bad = con.sql("SELECT count(*) FROM _batch_log WHERE url IS NULL OR outcome IS NULL").fetchall()[0][0]
    if bad:
        raise ValueError(
            f"batch {batch.path}: {bad} record(s) without url or outcome; it was not written by this "
            "version of the crawler/ingester (see contracts/records.py) - delete it or re-land it"
        )
    return dict(con.sql("SELECT outcome, count(*) FROM _batch_log GROUP BY 1 ORDER BY 1").fetchall())


def write_crawl_log(con: duckdb.DuckDBPyConnection, wd: Workdir, batch: Batch) -> int:
    """The crawl_log file of the batch loaded in ``_batch_log``."""
    return write_parquet(
        con, "SELECT * FROM _batch_log ORDER BY seq", wd.crawl_log_file(batch.source, batch.crawl_id), layer="crawl_log"
    )


def source_layer(wd: Workdir, source: str) -> BatchedLayer:
    """The raw layer of one source (load it, or hold its lock with ``.locked()``)."""
    return BatchedLayer(wd.raw_source(source), f"raw_pages/{source}")


def source_files(wd: Workdir, source: str) -> list[Path]:
    """The data files of a source's raw layer as its manifest names them."""
    layer = source_layer(wd, source)
    if not layer.exists():
        return []
    return layer.load().files()


def merged_batches(wd: Workdir, source: str) -> list[str]:
    layer = source_layer(wd, source)
    return list(layer.load().extra.get("merged", [])) if layer.exists() else []


def pending_batches(wd: Workdir, source: str, merged: list[str] | None = None) -> list[Batch]:
    """Landed batches of ``source`` (``*.jsonl.gz`` and ``*.parquet``) not merged yet, in landing order."""
    done = set(merged_batches(wd, source) if merged is None else merged)
    folder = wd.raw_batches(source)
    files = [(f, crawl_id) for f in folder.glob("*") if (crawl_id := batch_crawl_id(f)) is not None]
    files.sort(key=lambda fc: (fc[0].stat().st_mtime_ns, fc[0].name))
    out = []
    for f, crawl_id in files:
        if crawl_id not in done:
            done.add(crawl_id)  # one batch per id, whatever its format
            out.append(Batch(source, crawl_id, f))
    return out


def merge_batch(con: duckdb.DuckDBPyConnection, layer: BatchedLayer, batch: Batch, *, snapshot: bool,
                scratch: Path, part_rows: int = PART_ROWS, cfg=None, memory_limit: str = "1GB",
                placement: dict | None = None) -> dict[str, int]:
    """Stage the parts of the batch loaded in ``_batch_log`` and the rewrites of the older parts it
    changes into ``layer`` (held, loaded; the caller commits). The new parts are written by
    :func:`write_fresh_parts` (``scratch``: its folder of intermediate files, on a path every
    worker reaches; ``cfg``, ``memory_limit``, ``placement``: where its tasks run and with what)."""
    # the newest record per URL within the batch (a dump may hold a URL twice)
    con.sql("CREATE OR REPLACE TABLE _latest AS SELECT seq, id, url, outcome FROM _batch_log "
            "QUALIFY row_number() OVER (PARTITION BY url ORDER BY fetched_at DESC, seq DESC) = 1")
    con.sql("CREATE OR REPLACE TABLE _fresh_seq AS SELECT seq, id, (row_number() OVER (ORDER BY id) - 1) "
            f"// {int(part_rows)} AS chunk FROM _latest WHERE outcome = 'fetched'")
    stored = int(con.sql("SELECT count(*) FROM _fresh_seq").fetchall()[0][0])
    before = layer.rows()
    # the rows of older parts that leave: replaced by this batch, or (a crawl) not kept by it
    old = layer.files()
    removed_by_part: dict[str, int] = {}
    if old:
        keys = {str(layer.file(k)): k for k in layer.parts}
        con.register("_old_keys", pa.table({"filename": list(keys), "key": list(keys.values())}))
        con.sql(f"CREATE OR REPLACE TABLE _old AS SELECT f.key, o.id, o.url FROM "
                f"read_parquet([{', '.join(sql_str(f) for f in old)}], filename = true) o "
                "JOIN _old_keys f ON f.filename = o.filename")
        con.unregister("_old_keys")
        if snapshot:
            gone = ", ".join(sql_str(o) for o in GONE_OUTCOMES)
            keep = (f"SELECT url FROM _latest WHERE outcome = 'not_modified' "
                    f"OR (outcome LIKE 'failed:%' AND outcome NOT IN ({gone}))")
            con.sql(f"CREATE OR REPLACE TABLE _removed AS SELECT key, id FROM _old WHERE url NOT IN ({keep})")
        else:
            con.sql("CREATE OR REPLACE TABLE _removed AS SELECT o.key, o.id FROM _old o "
                    "SEMI JOIN (SELECT url FROM _latest WHERE outcome = 'fetched') l ON l.url = o.url")
        removed_by_part = dict(con.sql("SELECT key, count(*) FROM _removed GROUP BY 1").fetchall())
    for key in sorted(removed_by_part):
        info = layer.parts[key]
        if removed_by_part[key] >= info.rows:
            layer.drop(key)
            continue
        staging = layer.stage(key)
        rows = write_parquet(con, f"SELECT * FROM read_parquet({sql_str(layer.file(key))}) o "
                                  f"ANTI JOIN (SELECT id FROM _removed WHERE key = {sql_str(key)}) r ON r.id = o.id "
                                  "ORDER BY o.id", staging / DATA, layer="raw_pages")
        layer.staged(replace(info, rows=rows, ids=ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(staging / DATA)})"),
                             counters={"batch": info.counters.get("batch"), "rows": rows}))
    # the new part(s): the batch's bodies scattered by part, then each part sorted and written
    if stored:
        chunks = int(con.sql("SELECT max(chunk) + 1 FROM _fresh_seq").fetchall()[0][0])
        keys = [batch.crawl_id if chunks == 1 else f"{batch.crawl_id}-p{k:04d}" for k in range(chunks)]
        folders = [layer.stage(key) for key in keys]
        written = write_fresh_parts(con, batch, folders, scratch, cfg=cfg, memory_limit=memory_limit,
                                    placement=placement)
        for key, (rows, ids) in zip(keys, written, strict=True):
            layer.staged(PartInfo(key, chain=f"raw:{batch.source}/{key}", rows=rows, ids=ids,
                                  counters={"batch": batch.crawl_id, "rows": rows}))
    removed = sum(removed_by_part.values())
    return {"pages_before": before, "pages": before - removed + stored, "bodies_stored": stored, "removed": removed}


#: the raw_pages columns of a batch's rows (``b``: a :func:`batch_sql` row)
_FRESH_COLS = ", ".join(f'b."{c}"' for c in schema.columns("raw_pages"))


def _fresh_rows_sql(select: str, chunks: str, first: int, last: int) -> str:
    """The rows of ``select`` (a :func:`batch_slices` SELECT) that the chunk map ``chunks`` (seq,
    chunk) names, as raw_pages columns and their ``chunk``."""
    return f"""
        SELECT {_FRESH_COLS}, f.chunk FROM (
          SELECT * REPLACE (CAST(fetched_at AS TIMESTAMPTZ) AS fetched_at,
                            lower(coalesce(content_type, '')) AS content_type)
          FROM ({select})
        ) b JOIN (SELECT seq, chunk FROM read_parquet({sql_str(chunks)})
                  WHERE seq BETWEEN {int(first)} AND {int(last)}) f ON f.seq = b.seq"""


@dataclass(frozen=True)
class ScatterTask:
    """The fresh rows of one slice of a batch (:func:`batch_slices`), each with its part, into
    ``out/chunk=<k>/`` files."""
    select: str
    first: int
    last: int
    chunks: str  # Parquet: (seq, chunk) of every fresh record of the batch, by seq
    out: str
    memory_limit: str
    threads: int


@dataclass(frozen=True)
class GatherTask:
    """One new part: the rows of ``rows`` (a SELECT), in id order, as ``data``."""
    rows: str
    data: str
    memory_limit: str
    threads: int
    temp_dir: str


def scatter_rows(task: ScatterTask) -> int:
    """:class:`ScatterTask`; returns the rows written. A module-level function: it runs here, in
    a worker process or as a Ray task alike."""
    import shutil

    out = Path(task.out)
    shutil.rmtree(out, ignore_errors=True)  # (a task retried after a kill writes its files again)
    con = memory_connection(task.threads, memory_limit=task.memory_limit)
    con.sql("SET enable_progress_bar = false")  # (a worker's output is the run's log)
    try:
        rows = _fresh_rows_sql(task.select, task.chunks, task.first, task.last)
        return int(con.execute(f"COPY ({rows}) TO {sql_str(out)} (FORMAT parquet, PARTITION_BY (chunk))").fetchall()[0][0])
    finally:
        con.close()


def gather_part(task: GatherTask) -> tuple[int, str]:
    """:class:`GatherTask`; returns (rows, ids fingerprint) of the part written."""
    con = memory_connection(task.threads, memory_limit=task.memory_limit, temp_dir=Path(task.temp_dir))
    con.sql("SET enable_progress_bar = false")
    try:
        data = Path(task.data)
        # (through a table: its statistics tell the Parquet writer which columns hold no null)
        con.sql(f"CREATE TABLE _part AS {task.rows}")
        rows = write_parquet(con, "SELECT * FROM _part ORDER BY id", data, layer="raw_pages")
        return rows, ids_fingerprint(con, "SELECT id FROM _part")
    finally:
        con.close()


def write_fresh_parts(con: duckdb.DuckDBPyConnection, batch: Batch, folders: list[Path], scratch: Path, *,
                      cfg=None, memory_limit: str = "1GB", placement: dict | None = None) -> list[tuple[int, str]]:
    """Write part k of the fresh records in ``_fresh_seq`` (seq, id, chunk) as the data file of
    ``folders[k]``, in id order; (rows, ids fingerprint) of each. A batch of one part is one task
    (:func:`gather_part`) over the batch. A larger one is two rounds of tasks, none of which holds
    the batch: each slice of the batch (a landed range) scatters its fresh rows by part into files
    of its own (:func:`scatter_rows`), then each part's rows are sorted and written. The tasks run
    as ``cluster.runners.map_runner`` places them (Ray tasks with ``pipeline.executor: ray`` in
    ``cfg``; worker processes of this machine for a batch large enough; else here), with
    ``memory_limit`` between them. (Sorting the whole batch in one query, as before, spilled it to
    disk beyond the memory limit: 40.8 s and 2.2 GB for the 1M-page benchmark's merge against 35.5 s
    and 0.98 GB now, ``bench/raw_merge.py``.) The files are the same
    wherever the tasks run: each part is one query with its own ORDER BY over unique ids."""
    from dataset_platform.cluster import runners
    from dataset_platform.config import size_bytes
    from dataset_platform.stages.base import available_cpus

    slices = batch_slices(batch) if len(folders) > 1 else [(batch_sql(batch), 1, 2**62)]
    size = sum(f.stat().st_size for f in batch.path.rglob("*") if f.is_file()) if batch.path.is_dir() \
        else batch.path.stat().st_size
    with scratch_folder(scratch), runners.map_runner(cfg, "merge", max(len(slices), len(folders)),
                                                     lambda: size >= runners.POOL_BYTES, placement) as (run, where):
        chunks = str(scratch / "chunks.parquet")
        con.sql(f"COPY (SELECT seq, chunk FROM _fresh_seq ORDER BY seq) TO {sql_str(chunks)} (FORMAT parquet)")
        workers = max(1, where.workers)
        threads = 1 if where == "ray" or workers > 1 else available_cpus()
        limit = task_memory_limit(size_bytes(memory_limit) // workers)

        def gather(k: int, rows: str) -> GatherTask:
            return GatherTask(rows, str(folders[k] / DATA), limit, threads, str(scratch / f"spill-{k}"))

        if len(folders) == 1:
            sql, first, last = slices[0]
            return list(run(gather_part, [gather(0, f"SELECT * EXCLUDE (chunk) FROM ({_fresh_rows_sql(sql, chunks, first, last)})")]))
        list(run(scatter_rows, [ScatterTask(sql, first, last, chunks, str(scratch / f"s-{i:05d}"), limit, threads)
                                for i, (sql, first, last) in enumerate(slices)]))
        scattered = "SELECT * FROM read_parquet({}, hive_partitioning = false)"
        return list(run(gather_part, [gather(k, scattered.format(sql_str(scratch / "s-*" / f"chunk={k}" / "*.parquet")))
                                      for k in range(len(folders))]))


def is_crawl_batch(batch: Batch) -> bool:
    """Crawl batches are named ``<source>-<UTC yyyymmddThhmmss...>Z``; ingested files ``<source>-<sha256[:16]>``."""
    return re.fullmatch(rf"{re.escape(batch.source)}-\d{{8}}T\d{{6,}}Z", batch.crawl_id) is not None


def ingest_pending(con: duckdb.DuckDBPyConnection, wd: Workdir, source: str, *, log=None,
                   part_rows: int = PART_ROWS, cfg=None, placement: dict | None = None) -> dict:
    """Load every pending batch of a source: crawl_log file + merge (a crawl batch as a snapshot,
    an ingested file accumulating), each batch committed on its own. Returns counters. ``cfg``:
    where the merge's tasks run (:func:`write_fresh_parts`; ``placement`` receives where each
    Ray task ran)."""
    outcomes: dict[str, int] = {}
    counters: dict = {"batches": [], "bodies_stored": 0}
    with source_layer(wd, source).locked() as layer:
        for batch in pending_batches(wd, source, layer.extra.get("merged", [])):
            counts = load_batch(con, batch)
            write_crawl_log(con, wd, batch)
            m = merge_batch(con, layer, batch, snapshot=is_crawl_batch(batch), part_rows=part_rows,
                            scratch=wd.spill("raw") / f"merge-{source}", cfg=cfg,
                            memory_limit=cfg.pipeline.memory_limit if cfg is not None else "1GB",
                            placement=placement)
            layer.commit(extra={**layer.extra, "merged": [*layer.extra.get("merged", []), batch.crawl_id]})
            for k, v in counts.items():
                outcomes[k] = outcomes.get(k, 0) + int(v)
            counters["batches"].append(batch.crawl_id)
            counters["bodies_stored"] += m["bodies_stored"]
            if log:
                log(f"{source}: merged batch {batch.crawl_id}: {sum(counts.values())} records, "
                    f"{m['bodies_stored']} bodies stored, {m['removed']} replaced or gone, "
                    f"source {m['pages_before']} -> {m['pages']} pages")
    counters["outcomes"] = outcomes
    return counters


def known_pages(con: duckdb.DuckDBPyConnection, wd: Workdir, source: str, out: Path,
                url_rewrite: tuple[str, str] | None = None) -> int:
    """Write the validators of a source's stored pages (for conditional requests) as gzip JSONL.

    ``url_rewrite`` = (recorded prefix, fetch prefix) maps recorded URLs to the URLs the crawl
    will request (e.g. the demo site's fixed base to the port it is served on now).
    """
    files = source_files(wd, source)
    if not files:
        return 0
    src = f"read_parquet([{', '.join(sql_str(f) for f in files)}])"
    url = "url"
    if url_rewrite:
        a, b = (sql_str(x) for x in url_rewrite)
        url = f"CASE WHEN starts_with(url, {a}) THEN {b} || substr(url, length({a}) + 1) ELSE url END"
    with replacing(out) as tmp:
        con.sql(f"COPY (SELECT {url} AS url, etag, last_modified, content_hash FROM {src} ORDER BY id) "
                f"TO {sql_str(tmp)} (FORMAT json, COMPRESSION gzip)")
    return int(con.sql(f"SELECT count(*) FROM {src}").fetchall()[0][0])
