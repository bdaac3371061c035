"""What warming a Ray cluster's workers when a run starts saves (``ray_tasks.warm``).

    python bench/ray_warmup.py --pairs 2

Each build starts its own Ray head (2 CPUs, fresh workers), waits 2.5 s as a run waits for
Dagster's start before its first step (2.5-4 s in ``bench/ray_workers.py``), then lands the
100k-document dump of ``bench/ray_workers.py`` (run that first: it writes
``bench/out/ray-100000/``) and runs the extract stage. ``cold``: nothing happens during the wait
(the run connects when the landing needs Ray); ``warm``: the run's warm-up (``runner.warm_up``)
connects and warms the workers during it. Builds alternate cold, warm, cold, warm, ... Printed:
seconds of the raw layer, of the extract stage, and when the dump had landed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "ray-100000"

CHILD = """
import json, os, shutil, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from dataset_platform.cluster.local_head import RAY_ENV, start_head
os.environ.update(RAY_ENV)
mode, sources, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
head = start_head(2, Path(f"/tmp/dp-ray-warm-{{os.getpid()}}"))
try:
    os.environ.update(RAY_ADDRESS=head.address, DATASET_PLATFORM_EXECUTOR="ray")
    from dataset_platform import runner
    from dataset_platform.config import load_config
    from dataset_platform.ingest.refresh import materialise_raw
    from dataset_platform.workdir import Workdir
    cfg = load_config(sources)
    shutil.rmtree(work, ignore_errors=True)
    wd = Workdir.at(work).ensure()
    if mode == "warm":
        runner.warm_up(cfg)
    time.sleep(2.5)
    t1 = time.perf_counter()
    landed = []
    materialise_raw(cfg, wd, log=lambda m: landed.append(time.perf_counter() - t1) if "landed " in m else None)
    t2 = time.perf_counter()
    runner.materialise("extract", cfg, wd)
    t3 = time.perf_counter()
    print(json.dumps({{"mode": mode, "raw_s": round(t2 - t1, 2), "extract_s": round(t3 - t2, 2),
                      "landed_at_s": round(landed[-1], 2) if landed else None}}))
finally:
    import ray
    ray.shutdown()
    head.stop()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2, help="cold/warm pairs of builds")
    args = ap.parse_args()
    sources = OUT / "sources.yaml"
    if not sources.exists():
        sys.exit(f"{sources} is missing: run `python bench/ray_workers.py --docs 100000` first")
    work = OUT / "work-warmup"
    rows = []
    for _ in range(args.pairs):
        for mode in ("cold", "warm"):
            r = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(sources), str(work)],
                               capture_output=True, text=True, check=True, env={**os.environ})
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print("\n| build | raw layer s | extract s | dump landed at s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['raw_s']:.2f} | {r['extract_s']:.2f} | {r['landed_at_s']} |")
    print(f"\n(finished {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
