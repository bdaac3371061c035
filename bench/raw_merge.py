"""The raw layer of the whole-graph benchmark's dump: landing, then the merge into raw parts.

    python bench/raw_merge.py --docs 1000000                     # this checkout
    python bench/raw_merge.py --docs 1000000 --baseline 19d36bf  # and the code of a commit, in turns

Reads the JSONL dump and config that ``bench/graph.py`` writes to ``bench/out/graph-<docs>/`` (run
it first). Each version runs in a child process (``ingest.refresh.materialise_raw``, the raw
asset's code, local executor) into a fresh work folder: seconds of landing (to the log line
"landed") and of the merge (from there to "merged batch"), the child's peak RSS and the largest
peak of a process it started (worker processes), and a digest of every data file of the raw layer:
equal digests mean byte-identical layers. Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine
from ingest import _baseline_tree

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, resource, sys, time
from pathlib import Path

def main():
    from dataset_platform.config import load_config
    from dataset_platform.ingest.refresh import materialise_raw
    from dataset_platform.workdir import Workdir

    cfg = load_config(Path(sys.argv[1]))
    wd = Workdir.at(Path(sys.argv[2])).ensure()
    marks, t0 = {}, time.perf_counter()

    def log(m):
        if m.startswith("news: landed "):
            marks["landed"] = time.perf_counter() - t0
        if m.startswith("news: merged batch"):
            marks["merged"] = time.perf_counter() - t0

    materialise_raw(cfg, wd, log)
    h = hashlib.sha256()
    files = sorted(wd.raw_source("news").rglob("data.parquet"))
    for f in files:
        h.update(f.relative_to(wd.root).as_posix().encode())
        h.update(f.read_bytes())
    print(json.dumps({"land_s": round(marks["landed"], 2), "merge_s": round(marks["merged"] - marks["landed"], 2),
                      "parts": len(files), "digest": h.hexdigest()[:16],
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "workers_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))

if __name__ == "__main__":
    main()
"""


def run(version: str, package: Path, folder: Path, tmp: Path) -> dict:
    script = tmp / "child.py"
    script.write_text(CHILD)
    work = tmp / "work"
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), str(folder / "sources.yaml"), str(work)], env=env,
                         capture_output=True, text=True, check=True)
    return {"version": version, **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--baseline", metavar="REV", help="also measure the package as it was at this commit")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    folder = REPO / "bench" / "out" / f"graph-{args.docs}"
    if not (folder / "dump.jsonl").exists():
        sys.exit(f"{folder / 'dump.jsonl'} is missing: run python bench/graph.py --docs {args.docs} first")
    with tempfile.TemporaryDirectory(dir=folder) as t:
        tmp = Path(t)
        versions = {"this checkout": REPO}
        if args.baseline:
            versions = {f"{args.baseline} (before)": _baseline_tree(args.baseline, tmp / "baseline"), **versions}
        rows = [run(name, package, folder, tmp) for _ in range(args.repeat) for name, package in versions.items()]
    print(f"machine: {machine()}\n")
    print("| code | docs | landing s | merge s | parts | peak RSS MB (run / largest worker) | digest |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['version']} | {args.docs} | {r['land_s']} | {r['merge_s']} | {r['parts']} | "
              f"{r['peak_mb']} / {r['workers_peak_mb']} | {r['digest']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
