"""Dedup throughput and memory, against datasketch's MinHashLSH, and an incremental refresh.

    python bench/dedup.py --docs 100000 [--datasketch] [--rensa] [--one-core] [--refresh-share 0.01]

Documents: bench/common.py's Zipf pseudo-word paragraphs (deterministic, about 2 KB each); one in
ten is a near-duplicate of an earlier one (a few words replaced, or a paragraph appended), one in
fifty an exact copy. Written to Parquet with the cleaned layer's columns (reused by the next run
of the same size), then stored as the clean stage stores its layer: a ``cleaned_documents``
layer in batched storage (``storage/batched.py``), one part per ``pipeline.part_rows`` documents
of one landed batch, in id order. Each measured side runs in a child process, peak memory is that
process's VmHWM (ours: also the largest VmHWM of a signing worker).

1. ours: the dedup stage as the pipeline runs it: ``runner.materialise("dedup", cfg, wd)`` with the
   default settings (exact, then MinHash-LSH: word 5-grams, 14 x 8, verification at 0.7;
   signatures on every CPU; DuckDB memory limit 1 GB) over that layer, in a fresh work folder:
   the rejects, ``duplicate_clusters`` and the deduplicated layer's parts written, the MinHash
   index and the layer committed, the warehouse views made;
2. ``--datasketch``: datasketch's MinHash (112 permutations, the same word 5-gram shingles, one
   ``update_batch`` per document) into ``MinHashLSH(num_perm=112, params=(14, 8))``, each document
   queried, candidate pairs kept at estimated Jaccard >= 0.7 — the same work without the exact
   step and the components; pair agreement = shared "same cluster" pairs / pairs either side found;
   ``--rensa``: the same with rensa's RMinHash (Rust; 32-bit hash values) and RMinHashLSH
   (threshold 0.7, 14 bands), one ``update`` per document;
3. a refresh, as the pipeline refreshes: ``--refresh-share`` new documents land as a new batch
   (one new part of the cleaned layer) and ``runner.materialise("dedup", ...)`` runs again in the
   work folder of run 1 (its index and layer reused: the refresh by difference).

``--one-core`` runs 1 again in its own work folder, pinned to one CPU (one signing process,
DuckDB one thread). MB/s counts the UTF-8 bytes of the texts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import DescendantPeak, machine, paragraphs, vm_hwm_mb

OUT = HERE / "out"
SOURCE = "bench"
CONFIG = "bench-sources.yaml"
WORD = re.compile(r"\w+")  # the peers' word units: Python's regex, as our units() for these texts


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


def rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def text_mb(path: Path) -> float:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return sum(pc.sum(pc.binary_length(b.column(0))).as_py() or 0
               for b in pq.ParquetFile(path).iter_batches(columns=["text"])) / 1e6


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (the workers)."""
    import resource

    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def child_ours(workdir: str) -> None:
    one_core = os.environ.get("DEDUP_ONE_CORE") == "1"
    if one_core:  # this process, its DuckDB threads and its workers on one CPU
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import pandas  # noqa: F401  imports a long-running process has paid already, before the clock
    import scipy.sparse  # noqa: F401

    from dataset_platform import runner
    from dataset_platform.config import load_config
    from dataset_platform.stages.dedup import kernel  # noqa: F401  (as is the compiled kernel)
    from dataset_platform.storage import memory_connection, sql_str
    from dataset_platform.workdir import Workdir

    if one_core:  # DuckDB takes every core whatever the affinity: the stage's connection gets one thread
        runner.memory_connection = functools.partial(memory_connection, 1)
    wd = Workdir.at(workdir)
    cfg = load_config(wd.root / CONFIG)
    t, cpu0 = time.perf_counter(), cpu_seconds()
    # the stage as the pipeline runs it: the decision over the whole cleaned layer, the rejects,
    # clusters and the layer's changed parts written, the index and the layer committed
    with DescendantPeak() as workers_peak:
        res = runner.materialise("dedup", cfg, wd,
                                 log=lambda m: print(f"{time.perf_counter() - t:7.1f}s {m}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t
    cpu = cpu_seconds() - cpu0
    con = memory_connection()
    clusters = con.sql(f"SELECT doc_id, keeper_id, kind FROM read_parquet({sql_str(wd.layer('duplicate_clusters'))})").fetchall()
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "kept": res.rows, "counters": res.counters,
                      "rss_mb": vm_hwm_mb(), "worker_rss_mb": workers_peak.peak_mb, "clusters": clusters}))


def bench_config(workers: int | None) -> dict:
    """sources.yaml of the bench (as data): the pipeline's defaults (``DEDUP_WORKERS``: signing processes)."""
    cfg: dict = {"dataset": {"name": "bench"}, "sources": [{"name": SOURCE, "kind": "jsonl", "paths": []}]}
    if workers:
        cfg["pipeline"] = {"dedup": {"workers": workers}}
    return cfg


