"""Loading landed batches (one record per URL: see ``dataset_platform/contracts/records.py``).

A batch is ``<crawl id>.jsonl.gz`` (gzip JSON Lines: what a crawl lands) or ``<crawl id>.parquet``
(the same fields as columns: what ``ingest_file`` lands for a dump file); see
``dataset_platform/ingest/batchfile.py``. Both read alike through :func:`batch_sql`.

A batch becomes:

* its ``crawl_log`` file - every record without the body, one Parquet file per batch, written
  once (reloading a batch rewrites the same file, so rows are never duplicated);
* a merge into its source's ``raw_pages`` partition, which holds the source's current state:

  - a **crawl** source is a *snapshot* of its newest crawl: URLs ``fetched`` in it (new body),
    URLs ``not_modified`` in it (the stored row is kept, body not stored again), and URLs whose
    fetch failed transiently (``failed:*`` except ``failed:http_404``/``failed:http_410``: the last
    good copy is kept). URLs the newest crawl did not reach, or found gone, leave the partition.
  - a **dump** source (warc/jsonl/parquet files) *accumulates*: each file's ``fetched`` records
    replace the stored rows of the same URL; everything else stays.

Which batches were merged is recorded in ``merged.json`` beside the partition, so a batch is
merged once; merging a batch again gives the same state (idempotent) should that record be lost.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.contracts import schema
from dataset_platform.storage import Workdir, sql_str, write_parquet

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


#: batch file endings, the preferred first (a batch id landed under both is the same batch)
BATCH_SUFFIXES = (".parquet", ".jsonl.gz")


def batch_sql(batch: Batch) -> str:
    """SELECT over a landed batch (either format): source, crawl_id, seq (record order), id and every
    landed field."""
    head = (f"SELECT {sql_str(batch.source)} AS source, {sql_str(batch.crawl_id)} AS crawl_id, seq, "
            f"{doc_id_sql(sql_str(batch.source), 'url')} AS id, * EXCLUDE (seq)")
    if batch.path.name.endswith(".parquet"):
        cols = ", ".join(f'CAST("{k}" AS {v}) AS "{k}"' for k, v in BATCH_COLUMNS.items())
        return (f"{head} FROM (SELECT file_row_number + 1 AS seq, {cols} "
                f"FROM read_parquet({sql_str(batch.path)}, file_row_number = true))")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in BATCH_COLUMNS.items()) + "}"
    return (
        f"{head} FROM (SELECT row_number() OVER () AS seq, * "
        f"FROM read_json({sql_str(batch.path)}, format = 'newline_delimited', columns = {columns}, "
        "compression = 'gzip'))"
    )


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
        if (folder / (crawl_id + suffix)).is_file():
            return folder / (crawl_id + suffix)
    return None


def load_batch(con: duckdb.DuckDBPyConnection, batch: Batch) -> dict[str, int]:
    """Leaves table ``_batch`` (typed, fetched_at as TIMESTAMPTZ); returns outcome counts."""
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _batch AS
        SELECT * REPLACE (CAST(fetched_at AS TIMESTAMPTZ) AS fetched_at,
                          lower(coalesce(content_type, '')) AS content_type)
        FROM ({batch_sql(batch)})
        """
    )
    bad = con.sql("SELECT count(*) FROM _batch WHERE url IS NULL OR outcome IS NULL").fetchall()[0][0]
    if bad:
        raise ValueError(
            f"batch {batch.path}: {bad} record(s) without url or outcome; it was not written by this "
            "version of the crawler/ingester (see dataset_platform/contracts/records.py) - delete it or re-land it"
        )
    return dict(con.sql("SELECT outcome, count(*) FROM _batch GROUP BY 1 ORDER BY 1").fetchall())


def write_crawl_log(con: duckdb.DuckDBPyConnection, wd: Workdir, batch: Batch) -> int:
    """The crawl_log file of the batch loaded in ``_batch``."""
    return write_parquet(
        con, "SELECT * FROM _batch ORDER BY seq", wd.crawl_log_file(batch.source, batch.crawl_id), layer="crawl_log"
    )


def merged_path(wd: Workdir, source: str) -> Path:
    return wd.raw_partition(source).with_name("merged.json")


def merged_batches(wd: Workdir, source: str) -> list[str]:
    p = merged_path(wd, source)
    return json.loads(p.read_text(encoding="utf-8"))["merged"] if p.exists() else []


