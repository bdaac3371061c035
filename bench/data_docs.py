"""What a GX Data Docs page costs to render (``checks/data_docs.build_data_docs``), with GX's Jinja
environments compiling their own templates and with them sharing the compiled templates.

    python bench/data_docs.py [--rounds 3]

Every suite in ``expectations/`` is validated against a small synthetic table (its expectations
mostly report missing columns, which renders every expectation's row as a real check's page
would), then each outcome is rendered into a fresh docs folder: one page first (GX's context and
the first templates), then one page per suite, timed. Each way runs in a child process of its own
(the shared cache is process-wide), alternating, ``--rounds`` times; prints the median seconds per
page of each way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import datetime as dt, json, sys, tempfile, time
from pathlib import Path
import duckdb
sys.path.insert(0, sys.argv[1])
from dataset_platform.checks import data_docs
from dataset_platform.checks.gx_suites import validate_relation
if sys.argv[2] == "gx":
    data_docs._SHARED_TEMPLATES.append(None)  # (as if installed: GX's views compile their own)
con = duckdb.connect()
rel = "SELECT 'doc-' || i AS id, 'text ' || i AS text, 'en' AS language FROM range(200) t(i)"
outcomes = [validate_relation(con, rel, p) for p in sorted(Path(sys.argv[1], "expectations").glob("*.json"))]
docs = Path(tempfile.mkdtemp())
data_docs.build_data_docs(outcomes[0], docs, "warm-up")
times = []
for o in outcomes:
    t = time.perf_counter()
    data_docs.build_data_docs(o, docs, "run", dt.datetime.now(dt.UTC))
    times.append(time.perf_counter() - t)
print(json.dumps({"pages": len(times), "s_per_page": sum(times) / len(times)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    per_page: dict[str, list[float]] = {"gx": [], "shared": []}
    pages = 0
    for _ in range(args.rounds):
        for way in per_page:
            out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), way], capture_output=True, text=True,
                                 timeout=600, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per_page[way].append(r["s_per_page"])
            pages = r["pages"]
    gx, shared = statistics.median(per_page["gx"]), statistics.median(per_page["shared"])
    print(f"{pages} pages a round, {args.rounds} rounds (median seconds per page)")
    print("| templates | s per page |\n|---|---:|")
    print(f"| compiled by each GX view (GX as is) | {gx:.3f} |")
    print(f"| shared bytecode cache (checks/data_docs.py) | {shared:.3f} |")
    print(f"ratio {gx / shared:.2f}x")


if __name__ == "__main__":
    main()
