"""Exact deduplication, set-based in DuckDB.

Two documents are exact duplicates when their text is equal after lower-casing and folding
runs of whitespace (``content_hash``), or when they share a URL. In each group one keeper is
chosen deterministically (lowest URL, then lowest id); every other member is dropped, recorded
in ``duplicate_clusters`` (who was dropped for whom) and in ``rejected`` with rule
``exact_duplicate`` and the keeper's id as value.
"""

from __future__ import annotations

import duckdb

from dataset_platform.core.stage import StageResult, finish_stage

STAGE = "dedup"
CONTENT_HASH_SQL = "md5(lower(regexp_replace(trim(text), '\\s+', ' ', 'g')))"


def run_dedup(con: duckdb.DuckDBPyConnection, cleaned_sql: str) -> StageResult:
    """Leaves ``kept``, ``rejected`` and ``clusters`` on ``con``.

    ``cleaned_sql`` is FROM-able with at least id and text (url optional).
    """
    con.sql(f"CREATE OR REPLACE TABLE _in AS SELECT * FROM {cleaned_sql}")
    cols = {r[0] for r in con.sql("DESCRIBE _in").fetchall()}
    for col in ("source", "url"):
        if col not in cols:
            con.sql(f"ALTER TABLE _in ADD COLUMN {col} VARCHAR")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _hashed AS
        SELECT *, {CONTENT_HASH_SQL} AS content_hash,
               coalesce(url, id) AS _url_key
        FROM _in
        """
    )
    # Group by content hash, then merge groups that share a URL (a URL seen twice, e.g. in two
    # sources, is one document). Keeper: lowest URL, then lowest id - stable across runs.
    con.sql(
        """
        CREATE OR REPLACE TABLE _ranked AS
        WITH by_hash AS (
          SELECT *, first_value(id) OVER w AS hash_keeper,
                    row_number() OVER w AS hash_rank
          FROM _hashed
          WINDOW w AS (PARTITION BY content_hash ORDER BY _url_key, id)
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
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE kept AS
        SELECT * EXCLUDE (_url_key, hash_keeper, hash_rank, keeper_id, url_rank, dup_by)
        FROM _ranked WHERE dup_by IS NULL ORDER BY id
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE clusters AS
        SELECT r.content_hash AS cluster_id, r.id AS doc_id,
               CASE WHEN r.dup_by = 'content' THEN r.hash_keeper ELSE r.keeper_id END AS keeper_id,
               1.0 AS similarity, 'exact' AS kind
        FROM _ranked r WHERE r.dup_by IS NOT NULL ORDER BY doc_id
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT r.id, r.source, r.url, '{STAGE}' AS stage,
               CASE WHEN r.dup_by = 'content' THEN 'exact_duplicate' ELSE 'duplicate_url' END AS rule,
               c.keeper_id AS value
        FROM _ranked r JOIN clusters c ON c.doc_id = r.id ORDER BY r.id
        """
    )
    n = con.sql("SELECT count(*) FROM _in").fetchall()[0][0]
    result = finish_stage(con, STAGE, input_rows=n)
    result.extra["clusters"] = con.sql("SELECT count(DISTINCT cluster_id) FROM clusters").fetchall()[0][0]
    return result