def write_cleaned_parts(folder: Path, inp: Path, batch: str, where: str = "true") -> list[str]:
    """Add the rows of ``inp`` (``where``) to the cleaned layer at ``folder`` as the parts of one
    landed batch (``pipeline.part_rows`` documents each, in id order), committed at once; returns
    the keys."""
    import duckdb

    from dataset_platform.config import PipelineSettings
    from dataset_platform.storage import sql_str, write_parquet
    from dataset_platform.storage.batched import DATA, BatchedLayer, PartInfo, ids_fingerprint

    part_rows = PipelineSettings().part_rows
    con = duckdb.connect()
    src = f"(SELECT * FROM read_parquet({sql_str(inp)}) WHERE {where})"
    n = con.sql(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    chunks = max(1, -(-n // part_rows))
    keys = []
    with BatchedLayer(folder, "cleaned_documents").locked() as layer:
        for k in range(chunks):
            key = f"{SOURCE}/{batch}" if chunks == 1 else f"{SOURCE}/{batch}-p{k:04d}"
            staging = layer.stage(key)
            rows = write_parquet(con, f"SELECT * FROM {src} ORDER BY id LIMIT {part_rows} OFFSET {k * part_rows}",
                                 staging / DATA, layer="cleaned_documents")
            ids = ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(staging / DATA)})")
            layer.staged(PartInfo(key, chain=f"bench-clean:{key}", ids=ids, rows=rows,
                                  counters={"input": rows, "kept": rows, "rejected": 0}))
            keys.append(key)
        layer.commit()
    con.close()
    return keys


def fresh_workdir(path: Path, cleaned: Path, workers: int | None) -> Path:
    """A work folder holding only the cleaned layer (a copy of ``cleaned``) and the config."""
    if path.exists():
        shutil.rmtree(path)
    (path / "layers").mkdir(parents=True)
    shutil.copytree(cleaned, path / "layers" / "cleaned_documents")
    (path / CONFIG).write_text(json.dumps(bench_config(workers), indent=1) + "\n", encoding="utf-8")
    return path


def as_cleaned_layer(path: Path) -> None:
    """The input as the dedup stage finds it in the pipeline: with the cleaned layer's columns
    (source, URL, title, language 'en', counts, no PII, quality JSON, and text_hash = DuckDB's
    hash(text), written by the clean stage). The peers read only id and text."""
    import duckdb
    import pyarrow.parquet as pq

    if "n_words" in pq.ParquetFile(path).schema_arrow.names:
        return
    tmp = path.with_name(path.name + ".tmp")
    pii = ", ".join(f"0::INTEGER AS pii_{t}" for t in ("email", "phone", "ip", "card", "iban", "cn_id"))
    con = duckdb.connect()
    con.sql(f"COPY (SELECT id, 'bench' AS source, 'https://news.example/' || id AS url, 'story ' || id AS title, text, "
            f"'en' AS lang, length(text)::BIGINT AS n_chars, (length(text) - length(replace(text, ' ', '')) + 1)::BIGINT "
            f"AS n_words, {pii}, '{{}}' AS quality, []::VARCHAR[] AS annotations, hash(text) AS text_hash "
            f"FROM read_parquet('{path}')) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 20000)")
    con.close()
    os.replace(tmp, path)


def child_datasketch(inp: str) -> None:
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    from dataset_platform.stages.dedup.minhash import MinHashParams

    p = MinHashParams()
    t = pq.read_table(inp, columns=["id", "text"])
    ids, texts = t.column("id").to_pylist(), t.column("text").to_pylist()
    del t
    start, cpu0 = time.perf_counter(), cpu_seconds()
    lsh = MinHashLSH(num_perm=p.permutations, params=(p.bands, p.rows))
    hashes = {}
    for doc_id, text in zip(ids, texts):
        us = WORD.findall(text.lower())  # what a user of the library writes; = units() here
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
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu0, "rss_mb": vm_hwm_mb(), "pairs": pairs}))


