"""Dedup's signing on a Ray head of this machine: each input part's texts read and signed by a
task of its own (``tasks``, the graph's way since 9a2e8f7), against the texts read in the run's
process and sent to the tasks a window of batches at a time (``window``, the way before).

    python bench/dedup_sign.py --layer bench/out/ray-1000000/work-ray-2cpu/layers/scored_documents
    python bench/dedup_sign.py --layer ... --cpus 2 --repeat 2

``--layer``: a layer stored by batch (its ``data.parquet`` parts are dedup's input files, as in
the graph; ``bench/ray_workers.py`` leaves one). Each run is a fresh process on a fresh Ray head
of ``--cpus`` CPUs (127.0.0.1 only), a fresh index (every document signed, as in a first build),
with the settings of ``--config`` (default: the ``sources.yaml`` next to the work folder). The
variants run in turn (tasks, window, tasks, ...). Printed per run: the seconds of the whole
``run_dedup`` and of its signing, the run process's peak RSS (``VmHWM``), and digests of the
decision and of the index part (equal digests: the same bytes whatever the variant).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from dataset_platform.config import load_config
from dataset_platform.cluster.ray_tasks import tasks
from dataset_platform.stages.dedup import stage
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.storage import files_sql, memory_connection

variant, files, index_dir = {variant!r}, {files!r}, Path({index!r})
cfg = load_config({config!r})
cfg = cfg.model_copy(update={{"pipeline": cfg.pipeline.model_copy(update={{
    "executor": "ray", "ray": cfg.pipeline.ray.model_copy(update={{"address": {address!r}}})}})}})
signing = []
sign_into_part = stage.sign_into_part
def timed(*a, **k):
    if variant == "window":
        a = a[:10] + (None,) if len(a) > 10 else a
        k.pop("from_files", None)
    t0 = time.perf_counter()
    try:
        return sign_into_part(*a, **k)
    finally:
        signing.append(time.perf_counter() - t0)
stage.sign_into_part = timed
con = memory_connection()
index = MinHashIndex(index_dir)
on = tasks(cfg, "dedup", {{}})
t0 = time.perf_counter()
res = stage.run_dedup(con, files_sql([Path(f) for f in files]), cfg.pipeline.dedup, index=index, tasks=on, files=files)
kept = con.sql("SELECT id FROM kept_rows ORDER BY id").fetchall()
seconds = time.perf_counter() - t0
part = sorted(index.path.glob("part-*.parquet"))[-1]
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({{"seconds": seconds, "sign_s": sum(signing), "peak_rss_mb": hwm / 1024, "kept": len(kept),
                  "decision": hashlib.sha256(repr(kept).encode()).hexdigest()[:16],
                  "index_part": hashlib.sha256(part.read_bytes()).hexdigest()[:16]}}))
"""


def one(variant: str, files: list[str], config: str, cpus: int, out: Path) -> dict:
    import shutil

    from dataset_platform.cluster.local_head import start_head

    index = out / f"index-{variant}"
    shutil.rmtree(index, ignore_errors=True)
    head = start_head(cpus, Path(f"/tmp/dp-ray-sign-{os.getpid()}"))
    try:
        code = CHILD.format(root=str(ROOT), variant=variant, files=files, index=str(index / "minhash_index"),
                            config=config, address=head.address)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        head.stop()
        shutil.rmtree(index, ignore_errors=True)
    if r.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", required=True, help="a layer stored by batch: its data.parquet parts are the input")
    ap.add_argument("--config", help="sources.yaml (default: the one beside the layer's work folder)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--variants", default="tasks,window")
    args = ap.parse_args()
    layer = Path(args.layer).resolve()
    files = sorted(str(p) for p in layer.rglob("data.parquet"))
    if not files:
        raise SystemExit(f"no data.parquet parts under {layer}")
    config = args.config or str(layer.parents[2] / "sources.yaml")
    out = HERE / "out" / "dedup-sign"
    out.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{len(files)} input parts, {rows} documents; Ray head of {args.cpus} CPU(s)")
    results = []
    for turn in range(args.repeat):
        for variant in args.variants.split(","):
            t0 = time.time()
            r = one(variant, files, config, args.cpus, out)
            r.update(variant=variant, turn=turn + 1, started_at=t0)
            results.append(r)
            print(f"turn {turn + 1} {variant:6s}: run_dedup {r['seconds']:.1f} s, signing {r['sign_s']:.1f} s, "
                  f"peak RSS of the run's process {r['peak_rss_mb']:.0f} MB; kept {r['kept']}, "
                  f"decision {r['decision']}, index part {r['index_part']}")
    (out / "results.json").write_text(json.dumps({"files": len(files), "documents": rows, "cpus": args.cpus,
                                                  "runs": results}, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
