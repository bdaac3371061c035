"""Memory and time of one dedup shard task (``stages/dedup/shards.py``) against its band rows.

    python bench/dedup_shards.py --docs 100000,1000000 --memory-limit 1GB

For each size: a synthetic index folder (``--docs`` documents, 14 bands x 8 rows, random
signatures; 3 % of the documents share the band keys of another one, so that buckets and
candidate pairs exist) and one shard file holding every band row (the worst case: one shard), then
:func:`shard_edges` in a fresh process, timed, with its peak RSS (``VmHWM``) and the peak of a
process that only imports the same modules and opens the same DuckDB connection (the baseline).
Printed: band rows, seconds, peak RSS, and bytes per band row above the baseline, the figure
behind ``shards.BAND_ROW_BYTES``. Data in ``bench/out/dedup-shards/``.

    python bench/dedup_shards.py --exact --docs 1000000 --memory-limit 4GB

The same for the two rounds of an exact-duplicate shard task (``stages/dedup/exact.py``) holding
every slim row (id, content hash, a ~60-character URL key, kept flag; a third of the texts
repeated): bytes per row above the baseline, the figure behind ``exact.EXACT_ROW_BYTES``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BANDS, ROWS = 14, 8

# A task in a fresh process (``sys.argv[1]``: its fields as JSON; ``sys.argv[2]``: ``run``, or
# ``baseline``: the same imports and an empty connection). ``{setup}`` builds ``task``, ``{run}``
# sets ``out`` to what the task reports. VmHWM, not ru_maxrss: the latter starts from the
# parent's size at the fork.
CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
{setup}
t = time.perf_counter()
if sys.argv[2] == "run":
    {run}
else:
    import duckdb, numpy, pyarrow.parquet
    duckdb.connect(":memory:", config={{"memory_limit": task.memory_limit, "threads": 1}}).sql("SELECT 1").fetchall()
    out = {{}}
out["seconds"] = time.perf_counter() - t
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""
SHARD_TASK = ("from dataset_platform.stages.dedup import shards\ntask = shards.ShardTask(**json.loads(sys.argv[1]))",
              "r = shards.shard_edges(task); "
              "out = {'band_rows': r.band_rows, 'candidates': r.candidates, 'verified': r.verified}")
EXACT_TASK = ("from dataset_platform.stages.dedup import exact\ntask = exact.ExactTask(**json.loads(sys.argv[1]))",
              "out = {'rows': exact.rank_task(task)}")


def measure(kind: tuple[str, str], task: dict) -> tuple[dict, dict]:
    """(the task's report, the baseline's), each from a fresh process."""
    setup, run = kind
    code = CHILD.format(root=str(ROOT), setup=setup, run=run)
    res = {}
    for what in ("baseline", "run"):
        r = subprocess.run([sys.executable, "-c", code, json.dumps(task), what], capture_output=True, text=True,
                           check=True)
        res[what] = json.loads(r.stdout.strip().splitlines()[-1])
    return res["run"], res["baseline"]


def make(folder: Path, docs: int) -> Path:
    import duckdb
    import numpy as np

    from dataset_platform.stages.dedup.minhash import MinHashParams, band_keys

    shard = folder / "shard.parquet"
    if shard.exists():
        return shard
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    params = MinHashParams(bands=BANDS, rows=ROWS)
    sig = rng.integers(0, 2**61, size=(docs, params.permutations), dtype=np.uint64)
    twins = rng.choice(docs, size=docs * 3 // 100, replace=False)
    sig[twins, : params.permutations * 3 // 4] = sig[(twins + 1) % docs, : params.permutations * 3 // 4]
    np.save(folder / "part-00000.sig.npy", sig)
    keys = band_keys(sig, params)
    con = duckdb.connect()
    import pyarrow as pa

    n = docs * BANDS
    con.register("b", pa.table({
        "doc": pa.array(np.repeat(np.arange(docs, dtype=np.int32), BANDS)),
        "band": pa.array(np.tile(np.arange(BANDS, dtype=np.int16), docs)),
        "key": pa.array(keys.reshape(-1)),
        "part": pa.array(np.zeros(n, np.int32)),
        "row": pa.array(np.repeat(np.arange(docs, dtype=np.int32), BANDS)),
        "new": pa.array(np.ones(n, bool)),
    }))
    con.sql(f"COPY b TO '{shard}' (FORMAT parquet, COMPRESSION zstd)")
    return shard


def exact_rounds(docs: int, memory_limit: str) -> None:
    import duckdb

    folder = HERE / "out" / "dedup-shards" / f"exact-{docs}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    slim = folder / "slim.parquet"
    duckdb.sql(f"""
        COPY (SELECT left(md5(i::VARCHAR), 16) AS id, md5((i % {max(1, docs * 2 // 3)})::VARCHAR) AS content_hash,
                     'https://news' || (i % 97) || '.example.org/2026/11/' || md5(i::VARCHAR) AS _url_key,
                     i % 5 = 0 AS kept
              FROM range({docs}) t(i)) TO '{slim}' (FORMAT parquet, COMPRESSION zstd)""")
    rows = []
    for rnd, src, out in ((1, str(slim), str(folder / "by_url")),
                          (2, str(folder / "by_url" / "*" / "*.parquet"), str(folder / "ranked.parquet"))):
        task = {"round": rnd, "rows": src, "out": out, "shards": 1, "memory_limit": memory_limit, "threads": 1,
                "temp_dir": str(folder / "tmp")}
        run, base = measure(EXACT_TASK, task)
        rows.append((rnd, run["rows"], run["seconds"], run["peak_rss_mb"], base["peak_rss_mb"],
                     (run["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / max(run["rows"], 1)))
    print("\n| round | slim rows | seconds | peak RSS MB | baseline MB | bytes / row | memory_limit |\n"
          "|---|---|---|---|---|---|---|")
    for rnd, n, sec, peak, base, per in rows:
        print(f"| {rnd} | {n} | {sec:.2f} | {peak:.0f} | {base:.0f} | {per:.0f} | {memory_limit} |")
    print(f"\n(started {time.strftime('%Y-%m-%d %H:%M')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="100000,1000000")
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--exact", action="store_true", help="measure the exact-duplicate shard task's two rounds")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.exact:
        for docs in (int(d) for d in args.docs.split(",")):
            exact_rounds(docs, args.memory_limit)
        return
    rows = []
    for docs in (int(d) for d in args.docs.split(",")):
        folder = HERE / "out" / "dedup-shards" / str(docs)
        shard = make(folder, docs)
        task = {"shard": 0, "bands": str(shard), "out": str(folder / "edges.parquet"), "index": str(folder),
                "permutations": BANDS * ROWS, "threshold": 0.7, "memory_limit": args.memory_limit, "threads": 1,
                "temp_dir": str(folder / "tmp")}
        run, base = measure(SHARD_TASK, task)
        shutil.rmtree(folder / "tmp", ignore_errors=True)
        per_row = (run["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / max(run["band_rows"], 1)
        rows.append((docs, run["band_rows"], run["candidates"], run["verified"], run["seconds"], run["peak_rss_mb"],
                     base["peak_rss_mb"], per_row))
        print(f"docs {docs}: {run}", file=sys.stderr)
    print("\n| documents | band rows | candidate pairs | verified | seconds | peak RSS MB | baseline MB | "
          "bytes / band row | memory_limit |\n|---|---|---|---|---|---|---|---|---|")
    for d, br, c, v, s, p, b, per in rows:
        print(f"| {d} | {br} | {c} | {v} | {s:.2f} | {p:.0f} | {b:.0f} | {per:.0f} | {args.memory_limit} |")
    print(f"\n(started {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
