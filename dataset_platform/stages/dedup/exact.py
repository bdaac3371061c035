"""Exact duplicates in shards: the ranking of ``stage.RANKED_SQL``, cut into bounded tasks.

``RANKED_SQL`` ranks every document twice: within the group of its normalised text (the group's
keeper: the document kept before, then the lowest URL, then the lowest id), then within the group
of its URL. Each ranking is a window over one kind of group, so it can be cut by that group:

1. the slim rows (id, content hash, URL key, kept before) are hash-partitioned by content hash
   into shard files; one task per shard ranks its text groups (``hash_keeper``, ``hash_rank``)
   and writes its rows partitioned again, by URL key;
2. one task per URL shard reads what every first-round task wrote for it and ranks its URL groups
   (``keeper_id``, ``url_rank``).

Every group lies wholly in one shard of its round, so the ranks are those of the whole table for
any number of shards (a test compares), and no task holds more than its shard. The shard of a
value is taken from its md5 (the same in every process and DuckDB version). The files are on the
path the MinHash index is on, which every worker reads and writes; a task that is run again
rewrites its own files whole. Nothing here imports Dagster or Ray.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.stages.dedup.shards import cut, task_connection
from dataset_platform.storage import scratch, sql_str, task_memory_limit

#: bytes a slim row takes in a task's DuckDB while its groups are windowed (id, content hash, URL
#: key, flags and the window's state); a shard holds at most ``memory / EXACT_ROW_BYTES`` rows.
#: ``bench/dedup_shards.py --exact``: 1M rows with ~60-character URL keys in one task peaked 374-407
#: MB above the baseline process (392-427 bytes a row, two runs) in the first round, 199-217 MB in
#: the second
EXACT_ROW_BYTES = 448


@dataclass(frozen=True)
class ExactTask:
    """One task of a round: read ``rows`` (a glob of Parquet files), write to ``out`` (round 1: a
    folder of files partitioned by URL shard, ``shards`` of them; round 2: one file)."""

    round: int
    rows: str
    out: str
    shards: int
    memory_limit: str = "1GB"
    threads: int = 1
    temp_dir: str | None = None


ROUND_1 = """
    SELECT id, _url_key, first_value(id) OVER w AS hash_keeper, row_number() OVER w AS hash_rank,
           (md5_number_upper(_url_key) % {shards})::INTEGER AS url_shard
    FROM read_parquet({rows})
    WINDOW w AS (PARTITION BY content_hash ORDER BY kept DESC, _url_key, id)
"""
ROUND_2 = """
    SELECT id, hash_keeper, hash_rank, first_value(hash_keeper) OVER w AS keeper_id,
           row_number() OVER w AS url_rank
    FROM read_parquet({rows})
    WINDOW w AS (PARTITION BY _url_key ORDER BY hash_rank, id)
    ORDER BY id
"""


def shard_count(rows: int, memory_bytes: int, min_tasks: int = 1) -> int:
    """Shards for ``rows`` slim rows so that one shard fits a task's memory (at least ``min_tasks``)."""
    return cut(rows, memory_bytes, EXACT_ROW_BYTES, min_tasks)


def rank_task(task: ExactTask) -> int:
    """One task of a round (see the module docstring); returns the rows it wrote."""
    con = task_connection(task.memory_limit, task.threads, task.temp_dir)
    try:
        rows = int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(task.rows)})").fetchall()[0][0])
        out = Path(task.out)
        out.parent.mkdir(parents=True, exist_ok=True)  # (DuckDB creates the last folder only)
        if task.round == 1:
            shutil.rmtree(out, ignore_errors=True)  # (a task run again rewrites its files whole)
            con.sql(f"COPY ({ROUND_1.format(rows=sql_str(task.rows), shards=int(task.shards))}) TO {sql_str(out)} "
                    "(FORMAT parquet, PARTITION_BY (url_shard), COMPRESSION zstd)")
        else:
            tmp = out.with_name(out.name + ".tmp")
            con.sql(f"COPY ({ROUND_2.format(rows=sql_str(task.rows))}) TO {sql_str(tmp)} "
                    "(FORMAT parquet, COMPRESSION zstd)")
            tmp.replace(out)
        return rows
    finally:
        con.close()


def rank_in_shards(con: duckdb.DuckDBPyConnection, meta: str, table: str, folder: Path, tasks, log=None) -> int:
    """``CREATE TABLE {table}`` with the columns and rows ``RANKED_SQL`` gives over ``meta`` (a
    table with pos, id, content_hash and _url_key, ids unique; ``_index_docs`` holds the ids kept
    before), its two rankings computed by shard tasks run with ``tasks`` (``stages.base.Tasks``),
    in ``pos`` order. Returns the number of shards of a round."""
    n = int(con.sql(f"SELECT count(*) FROM {meta}").fetchall()[0][0])
    shards = shard_count(n, tasks.memory_bytes, tasks.min_tasks)
    memory = task_memory_limit(tasks.memory_bytes)
    with scratch(folder):
        con.sql(f"""
            COPY (SELECT m.id, m.content_hash, m._url_key, coalesce(p.kept, FALSE) AS kept,
                         coalesce(md5_number_upper(m.content_hash) % {shards}, 0)::INTEGER AS text_shard
                  FROM {meta} m LEFT JOIN _index_docs p ON p.id = m.id)
            TO {sql_str(folder / 'slim')} (FORMAT parquet, PARTITION_BY (text_shard), COMPRESSION zstd)
        """)
        first = [ExactTask(1, str(d / "*.parquet"), str(folder / "by_url" / d.name), shards, memory, tasks.threads,
                           str(folder / f"tmp-1-{d.name}"))
                 for d in sorted((folder / "slim").glob("text_shard=*"), key=_shard_number)]
        sum(tasks.run(rank_task, first))
        second = [ExactTask(2, str(folder / "by_url" / "*" / f"url_shard={k}" / "*.parquet"),
                            str(folder / f"ranked-{k}.parquet"), shards, memory, tasks.threads,
                            str(folder / f"tmp-2-{k}"))
                  for k in range(shards) if any((folder / "by_url").glob(f"*/url_shard={k}"))]
        sum(tasks.run(rank_task, second))
        ranked = "[" + ", ".join(sql_str(t.out) for t in second) + "]"
        con.sql(f"""
            CREATE OR REPLACE TABLE {table} AS
            SELECT m.*, r.hash_keeper, r.hash_rank, r.keeper_id, r.url_rank,
                   CASE WHEN r.hash_rank > 1 THEN 'content' WHEN r.url_rank > 1 THEN 'url' END AS dup_by
            FROM {meta} m JOIN read_parquet({ranked}) r ON r.id = m.id
            ORDER BY m.pos
        """ if second else f"""
            CREATE OR REPLACE TABLE {table} AS
            SELECT m.*, NULL::VARCHAR AS hash_keeper, NULL::BIGINT AS hash_rank, NULL::VARCHAR AS keeper_id,
                   NULL::BIGINT AS url_rank, NULL::VARCHAR AS dup_by
            FROM {meta} m WHERE false
        """)
        if log:
            log(f"dedup: exact duplicates ranked in {len(first)} + {len(second)} shard task(s) ({tasks.where})")
    return shards


def _shard_number(d: Path) -> int:
    return int(d.name.split("=", 1)[1])
