"""Split assignment at scale: groups, stratified quotas, then a refresh against the assignments.

    python bench/split.py --docs 1000000 [--refresh 0.2]

Documents are generated in DuckDB (no texts: splitting reads only keys and the label): id, a URL
(5 % of URLs shared by two documents), a content hash shared by clusters of 1-5 documents, and a
topic with uneven shares (45/25/15/10/5 %). ``assign_splits`` runs with the default settings plus
``stratify_by: topic``; then ``--refresh`` times more documents are added and it runs again with
the first run's assignments. Each run is timed on its own; peak memory is the process's VmHWM
(it includes the generated table). Prints Markdown rows.

    python bench/split.py --task --docs 1000000 --memory-limit 4GB

One shard task of the split's allocation (``release/split_shards.py``) holding every document
(the worst case: one shard), rounds 1 and 3, each in a fresh process (``bench/dedup_shards.py``'s
child), with its peak RSS above a process with the same imports and an empty connection: the
bytes per document behind ``split_shards.SPLIT_ROW_BYTES``.

    python bench/split.py --components --docs 1000000 --memory-limit 4GB

The graph of those documents' groups (documents and their URL and cluster keys) joined by
``components_in_shards`` (``stages/dedup/components.py``) in ONE shard, each wave's task in a fresh
process: the bytes per edge behind ``components.EDGE_BYTES``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import machine, vm_hwm_mb

from dataset_platform.config import SplitSettings
from dataset_platform.release.split import assign_splits
from dataset_platform.storage import memory_connection


def _docs(con, table: str, start: int, n: int) -> None:
    con.sql(f"""
        CREATE OR REPLACE TABLE {table} AS
        SELECT printf('%016x', i) AS id,
               'https://site' || (i % 997) || '.test/a/' || CASE WHEN i % 20 = 0 THEN i - 1 ELSE i END AS url,
               md5('cluster' || (i // (1 + i % 5))) AS content_hash,
               CASE WHEN i % 20 < 9 THEN 'a' WHEN i % 20 < 14 THEN 'b' WHEN i % 20 < 17 THEN 'c'
                    WHEN i % 20 < 19 THEN 'd' ELSE 'e' END AS topic
        FROM range({start}, {start + n}) t(i)
    """)


SPLIT_TASK = ("from dataset_platform.config import SplitSettings\n"
              "from dataset_platform.release import split_shards\n"
              "f = json.loads(sys.argv[1]); f['settings'] = SplitSettings(**f['settings'])\n"
              "f['quotas'] = tuple(map(tuple, f['quotas'])); f['offsets'] = tuple(map(tuple, f['offsets']))\n"
              "task = split_shards.SplitTask(**f)",
              "out = {'sums': len(split_shards.split_task(task))}")


def task_memory(docs: int, memory_limit: str) -> None:
    """Rounds 1 and 3 of one split shard task over every document (see the module docstring)."""
    import shutil

    from dedup_shards import measure

    from dataset_platform.release import split as S
    from dataset_platform.release import split_shards

    settings = SplitSettings(stratify_by="topic")
    folder = HERE / "out" / "split-task" / str(docs)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "members").mkdir(parents=True)
    con = memory_connection()
    _docs(con, "docs", 0, docs)
    S._load_previous(con, None)
    con.sql("CREATE TABLE _split_outside_counts (stratum VARCHAR, split VARCHAR, n BIGINT)")
    S._slim(con, "docs", settings, "content_hash")
    S._components(con, settings)
    con.sql(f"COPY _split_members TO '{folder / 'members' / 'm.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
    quotas = con.sql(S.quota_sql(settings, "SELECT NULL::VARCHAR AS stratum, NULL::VARCHAR AS split, 0 AS n WHERE false",
                                 f"SELECT stratum, sum(size)::DOUBLE AS n FROM ({S.GROUPS_SQL.format(members='_split_members')}) "
                                 "WHERE NOT mixed GROUP BY ALL")).fetchall()
    con.close()
    rows = []
    for rnd in (1, 3):
        task = {"round": rnd, "shard": 0, "members": str(folder / "members" / "*.parquet"), "folder": str(folder),
                "settings": settings.model_dump(), "quotas": quotas if rnd == 3 else [], "offsets": [],
                "memory_limit": memory_limit, "threads": 1, "temp_dir": str(folder / "tmp")}
        run, base = measure(SPLIT_TASK, task)
        rows.append((rnd, run["seconds"], run["peak_rss_mb"], base["peak_rss_mb"],
                     (run["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / docs))
    print(f"machine: {machine()}")
    print("| round | documents | seconds | peak RSS MB | baseline MB | bytes / document | memory_limit |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for rnd, sec, peak, base, per in rows:
        print(f"| {rnd} | {docs} | {sec:.2f} | {peak:.0f} | {base:.0f} | {per:.0f} | {memory_limit} |")
    print(f"(SPLIT_ROW_BYTES = {split_shards.SPLIT_ROW_BYTES}; started {time.strftime('%Y-%m-%d %H:%M')})")


WAVE_TASK = ("from dataset_platform.stages.dedup import components\n"
             "task = components.WaveTask(**json.loads(sys.argv[1]))",
             "out = {'changed': components.wave_task(task)}")


def components_memory(docs: int, memory_limit: str) -> None:
    """The split's graph of ``docs`` documents joined by ``components_in_shards`` in ONE shard,
    every wave task in a fresh process with its peak RSS above the baseline (see the docstring)."""
    import dataclasses
    import shutil

    from dedup_shards import measure

    from dataset_platform.release import split as S
    from dataset_platform.stages.base import Tasks
    from dataset_platform.stages.dedup import components

    settings = SplitSettings(stratify_by="topic")
    folder = HERE / "out" / "split-components" / str(docs)
    shutil.rmtree(folder, ignore_errors=True)
    con = memory_connection()
    _docs(con, "docs", 0, docs)
    S._load_previous(con, None)
    S._slim(con, "docs", settings, "content_hash")
    S._components(con, settings)  # (the edges: ``_split_edges``; its components here are not used)
    edges = con.sql("SELECT count(*) FROM _split_edges").fetchall()[0][0]
    peaks: dict[int, list] = {}

    def run(fn, items):
        for item in items:
            r, base = measure(WAVE_TASK, dataclasses.asdict(dataclasses.replace(item, memory_limit=memory_limit)))
            peaks.setdefault(item.wave, []).append((r["seconds"], r["peak_rss_mb"], base["peak_rss_mb"]))
            yield r["changed"]

    tasks = Tasks(memory_bytes=10**12, threads=1, run=run, where="bench")
    t0 = time.perf_counter()
    rounds = components.components_in_shards(con, f"SELECT doc AS a, k + {docs} AS b FROM _split_edges", "cc",
                                             folder, tasks)
    wall = time.perf_counter() - t0
    print(f"machine: {machine()}")
    print(f"{docs} documents, {edges} edges, {rounds} rounds, {wall:.1f} s in all (each task a fresh process)")
    print("| wave | tasks | seconds (max) | peak RSS MB (max) | baseline MB | bytes / edge above the baseline |\n"
          "|---:|---:|---:|---:|---:|---:|")
    for w, rows in sorted(peaks.items()):
        sec, peak, base = max(r[0] for r in rows), max(r[1] for r in rows), min(r[2] for r in rows)
        print(f"| {w} | {len(rows)} | {sec:.2f} | {peak:.0f} | {base:.0f} | {(peak - base) * 2**20 / edges:.0f} |")
    print(f"(EDGE_BYTES = {components.EDGE_BYTES}; memory_limit {memory_limit}; "
          f"started {time.strftime('%Y-%m-%d %H:%M')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--refresh", type=float, default=0.2, help="documents added by the refresh, as a share")
    ap.add_argument("--task", action="store_true", help="measure one split shard task's memory instead")
    ap.add_argument("--components", action="store_true",
                    help="measure the memory of the component waves' tasks on the split's graph instead")
    ap.add_argument("--memory-limit", default="4GB", help="(--task, --components) the task's DuckDB memory limit")
    args = ap.parse_args()
    if args.components:
        components_memory(args.docs, args.memory_limit)
        return
    if args.task:
        task_memory(args.docs, args.memory_limit)
        return
    settings = SplitSettings(stratify_by="topic")
    con = memory_connection()
    _docs(con, "docs", 0, args.docs)
    t0 = time.perf_counter()
    first = assign_splits(con, "docs", settings)
    t_first = time.perf_counter() - t0
    con.sql("CREATE TABLE prev AS SELECT id, split FROM split_assignments")
    con.sql("CREATE TABLE old AS SELECT id, split FROM split_docs")
    extra = int(args.docs * args.refresh)
    _docs(con, "more", args.docs, extra)
    con.sql("INSERT INTO docs SELECT * FROM more")
    t0 = time.perf_counter()
    second = assign_splits(con, "docs", settings, previous_sql="prev")
    t_second = time.perf_counter() - t0
    (moved,), = con.sql("SELECT count(*) FROM old o JOIN split_docs d USING (id) WHERE o.split <> d.split").fetchall()
    peak = vm_hwm_mb()
    print(f"machine: {machine()}")
    print("| run | command | documents | seconds | docs/s | groups | largest share deviation | old documents moved | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cmd = f"`python bench/split.py --docs {args.docs} --refresh {args.refresh}`"
    print(f"| first | {cmd} | {args.docs} | {t_first:.2f} | {args.docs / t_first:,.0f} | {first.groups} | "
          f"{first.max_share_deviation:.1e} | - | {peak:.0f} |")
    print(f"| refresh (+{extra}) | {cmd} | {args.docs + extra} | {t_second:.2f} | {(args.docs + extra) / t_second:,.0f} | "
          f"{second.groups} | {second.max_share_deviation:.1e} | {moved} | {peak:.0f} |")


if __name__ == "__main__":
    main()
