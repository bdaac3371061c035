"""Loading landed crawl batches (gzip JSONL, one object per response) into the raw layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.storage import sql_str

# The JSON keys a crawl batch line carries (see crawlers/items.py), with their types.
BATCH_COLUMNS = {
    "url": "VARCHAR",
    "fetch_url": "VARCHAR",
    "status": "INTEGER",
    "content_type": "VARCHAR",
    "charset": "VARCHAR",
    "fetched_at": "VARCHAR",
    "depth": "INTEGER",
    "referer": "VARCHAR",
    "body_bytes": "BIGINT",
    "html": "VARCHAR",
}

ID_SQL = "left(md5({source} || ' ' || {url}), 16)"


@dataclass(frozen=True)
class Batch:
    source: str
    crawl_id: str
    path: Path


def doc_id_sql(source_sql: str, url_sql: str) -> str:
    """SQL for a document id: 16 hex chars of md5(source + ' ' + url)."""
    return ID_SQL.format(source=source_sql, url=url_sql)


def load_batches(con: duckdb.DuckDBPyConnection, batches: list[Batch]) -> dict[str, int]:
    """Leaves table ``raw`` with the raw_pages columns; returns counters.

    A URL fetched twice within the loaded batches (e.g. reached through two redirects) is one
    page: the earliest fetch is kept and the others are counted as ``duplicate_fetches``.
    """
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in BATCH_COLUMNS.items()) + "}"
    parts = []
    for b in batches:
        parts.append(
            f"SELECT {sql_str(b.source)} AS source, {sql_str(b.crawl_id)} AS crawl_id, * "
            f"FROM read_json({sql_str(b.path)}, format = 'newline_delimited', columns = {columns}, "
            "compression = 'gzip')"
        )
    if not parts:
        raise ValueError("no crawl batches to load")
    con.sql(f"CREATE OR REPLACE TABLE _landed AS {' UNION ALL '.join(parts)}")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE raw AS
        SELECT {doc_id_sql('source', 'url')} AS id, source, crawl_id, url, fetch_url, status,
               lower(coalesce(content_type, '')) AS content_type, charset,
               CAST(fetched_at AS TIMESTAMPTZ) AS fetched_at, depth, referer, body_bytes, html
        FROM _landed
        QUALIFY row_number() OVER (PARTITION BY source, url ORDER BY fetched_at, fetch_url) = 1
        ORDER BY id
        """
    )
    landed = con.sql("SELECT count(*) FROM _landed").fetchall()[0][0]
    kept = con.sql("SELECT count(*) FROM raw").fetchall()[0][0]
    return {"responses": int(landed), "pages": int(kept), "duplicate_fetches": int(landed - kept)}
