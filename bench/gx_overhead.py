"""What a suite check costs on a refresh's new part, with GX as it is and with the memos of
``checks/gx_memo.py``: every layer's suite, whole-table expectations over the layer and row-level
ones over its smallest file (the part a +1 % refresh adds), as the ``gx_suite`` check runs them.

    python bench/graph.py --docs 100000 --runs full,refresh --datatrove-sample 0   # the work folder
    python bench/gx_overhead.py [--work bench/out/graph-100000/work] [--rounds 3]

In one process, GX warm (imported, its batch definition built), each suite is validated
``--rounds`` times each way, alternating; the outcomes of both ways must be equal. Prints the
fastest time of each way per suite and their sums.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(REPO / "bench/out/graph-100000/work"))
    ap.add_argument("--config", default=None, help="sources.yaml (default: the one beside --work)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from dataset_platform.checks import gx_memo, gx_suites
    from dataset_platform.checks.suite_check import layer_files
    from dataset_platform.config import load_config
    from dataset_platform.defs.quality import expectations_dir, layers_with_suites
    from dataset_platform.storage import memory_connection
    from dataset_platform.workdir import Workdir

    work = Path(args.work)
    cfg = load_config(Path(args.config) if args.config else work.parent / "sources.yaml")
    wd = Workdir.at(work)
    t = time.perf_counter()
    with gx_suites._GX_LOCK:
        gx_suites._batch_definition()
    print(f"GX warm-up {time.perf_counter() - t:.2f} s", file=sys.stderr)
    rows, total = [], {"gx": 0.0, "memo": 0.0}
    for layer in layers_with_suites():
        files = layer_files(cfg, wd, layer)
        if files is None or not files.units:
            continue
        # the smallest file (by its rows where the commit point records them, else by its size)
        unit = min(files.units, key=lambda u: (u.rows if u.rows is not None else u.file.stat().st_size, u.key))
        part = files.subset_sql([unit]) or files.whole_sql
        best, outcomes = {}, {}
        for _ in range(args.rounds):
            for way in ("gx", "memo"):
                (gx_memo.install if way == "memo" else gx_memo.uninstall)()
                con = memory_connection()
                t = time.perf_counter()
                o = gx_suites.validate_relation(con, f"SELECT * FROM {files.whole_sql}",
                                                expectations_dir() / f"{layer}.json", label_sets=cfg.label_values,
                                                rows_sql=f"SELECT * FROM {part}")
                best[way] = min(best.get(way, float("inf")), time.perf_counter() - t)
                con.close()
                outcomes[way] = repr(o)
        if outcomes["gx"] != outcomes["memo"]:
            raise SystemExit(f"{layer}: the outcomes differ with the memos")
        for way in total:
            total[way] += best[way]
        rows.append({"suite": layer, "rows": o.row_count, "rows_validated": o.rows_validated,
                     "expectations": len(o.outcomes), "gx_s": round(best["gx"], 3), "memo_s": round(best["memo"], 3)})
    gx_memo.install()
    print("| suite | layer rows | rows validated | expectations | GX as is s | with the memos s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['suite']} | {r['rows']} | {r['rows_validated']} | {r['expectations']} | {r['gx_s']} | {r['memo_s']} |")
    print(f"| all {len(rows)} | | | | {total['gx']:.3f} | {total['memo']:.3f} |")
    print(f"ratio {total['gx'] / total['memo']:.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
