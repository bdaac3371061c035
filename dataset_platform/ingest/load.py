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

Documents are read from the batch in one pass into a table that DuckDB spills to disk beyond its
memory limit, so memory does not grow with the batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa

from dataset_platform.atomic import replacing
from dataset_platform.contracts import schema
from dataset_platform.storage import sql_str, write_parquet
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


def batch_sql(batch: Batch) -> str:
    """SELECT over a landed batch (either format): source, crawl_id, seq (record order), id and every
    landed field."""
    head = (f"SELECT {sql_str(batch.source)} AS source, {sql_str(batch.crawl_id)} AS crawl_id, seq, "
            f"{doc_id_sql(sql_str(batch.source), 'url')} AS id, * EXCLUDE (seq)")
    cols = ", ".join(f'CAST("{k}" AS {v}) AS "{k}"' for k, v in BATCH_COLUMNS.items())
    if batch.path.name.endswith(".parquet"):
        return (f"{head} FROM (SELECT file_row_number + 1 AS seq, {cols} "
                f"FROM read_parquet({sql_str(batch.path)}, file_row_number = true))")
    if batch.path.name.endswith(RANGES):  # a file landed in byte ranges: one Parquet file per range
        import pyarrow.parquet as pq

        files, bases, base = range_files(batch.path), [], 0
        for f in files:  # (the rows before each range's: its records' numbers in the whole file)
            bases.append(f"({sql_str(f)}, {base})")
            base += pq.ParquetFile(f).metadata.num_rows
        return (f"{head} FROM (SELECT o.base + r.file_row_number + 1 AS seq, {cols} "
                f"FROM read_parquet([{', '.join(sql_str(f) for f in files)}], file_row_number = true, filename = true) r "
                f"JOIN (VALUES {', '.join(bases)}) o(file, base) ON o.file = r.filename)")
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
                part_rows: int = PART_ROWS) -> dict[str, int]:
    """Stage the parts of the batch loaded in ``_batch_log`` and the rewrites of the older parts it
    changes into ``layer`` (held, loaded; the caller commits)."""
    cols = ", ".join(f'b."{c}"' for c in schema.columns("raw_pages"))
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
    # the new part(s): one pass over the batch's bodies into a table (spilled beyond the memory limit)
    if stored:
        con.sql(f"""
            CREATE OR REPLACE TABLE _fresh AS
            SELECT {cols}, f.chunk FROM (
              SELECT * REPLACE (CAST(fetched_at AS TIMESTAMPTZ) AS fetched_at,
                                lower(coalesce(content_type, '')) AS content_type)
              FROM ({batch_sql(batch)})
            ) b JOIN _fresh_seq f ON f.seq = b.seq
            ORDER BY f.chunk, b.id
        """)
        chunks = int(con.sql("SELECT max(chunk) + 1 FROM _fresh").fetchall()[0][0])
        keys = [batch.crawl_id if chunks == 1 else f"{batch.crawl_id}-p{k:04d}" for k in range(chunks)]
        folders = [layer.stage(key) for key in keys]
        for key, (rows, ids) in zip(keys, _write_chunks(con, folders), strict=True):
            layer.staged(PartInfo(key, chain=f"raw:{batch.source}/{key}", rows=rows, ids=ids,
                                  counters={"batch": batch.crawl_id, "rows": rows}))
        con.sql("DROP TABLE _fresh")
    removed = sum(removed_by_part.values())
    return {"pages_before": before, "pages": before - removed + stored, "bodies_stored": stored, "removed": removed}


def _write_chunks(con: duckdb.DuckDBPyConnection, folders: list[Path]) -> list[tuple[int, str]]:
    """Write chunk k of table ``_fresh`` as the data file of ``folders[k]``; (rows, ids fingerprint)
    of each. The chunks are written side by side, one thread and DuckDB cursor each, up to the CPUs
    this process may use: a part is one row group, which DuckDB compresses on one thread (a 50 000
    page part of 145 MB took 1.3 s), so one after another they left the other cores idle. The
    bytes are those of a serial write: each file is one query with its own ORDER BY."""
    from concurrent.futures import ThreadPoolExecutor

    from dataset_platform.stages.base import available_cpus

    def write(k: int) -> tuple[int, str]:
        cur = con.cursor()  # (a connection of its own to the same database: it sees ``_fresh``)
        try:
            data = folders[k] / DATA
            rows = write_parquet(cur, f"SELECT * EXCLUDE (chunk) FROM _fresh WHERE chunk = {k} ORDER BY id",
                                 data, layer="raw_pages")
            return rows, ids_fingerprint(cur, f"SELECT id FROM read_parquet({sql_str(data)})")
        finally:
            cur.close()

    workers = min(len(folders), available_cpus())
    if workers < 2:
        return [write(k) for k in range(len(folders))]
    with ThreadPoolExecutor(workers, thread_name_prefix="raw-part") as pool:
        return list(pool.map(write, range(len(folders))))


def is_crawl_batch(batch: Batch) -> bool:
    """Crawl batches are named ``<source>-<UTC yyyymmddThhmmss...>Z``; ingested files ``<source>-<sha256[:16]>``."""
    return re.fullmatch(rf"{re.escape(batch.source)}-\d{{8}}T\d{{6,}}Z", batch.crawl_id) is not None


def ingest_pending(con: duckdb.DuckDBPyConnection, wd: Workdir, source: str, *, log=None,
                   part_rows: int = PART_ROWS) -> dict:
    """Load every pending batch of a source: crawl_log file + merge (a crawl batch as a snapshot,
    an ingested file accumulating), each batch committed on its own. Returns counters."""
    outcomes: dict[str, int] = {}
    counters: dict = {"batches": [], "bodies_stored": 0}
    with source_layer(wd, source).locked() as layer:
        for batch in pending_batches(wd, source, layer.extra.get("merged", [])):
            counts = load_batch(con, batch)
            write_crawl_log(con, wd, batch)
            m = merge_batch(con, layer, batch, snapshot=is_crawl_batch(batch), part_rows=part_rows)
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
