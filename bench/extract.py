"""Extraction throughput: synthetic news-sized pages through ``stages.extract.run_extract``.

    python bench/extract.py --docs 100000 --workers 2
    python bench/extract.py --docs 2000 --workers 1 --chain trafilatura
    python bench/extract.py --docs 100000 --workers 1 --kind text

The pages are bench/run.py's generated set (``bench/out/pages-<n>.parquet``, deterministic,
cached; about 1 in 10 an exact copy, 1 in 20 a short page). ``--kind text``: a text dump's records
instead (``html`` null, ``text`` set, as a JSONL dump lands): bench/clean.py's English documents
built from the shared corpus (``bench/out/texts-<n>.parquet``, deterministic, cached; ~3 KB each).
The stage runs in a child process with the given number of workers; printed: documents/s overall
and per worker, and peak memory of the stage process and of its largest worker (VmHWM, MB; workers
sampled every 0.25 s). Prints one Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))


def generate_texts(n: int) -> Path:
    """``bench/out/texts-<n>.parquet``: raw_pages rows of a text dump (cached)."""
    import pyarrow as pa
    from clean import build_docs  # bench/clean.py: documents from the shared corpus
    from common import write_table  # bench/common.py
    from run import OUT

    path = OUT / f"texts-{n}.parquet"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": [f"{i:016x}" for i in range(n)],
        "source": ["bench"] * n,
        "crawl_id": ["bench-1"] * n,
        "url": [f"http://bench.localhost/t/{i}" for i in range(n)],
        "status": pa.array([200] * n, pa.int32()),
        "content_type": ["text/plain"] * n,
        "html": pa.nulls(n, pa.string()),
        "text": build_docs(n),
        "title": [f"Document {i}" for i in range(n)],
    })
    return write_table(table, path)


def _child(inp: str, out: str, workers: int, chain: str, timeout: float) -> None:
    from common import DescendantPeak, vm_hwm_mb  # bench/common.py

    from dataset_platform.stages.extract import Options, run_extract
    from dataset_platform.storage import memory_connection, sql_str

    con = memory_connection()
    opts = Options(chain=tuple(chain.split(",")), timeout_s=timeout, workers=workers)
    t0 = time.perf_counter()
    with DescendantPeak() as workers_peak:
        r = run_extract(con, f"read_parquet({sql_str(inp)})", options=opts,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    con.sql(f"COPY (SELECT * FROM kept ORDER BY id) TO {sql_str(out)} (FORMAT parquet)")
    seconds = time.perf_counter() - t0
    rules = dict(con.sql("SELECT rule, count(*) FROM rejected GROUP BY 1 ORDER BY 1").fetchall())
    print(json.dumps({"input": r.input_rows, "kept": r.kept_rows, "seconds": seconds, "rules": rules,
                      "stage_rss_mb": vm_hwm_mb(), "worker_rss_mb": workers_peak.peak_mb}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--chain", default=None, help="extractor chain (default: the pipeline's)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--kind", choices=("html", "text"), default="html",
                    help="html pages (default) or a text dump's records")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from dataset_platform.stages.extract import DEFAULT_CHAIN

    chain = args.chain or ",".join(DEFAULT_CHAIN)
    if args._child:
        _child(*args._child, args.workers, chain, args.timeout)
        return 0
    from common import machine  # bench/common.py
    from run import OUT, generate  # bench/run.py's page generator

    print(f"generating {args.docs} {'pages' if args.kind == 'html' else 'text records'} ...", file=sys.stderr)
    inp = generate(args.docs) if args.kind == "html" else generate_texts(args.docs)
    out = OUT / f"extract-{'text-' if args.kind == 'text' else ''}{args.docs}-w{args.workers}.parquet"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(inp), str(out),
           "--workers", str(args.workers), "--chain", chain, "--timeout", str(args.timeout)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    proc.stdout.close()
    _, status, _usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        print("extract benchmark failed", file=sys.stderr)
        return 1
    fig = json.loads(stdout.strip().splitlines()[-1])
    rss_mb = fig["stage_rss_mb"]  # VmHWM of the stage process (its own, not counted from the fork)
    dps = fig["input"] / fig["seconds"]
    print(f"machine: {machine()}; load average at the end: {os.getloadavg()}", file=sys.stderr)
    print(f"kept {fig['kept']}, rejected {fig['rules']}", file=sys.stderr)
    print("| stage | command | input docs | seconds | docs/s | docs/s per worker | peak RSS MB (stage / largest worker) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    kind = "" if args.kind == "html" else " --kind text"
    print(f"| extract | `python bench/extract.py --docs {args.docs} --workers {args.workers}{kind}` | {fig['input']} "
          f"| {fig['seconds']:.1f} | {dps:.0f} | {dps / args.workers:.0f} | {rss_mb:.0f} / {fig['worker_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