def child_rensa(inp: str) -> None:
    import pyarrow.parquet as pq
    import rensa

    from dataset_platform.stages.dedup.minhash import MinHashParams

    p = MinHashParams()
    t = pq.read_table(inp, columns=["id", "text"])
    ids, texts = t.column("id").to_pylist(), t.column("text").to_pylist()
    del t
    start, cpu0 = time.perf_counter(), cpu_seconds()
    lsh = rensa.RMinHashLSH(threshold=0.7, num_perm=p.permutations, num_bands=p.bands)
    hashes = {}
    for key, (_doc_id, text) in enumerate(zip(ids, texts)):
        us = WORD.findall(text.lower())  # what a user of the library writes; = units() here
        grams = [" ".join(us[i : i + p.ngram]) for i in range(max(1, len(us) - p.ngram + 1))]
        m = rensa.RMinHash(num_perm=p.permutations, seed=p.seed)
        m.update(grams)
        lsh.insert(key, m)
        hashes[key] = m
    pairs = []
    for key, doc_id in enumerate(ids):
        m = hashes[key]
        for other in lsh.query(m):
            if other > key and m.jaccard(hashes[other]) >= 0.7:
                pairs.append((doc_id, ids[other]))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu0, "rss_mb": vm_hwm_mb(), "pairs": pairs}))


def run_child(*args: str, env: dict | None = None) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True, check=True,
                       env={**os.environ, **(env or {})})
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


