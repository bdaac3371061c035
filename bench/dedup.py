"""Dedup throughput and memory, against datasketch's MinHashLSH, and an incremental refresh.

    python bench/dedup.py --docs 100000 [--datasketch] [--refresh-share 0.01]

Documents: bench/common.py's Zipf pseudo-word paragraphs (deterministic, about 2 KB each); one in
ten is a near-duplicate of an earlier one (a few words replaced, or a paragraph appended), one in
fifty an exact copy. Written to Parquet; each measured side runs in a child process, peak memory
is that process's VmHWM.

1. ours: ``run_dedup`` with the default settings (exact, then MinHash-LSH: word 5-grams, 14 x 8,
   verification at 0.7), Parquet in, writing its MinHash index;
2. ``--datasketch``: datasketch's MinHash (112 permutations, the same word 5-gram shingles, one
   ``update_batch`` per document) into ``MinHashLSH(num_perm=112, params=(14, 8))``, each document
   queried, candidate pairs kept at estimated Jaccard >= 0.7 — the same work without the exact
   step and the components; pair agreement = shared "same cluster" pairs / pairs either side found;
3. a refresh: the same documents plus ``--refresh-share`` new ones, reusing the index of run 1.

MB/s counts the UTF-8 bytes of the texts.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import machine, paragraphs, vm_hwm_mb  # noqa: E402

OUT = HERE / "out"


def build(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    docs: list[str] = []
    for i in range(n):
        r = rng.random()
        if i > 10 and r < 0.02:
            docs.append(docs[rng.randrange(i)])
        elif i > 10 and r < 0.12:
            words = docs[rng.randrange(i)].split(" ")
            if rng.random() < 0.5:
                for _ in range(max(1, len(words) // 100)):
                    words[rng.randrange(len(words))] = "edited"
                docs.append(" ".join(words))
            else:
                docs.append(" ".join(words) + "\n" + paragraphs(rng)[0])
        else:
            docs.append("\n".join(paragraphs(rng)))
    return docs


def write(docs: list[str], path: Path, start: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"{start + i:016x}" for i in range(len(docs))]
    pq.write_table(pa.table({"id": ids, "text": docs}), path, row_group_size=20_000)


def child_ours(inp: str, index: str) -> None:
    from dataset_platform.core.dedup import run_dedup
    from dataset_platform.storage import memory_connection, sql_str

    con = memory_connection()
    t = time.perf_counter()
    res = run_dedup(con, f"read_parquet({sql_str(inp)})", index_path=Path(index),
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t
    clusters = con.sql("SELECT doc_id, keeper_id, kind FROM clusters").fetchall()
    print(json.dumps({"seconds": seconds, "kept": res.kept_rows, "rss_mb": vm_hwm_mb(), "clusters": clusters}))


def child_datasketch(inp: str) -> None:
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    from dataset_platform.core.minhash import MinHashParams, units

    p = MinHashParams()
    t = pq.read_table(inp)
    ids, texts = t.column("id").to_pylist(), t.column("text").to_pylist()
    del t
    start = time.perf_counter()
    lsh = MinHashLSH(num_perm=p.permutations, params=(p.bands, p.rows))
    hashes = {}
    for doc_id, text in zip(ids, texts):
        us = units(text, False)
        grams = [" ".join(us[i : i + p.ngram]).encode() for i in range(max(1, len(us) - p.ngram + 1))]
        m = MinHash(num_perm=p.permutations, seed=p.seed)
        m.update_batch(grams)
        lsh.insert(doc_id, m)
        hashes[doc_id] = m
    pairs = []
    for doc_id in ids:
        m = hashes[doc_id]
        for other in lsh.query(m):
            if other > doc_id and m.jaccard(hashes[other]) >= 0.7:
                pairs.append((doc_id, other))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_mb": vm_hwm_mb(), "pairs": pairs}))


def run_child(*args: str) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def same_cluster_pairs(edges: list[tuple[str, str]]) -> set[tuple[str, str]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for x in list(parent):
        groups.setdefault(find(x), []).append(x)
    return {(a, b) for g in groups.values() for a in g for b in g if a < b}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--datasketch", action="store_true")
    ap.add_argument("--refresh-share", type=float, default=0.01)
    ap.add_argument("--_ours", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_datasketch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ours:
        child_ours(*args._ours)
        return 0
    if args._datasketch:
        child_datasketch(args._datasketch)
        return 0

    OUT.mkdir(exist_ok=True)
    docs = build(args.docs + int(args.docs * args.refresh_share))
    base, extra = docs[: args.docs], docs[args.docs :]
    mb = sum(len(d.encode()) for d in base) / 1e6
    inp, inp2 = OUT / f"dedup-in-{args.docs}.parquet", OUT / f"dedup-in-{args.docs}-refresh.parquet"
    index = OUT / f"dedup-index-{args.docs}.parquet"
    write(base, inp)
    write(base + extra, inp2)
    del docs
    if index.exists():
        index.unlink()
    ours = run_child("--_ours", str(inp), str(index))
    refresh = run_child("--_ours", str(inp2), str(index))
    rows = [("ours: exact + MinHash-LSH (run_dedup, 1 process)", args.docs, ours["seconds"], ours["rss_mb"])]
    print(f"machine: {machine()}", file=sys.stderr)
    print(f"docs {args.docs}, {mb:.1f} MB of text; kept {ours['kept']}; "
          f"near {sum(1 for c in ours['clusters'] if c[2] == 'near')}, exact {sum(1 for c in ours['clusters'] if c[2] == 'exact')}")
    agreement = None
    if args.datasketch:
        ds = run_child("--_datasketch", str(inp))
        rows.append(("datasketch 2.0 MinHash + MinHashLSH (same shingles, 14 x 8, verified at 0.7)", args.docs,
                     ds["seconds"], ds["rss_mb"]))
        a = same_cluster_pairs([(d, k) for d, k, kind in ours["clusters"] if kind == "near"])
        b = same_cluster_pairs([tuple(p) for p in ds["pairs"]])
        # exact copies: datasketch finds them as near pairs, ours in the exact step: compare all ours
        a_all = same_cluster_pairs([(d, k) for d, k, _ in ours["clusters"]])
        agreement = (len(a_all & b), len(a_all | b), len(a), len(b))
    print("\n| what | docs | seconds | docs/s | MB/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, s, rss in rows:
        print(f"| {name} | {n} | {s:.1f} | {n / s:.0f} | {mb / s:.2f} | {rss:.0f} |")
    print(f"| refresh: + {len(extra)} new documents ({args.refresh_share:.0%}), index reused | {args.docs + len(extra)} "
          f"| {refresh['seconds']:.1f} | | | {refresh['rss_mb']:.0f} |")
    print(f"\nrefresh time / full run: {refresh['seconds'] / ours['seconds']:.1%}")
    if agreement:
        both, either, na, nb = agreement
        print(f"throughput ratio ours / datasketch: {rows[1][2] / rows[0][2]:.1f}x; same-cluster pairs: both {both} "
              f"of {either} found by either ({both / max(1, either):.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
