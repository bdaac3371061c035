"""Deterministic train/validation/test assignment.

A document's split depends only on a stable hash of its group key (the URL) and the configured
salt and ratios: the same document lands in the same split on every run, on every machine and
across DuckDB upgrades (md5 over UTF-8 bytes is a defined function; DuckDB's ``hash()`` is not).
"""

from __future__ import annotations

import duckdb

from dataset_platform.config import SplitSettings
from dataset_platform.storage import sql_str

# 60 bits of md5 as an integer, scaled to [0, 1)
_BUCKET = "CAST(('0x' || left(md5({salt} || ':' || {key}), 15)) AS UBIGINT) / 1152921504606846976.0"


def bucket_sql(key_sql: str, salt: str) -> str:
    """SQL for a uniform value in [0, 1) derived from ``key_sql``."""
    return _BUCKET.format(salt=sql_str(salt), key=key_sql)


def split_case_sql(key_sql: str, settings: SplitSettings) -> str:
    """SQL CASE expression giving 'train' | 'validation' | 'test' for ``key_sql``."""
    b = bucket_sql(key_sql, settings.salt)
    t = settings.train
    v = settings.train + settings.validation
    return f"CASE WHEN {b} < {t!r} THEN 'train' WHEN {b} < {v!r} THEN 'validation' ELSE 'test' END"


def assign_splits(con: duckdb.DuckDBPyConnection, docs_sql: str, settings: SplitSettings) -> None:
    """Leaves table ``split_docs``: the input columns plus ``split``, ordered by id."""
    con.sql(
        f"""
        CREATE OR REPLACE TABLE split_docs AS
        SELECT *, {split_case_sql("coalesce(url, id)", settings)} AS split
        FROM {docs_sql}
        ORDER BY id
        """
    )