def explain_disagreement(inp: Path, only_ours: list, only_theirs: list, sample: int = 300) -> None:
    """Exact Jaccard (the same shingles) of a sample of the pairs only one side put together."""
    import random as _random

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dataset_platform.stages.dedup.minhash import MinHashParams, exact_jaccard

    rng = _random.Random(1)
    picks = {name: rng.sample(pairs, min(sample, len(pairs))) for name, pairs in
             (("only ours", only_ours), ("only datasketch", only_theirs))}
    ids = sorted({i for pairs in picks.values() for pair in pairs for i in pair})
    if not ids:
        return
    t = pq.read_table(inp, filters=[("id", "in", ids)])
    text = dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    del pc
    for name, pairs in picks.items():
        js = sorted(exact_jaccard(text[x], text[y], MinHashParams()) for x, y in pairs)
        if js:
            near = sum(1 for j in js if 0.6 <= j < 0.8) / len(js)
            print(f"{name}: {len(only_ours if name == 'only ours' else only_theirs)} pairs; exact Jaccard of "
                  f"{len(js)} sampled: min {js[0]:.3f}, median {js[len(js) // 2]:.3f}, max {js[-1]:.3f}; "
                  f"{near:.0%} between 0.6 and 0.8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--datasketch", action="store_true")
    ap.add_argument("--refresh-share", type=float, default=0.01)
    ap.add_argument("--_ours", help=argparse.SUPPRESS)
    ap.add_argument("--_datasketch", help=argparse.SUPPRESS)
    ap.add_argument("--rensa", action="store_true", help="also rensa's RMinHash + RMinHashLSH (Rust)")
    ap.add_argument("--_rensa", help=argparse.SUPPRESS)
    ap.add_argument("--one-core", action="store_true",
                    help="also ours pinned to one CPU (one process, DuckDB one thread), for a per-core comparison")
    ap.add_argument("--_build", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ours:
        child_ours(args._ours)
        return 0
    if args._datasketch:
        child_datasketch(args._datasketch)
        return 0
    if args._rensa:
        child_rensa(args._rensa)
        return 0
    if args._build:
        n, n_extra = int(args._build[0]), int(args._build[1])
        docs = build(n + n_extra)  # deterministic: files from an earlier run are the same
        write(docs[:n], Path(args._build[2]))
        write(docs, Path(args._build[3]))
        return 0

    OUT.mkdir(exist_ok=True)
    n_extra = int(args.docs * args.refresh_share)
    inp, inp2 = OUT / f"dedup-in-{args.docs}.parquet", OUT / f"dedup-in-{args.docs}-refresh.parquet"
    cleaned = OUT / f"dedup-cleaned-{args.docs}"  # the cleaned layer in batched storage (copied into each work folder)
    wd, wd_one = OUT / f"dedup-wd-{args.docs}", OUT / f"dedup-wd-{args.docs}-1core"
    if not (inp.exists() and inp2.exists() and rows_of(inp) == args.docs and rows_of(inp2) == args.docs + n_extra):
        # built in a child process, so that this one stays small while the measured sides run
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_build", str(args.docs), str(n_extra),
                        str(inp), str(inp2)], check=True)
    for f in (inp, inp2):
        as_cleaned_layer(f)
    manifest = cleaned / "manifest.json"
    if not manifest.exists() or manifest.stat().st_mtime < inp.stat().st_mtime:
        if cleaned.exists():
            shutil.rmtree(cleaned)
        write_cleaned_parts(cleaned, inp, f"{SOURCE}-0001")
    # numba compiles the kernel on its first use and caches it on disk: once per install, before any clock
    from dataset_platform.stages.dedup.minhash import MinHashParams, batch_signatures

    batch_signatures(["warm up the compiled kernel once"], None, MinHashParams())
    mb = text_mb(inp)
    extra = range(n_extra)
    workers = int(os.environ.get("DEDUP_WORKERS", 0)) or None
    ours = run_child("--_ours", str(fresh_workdir(wd, cleaned, workers)))
    # the refresh: the new documents land as a new batch, i.e. one new part of the cleaned layer
    write_cleaned_parts(wd / "layers" / "cleaned_documents", inp2, f"{SOURCE}-0002", where=f"id >= '{args.docs:016x}'")
    refresh = run_child("--_ours", str(wd))
    rows = [(f"ours: dedup stage through runner.materialise (exact + MinHash-LSH, {workers or len(os.sched_getaffinity(0))} "
             "signing processes; layer in parts, index written)", args.docs, ours["seconds"], ours["cpu_seconds"], ours["rss_mb"])]
    if args.one_core:
        one = run_child("--_ours", str(fresh_workdir(wd_one, cleaned, None)), env={"DEDUP_ONE_CORE": "1"})
        rows.append(("ours, pinned to one CPU (one process, DuckDB 1 thread)", args.docs, one["seconds"],
                     one["cpu_seconds"], one["rss_mb"]))
    print(f"machine: {machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    print(f"docs {args.docs}, {mb:.1f} MB of text; kept {ours['kept']}; "
          f"near {sum(1 for c in ours['clusters'] if c[2] == 'near')}, exact {sum(1 for c in ours['clusters'] if c[2] == 'exact')}")
    agreement = None
    if args.datasketch:
        ds = run_child("--_datasketch", str(inp))
        rows.append(("datasketch 2.0 MinHash + MinHashLSH (same shingles, 14 x 8, verified at 0.7)", args.docs,
                     ds["seconds"], ds["cpu_seconds"], ds["rss_mb"]))
        a = same_cluster_pairs([(d, k) for d, k, kind in ours["clusters"] if kind == "near"])
        b = same_cluster_pairs([tuple(p) for p in ds["pairs"]])
        # exact copies: datasketch finds them as near pairs, ours in the exact step: compare all ours
        a_all = same_cluster_pairs([(d, k) for d, k, _ in ours["clusters"]])
        agreement = (len(a_all & b), len(a_all | b), len(a), len(b))
        explain_disagreement(inp, sorted(a_all - b), sorted(b - a_all))
    if args.rensa:
        rs = run_child("--_rensa", str(inp))
        rows.append(("rensa 0.5 RMinHash + RMinHashLSH (same shingles, 14 x 8, verified at 0.7)", args.docs,
                     rs["seconds"], rs["cpu_seconds"], rs["rss_mb"]))
        a_all = same_cluster_pairs([(d, k) for d, k, _ in ours["clusters"]])
        r = same_cluster_pairs([tuple(p) for p in rs["pairs"]])
        print(f"rensa: same-cluster pairs: both {len(a_all & r)} of {len(a_all | r)} found by either "
              f"({len(a_all & r) / max(1, len(a_all | r)):.1%}); throughput ratio ours / rensa: "
              f"{rs['seconds'] / ours['seconds']:.1f}x")
    print(f"ours: peak RSS of the stage process {ours['rss_mb']:.0f} MB, of each signing worker {ours['worker_rss_mb']:.0f} MB")
    print("\n| what | docs | seconds | CPU seconds | docs/s | MB/s | MB per CPU-second | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, s, cpu, rss in rows:
        print(f"| {name} | {n} | {s:.1f} | {cpu:.1f} | {n / s:.0f} | {mb / s:.2f} | {mb / cpu:.2f} | {rss:.0f} |")
    print(f"| refresh: + {len(extra)} new documents ({args.refresh_share:.0%}), index reused | {args.docs + len(extra)} "
          f"| {refresh['seconds']:.1f} | {refresh['cpu_seconds']:.1f} | | | | {refresh['rss_mb']:.0f} |")
    if args.one_core and args.rensa:
        print(f"one core: ours {mb / one['seconds']:.2f} MB/s, rensa {mb / rs['seconds']:.2f} MB/s: "
              f"ours / rensa {rs['seconds'] / one['seconds']:.2f}x")
    if args.one_core and args.datasketch:
        print(f"one core: ours / datasketch {ds['seconds'] / one['seconds']:.2f}x")
    c = refresh["counters"]
    print(f"refresh: output parts computed {c['parts_computed']}, unchanged {c['parts_reused']}; "
          f"kept {refresh['kept']}")
    print(f"refresh time / full run: {refresh['seconds'] / ours['seconds']:.1%}")
    if agreement:
        both, either, na, nb = agreement
        print(f"throughput ratio ours / datasketch: {ds['seconds'] / ours['seconds']:.1f}x; same-cluster pairs: both {both} "
              f"of {either} found by either ({both / max(1, either):.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
