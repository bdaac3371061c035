"""Stage throughput benchmark: synthetic pages through extract -> clean -> dedup -> label.

    python bench/run.py --docs 20000            # generate (cached) and time every stage
    python bench/run.py --docs 20000 --stages clean,dedup

Each stage runs in its own child process (the same library code the assets call, on Parquet
files), so the peak memory printed is that stage's alone (the child's max RSS, from the OS).
Prints one Markdown row per stage for BENCHMARKS.md. Inputs and outputs go to bench/out/
(git-ignored). The generated pages are deterministic (fixed seed) and written by this script;
about 1 in 10 is an exact copy of another, 1 in 20 too short, so every rule has work to do.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import VOCAB, machine, page  # bench/common.py (the script folder is on sys.path)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
STAGES = ("extract", "clean", "dedup", "label")



def generate(n: int) -> Path:
    """``bench/out/pages-<n>.parquet`` with the raw_pages columns (cached)."""
    import duckdb
    import pyarrow as pa

    path = OUT / f"pages-{n}.parquet"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    htmls: list[str] = []
    for i in range(n):
        if i % 20 == 19:
            htmls.append(f"<html><body><p>Short page {i}.</p></body></html>")
        elif i % 10 == 9 and i > 10:
            htmls.append(htmls[rng.randrange(0, i - 1)])
        else:
            htmls.append(page(rng, i))
    table = pa.table({
        "id": [f"{i:016x}" for i in range(n)],
        "source": ["bench"] * n,
        "crawl_id": ["bench-1"] * n,
        "url": [f"http://bench.localhost/p/{i}" for i in range(n)],
        "status": pa.array([200] * n, pa.int32()),
        "content_type": ["text/html"] * n,
        "html": htmls,
    })
    con = duckdb.connect()
    con.register("t", table)
    tmp = path.with_suffix(".tmp")
    con.sql(f"COPY t TO '{tmp}' (FORMAT parquet)")
    os.replace(tmp, path)
    return path


def _stage_child(stage: str, inp: str, out: str) -> None:
    """Run one stage on a Parquet file (in this process) and print its figures as JSON."""
    from dataset_platform.config import CleanSettings, LabelRule, LabelSet, LabelSettings
    from dataset_platform.stages.clean.stage import run_clean
    from dataset_platform.stages.dedup.stage import run_dedup
    from dataset_platform.stages.extract import run_extract
    from dataset_platform.stages.label.stage import run_label
    from dataset_platform.storage import memory_connection, sql_str

    con = memory_connection()
    src = f"read_parquet({sql_str(inp)})"
    t0 = time.perf_counter()
    if stage == "extract":
        r = run_extract(con, src)
    elif stage == "clean":
        r = run_clean(con, src, CleanSettings())
    elif stage == "dedup":
        r = run_dedup(con, src)
    else:
        rules = [LabelRule(value=f"topic{t}", keywords=VOCAB[20 + 10 * t: 30 + 10 * t]) for t in range(5)]
        topic = LabelSet(name="topic", values=[f"topic{t}" for t in range(5)] + ["other"], default="other", rules=rules)
        r = run_label(con, src, LabelSettings(sets=[topic]), log=None)
    con.sql(f"COPY (SELECT * FROM kept ORDER BY id) TO {sql_str(out)} (FORMAT parquet)")
    seconds = time.perf_counter() - t0
    print(json.dumps({"input": r.input_rows, "kept": r.kept_rows, "seconds": seconds}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000, help="synthetic pages to generate (default 20000)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _stage_child(*args._child)
        return 0

    wanted = [s for s in args.stages.split(",") if s]
    bad = [s for s in wanted if s not in STAGES]
    if bad:
        ap.error(f"unknown stage(s) {bad}; choose from {list(STAGES)}")
    print(f"generating {args.docs} pages ...", file=sys.stderr)
    inp = generate(args.docs)
    print(f"machine: {machine()}", file=sys.stderr)
    print("| stage | command | input docs | seconds | docs/s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for stage in STAGES:  # each stage reads the previous stage's output
        out = OUT / f"{stage}-{args.docs}.parquet"
        if stage in wanted:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", stage, str(inp), str(out)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            stdout = proc.stdout.read()
            proc.stdout.close()
            _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: this child's own max RSS
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                print(f"stage {stage} failed with exit code {proc.returncode}", file=sys.stderr)
                return 1
            fig = json.loads(stdout.strip().splitlines()[-1])
            rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
            print(f"| {stage} | `python bench/run.py --docs {args.docs} --stages {stage}` | {fig['input']} "
                  f"| {fig['seconds']:.2f} | {fig['input'] / fig['seconds']:.0f} | {rss_mb:.0f} |", flush=True)
        elif not out.exists():
            print(f"stage {stage} skipped but its output {out} is missing; run it once first", file=sys.stderr)
            return 1
        inp = out
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
