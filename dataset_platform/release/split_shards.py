"""The split's allocation in shards: ``split._allocate``, cut into bounded tasks.

Once the groups are known (``_split_members``: every document with its group's ``comp`` and
``group_key``), what is left is per group and per document: the groups' sizes and old members,
the quota fill in ``md5(salt:group_key)`` order, every document's split. It is cut by that order:
the shard of a group is ``floor(shards x bucket)``, ``bucket`` the first 60 bits of
``md5(salt:group_key)`` (``split.bucket_sql``), so each shard holds a whole stretch of the fill
order, and every member of a group lies in its group's shard.

1. one task per shard: its groups (``split.GROUPS_SQL``), and three small sums returned to the
   run's process: documents already placed (old, or members of an old group) per value and split,
   and new documents per stratum, of mixed and of single-valued groups;
2. in the run's process: the quotas from those sums (``split.quota_sql``, as the single query
   computes them) and, per shard and stratum, the new documents of the earlier shards: the
   offset of the shard's cumulative count. Then one task per shard fills its mixed new groups
   (``split.fill_sql`` with the offsets) and returns what they place per value and split (this
   round runs only when there are mixed new groups);
3. quotas of the single-valued groups (counting what round 2 placed), and one task per shard
   fills them and writes every document's split (``split.ASSIGN_SQL``).

A group's cumulative count is its shard's offset plus its running count within the shard: the
single query's window over the whole stratum, so every document gets the split the single query
gives it, for any number of shards (a test compares). No task holds more than its shard; the run's
process holds the sums (strata x shards). The files are on the path the release's spill folder is
on, which every worker reads and writes; a task run again rewrites its own file whole. The groups
themselves (connected components over the keys) are computed before, in the run's process, in
DuckDB rounds bounded by its memory limit (``stages/dedup/components.py``). Nothing here imports
Dagster or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from dataset_platform.config import SplitSettings
from dataset_platform.release.split import ASSIGN_SQL, GROUPS_SQL, bucket_sql, fill_sql, quota_sql
from dataset_platform.stages.dedup.shards import cut, task_connection
from dataset_platform.storage import scratch, sql_str, task_memory_limit

#: bytes a document takes in a task's DuckDB (its members row, its group's row, the fill's window);
#: a shard holds at most ``memory / SPLIT_ROW_BYTES`` documents. ``bench/split.py --task``: 1M
#: documents in one task peaked 207-209 bytes a document above the baseline process in round 1,
#: 172-177 in round 3 (two runs)
SPLIT_ROW_BYTES = 256

_NEW = pa.schema([("comp", pa.int64()), ("split", pa.string())])


@dataclass(frozen=True)
class SplitTask:
    """One shard's task of a round: ``members`` its documents (a glob of Parquet files),
    ``folder`` where the rounds' files of every shard are. ``quotas`` (stratum, q_train,
    q_validation) and ``offsets`` (stratum, offset) for rounds 2 and 3."""

    round: int
    shard: int
    members: str
    folder: str
    settings: SplitSettings
    quotas: tuple = ()
    offsets: tuple = ()
    memory_limit: str = "1GB"
    threads: int = 1
    temp_dir: str | None = field(default=None)

    def file(self, name: str) -> Path:
        return Path(self.folder) / f"{name}-{self.shard}.parquet"


def shard_count(rows: int, memory_bytes: int, min_tasks: int = 1) -> int:
    """Shards for ``rows`` documents so that one shard fits a task's memory (at least ``min_tasks``)."""
    return cut(rows, memory_bytes, SPLIT_ROW_BYTES, min_tasks)


