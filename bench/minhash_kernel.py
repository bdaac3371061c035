"""The compiled MinHash kernel against the Arrow + xxhash + numpy path it replaced, on one core.

    python bench/minhash_kernel.py [--docs 5000] [--repeats 5]

Signs the first ``--docs`` documents of bench/dedup.py's 100 000-document input (build it first
with ``python bench/dedup.py --docs 100000``) both ways, in this process pinned to one CPU, and
checks that the signatures are identical. Best of ``--repeats`` after a warm-up call (numba
compiles once per install and caches on disk).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dataset_platform.stages.dedup.minhash import MinHashParams, batch_signatures, shingle_hashes, signatures

    src = HERE / "out" / "dedup-in-100000.parquet"
    if not src.exists():
        print(f"{src} is missing: run `python bench/dedup.py --docs 100000` first", file=sys.stderr)
        return 2
    texts = pq.read_table(src, columns=["text"]).column("text").combine_chunks().slice(0, args.docs)
    mb = pc.sum(pc.binary_length(texts)).as_py() / 1e6
    p = MinHashParams()

    def old():
        sh, off = shingle_hashes(texts, None, p)
        return signatures(sh, off, p)

    def new():
        return batch_signatures(texts, None, p)

    assert np.array_equal(old(), new()), "the two paths disagree"
    best = {}
    for name, fn in (("numpy path (Arrow units, xxhash per distinct unit, numpy passes)", old),
                     ("compiled kernel (numba: units hashed, shingled, minimised in one pass)", new)):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        best[name] = min(times)
    print(f"machine: {machine()}; {args.docs} documents, {mb:.1f} MB; one CPU; best of {args.repeats}")
    print("| path | seconds | MB/s |\n|---|---:|---:|")
    for name, s in best.items():
        print(f"| {name} | {s:.3f} | {mb / s:.1f} |")
    a, b = best.values()
    print(f"kernel / numpy path: {a / b:.2f}x faster, identical signatures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