def _record_merged(wd: Workdir, source: str, crawl_ids: list[str]) -> None:
    p = merged_path(wd, source)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps({"merged": crawl_ids}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def pending_batches(wd: Workdir, source: str) -> list[Batch]:
    """Landed batches of ``source`` (``*.jsonl.gz`` and ``*.parquet``) not merged yet, in landing order."""
    done = set(merged_batches(wd, source))
    folder = wd.raw_batches(source)
    files = [(f, crawl_id) for f in folder.glob("*") if (crawl_id := batch_crawl_id(f)) is not None]
    files.sort(key=lambda fc: (fc[0].stat().st_mtime_ns, fc[0].name))
    out = []
    for f, crawl_id in files:
        if crawl_id not in done:
            done.add(crawl_id)  # one batch per id, whatever its format
            out.append(Batch(source, crawl_id, f))
    return out


def merge_batch(con: duckdb.DuckDBPyConnection, wd: Workdir, batch: Batch, *, snapshot: bool) -> dict[str, int]:
    """Merge the batch loaded in ``_batch`` into its source's raw partition (atomically)."""
    part = wd.raw_partition(batch.source)
    cols = ", ".join(f'"{c}"' for c in schema.columns("raw_pages"))
    prev = f"(SELECT {cols} FROM read_parquet({sql_str(part)}))" if part.exists() else None
    # The newest record per URL within the batch (a dump may hold a URL twice).
    con.sql(
        """
        CREATE OR REPLACE TABLE _latest AS
        SELECT * FROM _batch QUALIFY row_number() OVER (PARTITION BY url ORDER BY fetched_at DESC, seq DESC) = 1
        """
    )
    fresh = f"SELECT {cols} FROM _latest WHERE outcome = 'fetched'"
    if prev is None:
        query = fresh
    elif snapshot:
        gone = ", ".join(sql_str(o) for o in GONE_OUTCOMES)
        query = f"""
            {fresh}
            UNION ALL
            SELECT p.* FROM {prev} p JOIN _latest b ON b.url = p.url
            WHERE b.outcome = 'not_modified' OR (b.outcome LIKE 'failed:%' AND b.outcome NOT IN ({gone}))
        """
    else:
        query = f"""
            {fresh}
            UNION ALL
            SELECT p.* FROM {prev} p WHERE p.url NOT IN (SELECT url FROM _latest WHERE outcome = 'fetched')
        """
    before = int(con.sql(f"SELECT count(*) FROM {prev}").fetchall()[0][0]) if prev else 0
    rows = write_parquet(con, f"SELECT * FROM ({query}) ORDER BY id", part, layer="raw_pages")
    stored = int(con.sql("SELECT count(*) FROM _latest WHERE outcome = 'fetched'").fetchall()[0][0])
    return {"pages_before": before, "pages": rows, "bodies_stored": stored}


def is_crawl_batch(batch: Batch) -> bool:
    """Crawl batches are named ``<source>-<UTC yyyymmddThhmmss...>Z``; ingested files ``<source>-<sha256[:16]>``."""
    return re.fullmatch(rf"{re.escape(batch.source)}-\d{{8}}T\d{{6,}}Z", batch.crawl_id) is not None


def ingest_pending(con: duckdb.DuckDBPyConnection, wd: Workdir, source: str, *, log=None) -> dict:
    """Load every pending batch of a source: crawl_log file + merge (a crawl batch as a snapshot,
    an ingested file accumulating). Returns counters."""
    merged = merged_batches(wd, source)
    outcomes: dict[str, int] = {}
    counters: dict = {"batches": [], "bodies_stored": 0}
    for batch in pending_batches(wd, source):
        counts = load_batch(con, batch)
        write_crawl_log(con, wd, batch)
        m = merge_batch(con, wd, batch, snapshot=is_crawl_batch(batch))
        merged.append(batch.crawl_id)
        _record_merged(wd, source, merged)
        for k, v in counts.items():
            outcomes[k] = outcomes.get(k, 0) + int(v)
        counters["batches"].append(batch.crawl_id)
        counters["bodies_stored"] += m["bodies_stored"]
        if log:
            log(f"{source}: merged batch {batch.crawl_id}: {sum(counts.values())} records, "
                f"{m['bodies_stored']} bodies stored, partition {m['pages_before']} -> {m['pages']} pages")
    counters["outcomes"] = outcomes
    return counters


def known_pages(con: duckdb.DuckDBPyConnection, wd: Workdir, source: str, out: Path,
                url_rewrite: tuple[str, str] | None = None) -> int:
    """Write the validators of a source's stored pages (for conditional requests) as gzip JSONL.

    ``url_rewrite`` = (recorded prefix, fetch prefix) maps recorded URLs to the URLs the crawl
    will request (e.g. the demo site's fixed base to the port it is served on now).
    """
    part = wd.raw_partition(source)
    if not part.exists():
        return 0
    url = "url"
    if url_rewrite:
        a, b = (sql_str(x) for x in url_rewrite)
        url = f"CASE WHEN starts_with(url, {a}) THEN {b} || substr(url, length({a}) + 1) ELSE url END"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    con.sql(
        f"COPY (SELECT {url} AS url, etag, last_modified, content_hash FROM read_parquet({sql_str(part)}) ORDER BY id) "
        f"TO {sql_str(tmp)} (FORMAT json, COMPRESSION gzip)"
    )
    os.replace(tmp, out)
    return int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(part)})").fetchall()[0][0])
