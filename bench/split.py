"""Split assignment at scale: groups, stratified quotas, then a refresh against the assignments.

    python bench/split.py --docs 1000000 [--refresh 0.2]

Documents are generated in DuckDB (no texts: splitting reads only keys and the label): id, a URL
(5 % of URLs shared by two documents), a content hash shared by clusters of 1-5 documents, and a
topic with uneven shares (45/25/15/10/5 %). ``assign_splits`` runs with the default settings plus
``stratify_by: topic``; then ``--refresh`` times more documents are added and it runs again with
the first run's assignments. Each run is timed on its own; peak memory is the process's VmHWM
(it includes the generated table). Prints Markdown rows.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--refresh", type=float, default=0.2, help="documents added by the refresh, as a share")
    args = ap.parse_args()
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