def split_task(task: SplitTask) -> list[tuple]:
    """One task of a round (see the module docstring); returns its sums: round 1 (kind, stratum,
    split, n) with kind ``placed`` (split set) or ``mixed`` / ``single`` (split NULL: new documents
    of such groups); rounds 2 and 3 (stratum, split, n): the documents the round placed, per value."""
    con = task_connection(task.memory_limit, task.threads, task.temp_dir)
    try:
        members = f"read_parquet({sql_str(task.members)})"
        groups = f"read_parquet({sql_str(task.file('groups'))})"
        if task.round == 1:
            _write(con, GROUPS_SQL.format(members=members), task.file("groups"))
            return [tuple(r) for r in con.sql(f"""
                SELECT 'placed', m.value, coalesce(m.prev_split, g.joined), count(*)
                FROM {members} m JOIN {groups} g USING (comp) WHERE g.joined IS NOT NULL GROUP BY ALL
                UNION ALL
                SELECT CASE WHEN mixed THEN 'mixed' ELSE 'single' END, stratum, NULL, sum(size)
                FROM {groups} WHERE joined IS NULL GROUP BY ALL
                ORDER BY ALL
            """).fetchall()]
        con.register("_q", pa.table({"stratum": pa.array([q[0] for q in task.quotas], pa.string()),
                                     "q_train": pa.array([q[1] for q in task.quotas], pa.float64()),
                                     "q_validation": pa.array([q[2] for q in task.quotas], pa.float64())}))
        con.register("_o", pa.table({"stratum": pa.array([o[0] for o in task.offsets], pa.string()),
                                     "offset": pa.array([int(o[1]) for o in task.offsets], pa.int64())}))
        which = "mixed" if task.round == 2 else "NOT mixed"
        con.sql(f"CREATE TABLE _new AS {fill_sql(task.settings, groups, which, 'SELECT * FROM _q', 'SELECT * FROM _o')}")
        placed = [tuple(r) for r in con.sql(f"""
            SELECT m.value, n.split, count(*) FROM {members} m JOIN _new n USING (comp) GROUP BY ALL ORDER BY ALL
        """).fetchall()]
        if task.round == 2:
            _write(con, "SELECT * FROM _new", task.file("mixed"))
            return placed
        mixed = task.file("mixed")
        if mixed.exists():
            con.sql(f"INSERT INTO _new SELECT comp, split FROM read_parquet({sql_str(mixed)})")
        _write(con, ASSIGN_SQL.format(members=members, groups=groups, new="_new"), task.file("assign"))
        return placed
    finally:
        con.close()


def _write(con: duckdb.DuckDBPyConnection, query: str, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    con.sql(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd)")
    tmp.replace(out)  # (a retried task writes the same file again)


def allocate_in_shards(con: duckdb.DuckDBPyConnection, settings: SplitSettings, folder: Path, tasks,
                       log=None) -> int:
    """``CREATE TABLE _split_assign`` from ``_split_members`` and ``_split_outside_counts`` as
    ``split._allocate`` does, its work run as shard tasks with ``tasks`` (``stages.base.Tasks``).
    Returns the number of shards."""
    n = int(con.sql("SELECT count(*) FROM _split_members").fetchall()[0][0])
    shards = shard_count(n, tasks.memory_bytes, tasks.min_tasks)
    memory = task_memory_limit(tasks.memory_bytes)
    with scratch(folder):
        bucket = bucket_sql("group_key", settings.salt)
        con.sql(f"""
            COPY (SELECT *, least({shards - 1}, floor({bucket} * {shards}))::INTEGER AS shard FROM _split_members)
            TO {sql_str(folder / 'members')} (FORMAT parquet, PARTITION_BY (shard), COMPRESSION zstd)
        """)
        present = sorted(int(d.name.split("=", 1)[1]) for d in (folder / "members").glob("shard=*"))

        def task(rnd: int, s: int, quotas: tuple = (), offsets: tuple = ()) -> SplitTask:
            return SplitTask(rnd, s, str(folder / "members" / f"shard={s}" / "*.parquet"), str(folder), settings,
                             quotas, offsets, memory, tasks.threads, str(folder / f"tmp-{rnd}-{s}"))

        sums = list(tasks.run(split_task, [task(1, s) for s in present]))
        con.register("_sums", pa.table({
            "shard": pa.array([s for s, rows in zip(present, sums, strict=True) for _ in rows], pa.int32()),
            "kind": pa.array([r[0] for rows in sums for r in rows], pa.string()),
            "stratum": pa.array([r[1] for rows in sums for r in rows], pa.string()),
            "split": pa.array([r[2] for rows in sums for r in rows], pa.string()),
            "n": pa.array([int(r[3]) for rows in sums for r in rows], pa.int64()),
        }))
        con.sql("CREATE OR REPLACE TEMP TABLE _split_sums AS SELECT * FROM _sums")
        con.unregister("_sums")
        placed = "SELECT stratum, split, n FROM _split_sums WHERE kind = 'placed'"
        rounds = 1
        if con.sql("SELECT count(*) FROM _split_sums WHERE kind = 'mixed'").fetchall()[0][0]:
            # the mixed new groups, at the plain ratios (nothing counts as placed)
            quotas = _quotas(con, settings, "SELECT NULL::VARCHAR AS stratum, NULL::VARCHAR AS split, 0 AS n WHERE false", "mixed")
            offsets = _offsets(con, "mixed")
            got = list(tasks.run(split_task, [task(2, s, quotas, offsets.get(s, ())) for s in present]))
            rounds += 1
            _add_sums(con, got)
            placed += " UNION ALL SELECT stratum, split, n FROM _split_sums WHERE kind = 'filled'"
        # the single-valued ones make up for everything placed (and outside the region, by difference)
        placed += " UNION ALL SELECT stratum, split, n FROM _split_outside_counts"
        quotas, offsets = _quotas(con, settings, placed, "single"), _offsets(con, "single")
        list(tasks.run(split_task, [task(3, s, quotas, offsets.get(s, ())) for s in present]))
        rounds += 1
        files = "[" + ", ".join(sql_str(task(3, s).file("assign")) for s in present) + "]"
        con.sql(f"CREATE OR REPLACE TABLE _split_assign AS SELECT * FROM read_parquet({files})" if present else
                "CREATE OR REPLACE TABLE _split_assign (id VARCHAR, comp BIGINT, split VARCHAR, group_key VARCHAR, "
                "prev_split VARCHAR, value VARCHAR)")
        con.sql("DROP TABLE _split_sums")
        if log:
            log(f"split: {n} documents allocated in {len(present)} shard(s), {rounds} round(s) of tasks "
                f"({tasks.where})")
    return shards


def _quotas(con: duckdb.DuckDBPyConnection, settings: SplitSettings, placed: str, kind: str) -> tuple:
    new = f"SELECT stratum, sum(n)::DOUBLE AS n FROM _split_sums WHERE kind = '{kind}' GROUP BY stratum"
    return tuple(tuple(r) for r in con.sql(quota_sql(settings, placed, new) + " ORDER BY ALL").fetchall())


def _offsets(con: duckdb.DuckDBPyConnection, kind: str) -> dict[int, tuple]:
    """Per shard, (stratum, new documents of ``kind`` groups of that stratum in earlier shards)."""
    rows = con.sql(f"""
        SELECT shard, stratum, coalesce(sum(n) OVER (PARTITION BY stratum ORDER BY shard
                                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
        FROM (SELECT shard, stratum, sum(n) AS n FROM _split_sums WHERE kind = '{kind}' GROUP BY ALL)
        ORDER BY ALL
    """).fetchall()
    out: dict[int, list] = {}
    for shard, stratum, offset in rows:
        out.setdefault(int(shard), []).append((stratum, int(offset)))
    return {s: tuple(v) for s, v in out.items()}


def _add_sums(con: duckdb.DuckDBPyConnection, got: list[list[tuple]]) -> None:
    rows = [r for rs in got for r in rs]
    con.register("_filled", pa.table({"stratum": pa.array([r[0] for r in rows], pa.string()),
                                      "split": pa.array([r[1] for r in rows], pa.string()),
                                      "n": pa.array([int(r[2]) for r in rows], pa.int64())}))
    con.sql("INSERT INTO _split_sums SELECT NULL, 'filled', stratum, split, n FROM _filled")
    con.unregister("_filled")
