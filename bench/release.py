"""Publishing a release: a full publish, then a +1 % refresh, before and after, in one run.

    python bench/release.py --docs 100000 [--refresh 0.01] [--churn 0.0] [--baseline REV] [--sides baseline,current]

A ``decontaminated_documents`` layer is generated in batched storage (``storage/batched.py``):
``--docs`` news-sized documents (3-8 paragraphs of 40-90 Zipf pseudo-words, about 2.6 KB of
text; unique URLs and content hashes, a ``topic`` label set with uneven shares) in parts of
50 000 rows, as the label and decontamination stages leave them (one chain per part). It is
generated once into ``bench/out/release-<docs>/layer`` and kept.

Each side gets its own work folder (the layer's files hard-linked) and runs in child processes,
one per publish, so the peak memory (VmHWM) is that publish's own:

1. the full publish (``materialise_release``: splits, shards, card, manifest, diff);
2. the refresh: the layer gains a part of ``--refresh`` x docs new documents (a new batch);
   with ``--churn c``, c x docs existing documents change (their rows move into the new part
   with another text, as when a dump delivers a new version of a URL) and c x docs are removed
   (their parts lose them); then the release is published again.

Sides: ``baseline`` is the package at git revision ``--baseline`` (extracted with ``git archive``
into ``bench/out/``), ``current`` the working tree's. For every publish: seconds, peak RSS, and
the data files of the new version that are the previous version's files (same inode: hard-linked,
not rewritten) against those written. Prints Markdown rows.
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
REPO = HERE.parent
OUT = HERE / "out"
PART_ROWS = 50_000
TOPICS = [("politics", 0.35), ("sports", 0.25), ("business", 0.2), ("science", 0.12), ("culture", 0.08)]
BASELINE = "f782420"  # the commit before the incremental release (the whole release, text in DuckDB)


# ---------------------------------------------------------------- the generated layer


def _texts(rng, n: int) -> list[str]:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from common import VOCAB, WEIGHTS

    p = np.asarray(WEIGHTS) / sum(WEIGHTS)
    n_par = rng.integers(3, 9, size=n)
    words = rng.integers(40, 91, size=int(n_par.sum()))
    idx = rng.choice(len(VOCAB), size=int(words.sum()), p=p).tolist()
    out, w, k = [], 0, 0
    for i in range(n):
        pars = []
        for _ in range(n_par[i]):
            m = int(words[k])
            pars.append(" ".join(map(VOCAB.__getitem__, idx[w:w + m])).capitalize() + ".")
            w += m
            k += 1
        out.append("\n".join(pars))
    return out


def _rows(start: int, n: int, seed: int, *, ids: list[str] | None = None):
    """``n`` documents numbered from ``start`` (or with the given ids: a new version of them)."""
    import hashlib

    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    texts = _texts(rng, n)
    nums = list(range(start, start + n))
    if ids is None:
        ids = [hashlib.md5(f"news https://site{i % 997}.test/a/{i}".encode()).hexdigest()[:16] for i in nums]
    names = [t for t, _ in TOPICS]
    topic = rng.choice(len(names), size=n, p=[s for _, s in TOPICS]).tolist()
    return pa.table({
        "id": ids,
        "source": ["news"] * n,
        "url": [f"https://site{int(i, 16) % 997}.test/a/{i}" for i in ids],
        "title": [f"Story {i}" for i in nums],
        "text": texts,
        "lang": ["en"] * n,
        "n_chars": [len(t) for t in texts],
        "n_words": [t.count(" ") + 1 for t in texts],
        "content_hash": [hashlib.md5(t.encode()).hexdigest() for t in texts],
        "topic": [names[t] for t in topic],
        "topic_source": ["rule"] * n,
        "topic_confidence": np.round(rng.random(n), 3).tolist(),
    })


def _write_part(bl, key: str, table, chain: str) -> None:
    import duckdb

    from dataset_platform.storage import write_parquet
    from dataset_platform.storage.batched import PartInfo, ids_fingerprint

    con = duckdb.connect()
    con.register("t", table)
    d = bl.stage(key)
    rows = write_parquet(con, "SELECT * FROM t ORDER BY id", d / "data.parquet", layer="decontaminated_documents",
                         label_sets=["topic"])
    bl.staged(PartInfo(key, chain=chain, ids=ids_fingerprint(con, "SELECT id FROM t"), input_ids="", rows=rows,
                       counters={"input": rows, "kept": rows, "rejected": 0}))
    con.close()


def make_layer(folder: Path, docs: int) -> None:
    from dataset_platform.storage.batched import BatchedLayer

    if (folder / "manifest.json").exists():
        return
    t0 = time.perf_counter()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with BatchedLayer(tmp, "decontaminated_documents").locked() as bl:
        for k, start in enumerate(range(0, docs, PART_ROWS)):
            _write_part(bl, f"news/b{k:05d}", _rows(start, min(PART_ROWS, docs - start), seed=k), chain=f"bench-{k:05d}")
        bl.commit()
    os.replace(tmp, folder)
    print(f"generated {docs} documents in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def refresh_layer(folder: Path, docs: int, share: float, churn: float) -> dict:
    """A new part of ``share`` x docs new documents; ``churn``: documents changed and removed."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from dataset_platform.storage.batched import BatchedLayer

    with BatchedLayer(folder, "decontaminated_documents").locked() as bl:
        k = len(bl.parts)
        new = _rows(docs, int(docs * share), seed=10_000 + k)
        n_churn = int(docs * churn)
        con = duckdb.connect()
        all_ids = [r[0] for r in con.sql("SELECT id FROM read_parquet(?) ORDER BY id",
                                         params=[[str(bl.file(key)) for key in bl.parts]]).fetchall()]
        rng = np.random.default_rng(99)
        picked = rng.choice(len(all_ids), size=2 * n_churn, replace=False).tolist() if n_churn else []
        changed = sorted(all_ids[i] for i in picked[:n_churn])
        removed = sorted(all_ids[i] for i in picked[n_churn:])
        if changed:
            new = pa.concat_tables([new, _rows(docs + len(new), len(changed), seed=20_000 + k, ids=changed)])
        _write_part(bl, f"news/b{k:05d}", new, chain=f"bench-{k:05d}")
        gone = set(changed) | set(removed)
        if gone:
            con.register("gone", pa.table({"id": sorted(gone)}))
            for key, info in list(bl.parts.items()):
                t = con.sql(f"SELECT * FROM read_parquet('{bl.file(key)}') ANTI JOIN gone USING (id) ORDER BY id").to_arrow_table()
                if t.num_rows != info.rows:
                    _write_part(bl, key, t, chain=info.chain)  # same chain: the part lost rows
        bl.commit()
        con.close()
    return {"added": len(new) - len(changed), "changed": len(changed), "removed": len(removed)}


# ---------------------------------------------------------------- one publish (child process)


def bench_config(dataset: str = "bench-release"):
    from dataset_platform.config import parse_config

    return parse_config({
        "dataset": {"name": dataset},
        "sources": [{"name": "news", "kind": "jsonl", "paths": []}],
        "pipeline": {
            "labels": {"sets": [{"name": "topic", "values": [t for t, _ in TOPICS] + ["other"], "default": "other"}]},
            "splits": {"stratify_by": "topic"},
        },
    }, origin="bench")


def child(workdir: Path) -> None:
    from common import vm_hwm_mb

    from dataset_platform.release.materialise import materialise_release
    from dataset_platform.workdir import Workdir

    t0 = time.perf_counter()
    info = materialise_release(bench_config(), Workdir.at(workdir))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": vm_hwm_mb(), "version": info.version, "rows": info.total_rows,
                      "diff": info.diff, "path": str(info.path)}))


def code_root(side: str, rev: str) -> Path:
    if side == "current":
        return REPO
    root = OUT / f"baseline-{rev}"
    if not (root / "dataset_platform").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "dataset_platform"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def publish(side_root: Path, workdir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(side_root)}
    p = subprocess.run([sys.executable, "-P", str(Path(__file__)), "--child", str(workdir)], env=env,
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"publish failed in {workdir}:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def reuse(new: Path, old: Path | None) -> tuple[int, int, float, float]:
    """(files reused, files written, MB reused, MB written): a data file of ``new`` is reused when it
    is one of ``old``'s files (same inode)."""
    inodes = {f.stat().st_ino for f in (old / "data").glob("*.parquet")} if old else set()
    r = w = 0
    rb = wb = 0.0
    for f in (new / "data").glob("*.parquet"):
        st = f.stat()
        if st.st_ino in inodes:
            r, rb = r + 1, rb + st.st_size / 1e6
        else:
            w, wb = w + 1, wb + st.st_size / 1e6
    return r, w, rb, wb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--refresh", type=float, default=0.01, help="new documents of the refresh, as a share")
    ap.add_argument("--churn", type=float, default=0.0, help="documents changed and (as many) removed, as a share")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the 'baseline' side")
    ap.add_argument("--sides", default="baseline,current")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(HERE))
        child(args.child)
        return
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(HERE))
    from common import machine

    base = OUT / f"release-{args.docs}"
    make_layer(base / "layer", args.docs)
    rows = []
    for side in args.sides.split(","):
        root = code_root(side, args.baseline)
        wd = base / f"{side}-{args.refresh}-{args.churn}"
        shutil.rmtree(wd, ignore_errors=True)
        layer = wd / "layers" / "decontaminated_documents"
        layer.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(base / "layer"), str(layer)], check=True)  # files are replaced, never edited
        full = publish(root, wd)
        delta = refresh_layer(layer, args.docs, args.refresh, args.churn)
        again = publish(root, wd)
        rows.append((side, "full", full, reuse(Path(full["path"]), None)))
        rows.append((side, f"refresh (+{delta['added']}, {delta['changed']} changed, {delta['removed']} removed)",
                     again, reuse(Path(again["path"]), Path(full["path"]))))
        shutil.rmtree(wd, ignore_errors=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print("| side | publish | documents | seconds | refresh / full | peak RSS MB | data files reused / written | MB reused / written |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    fulls = {}
    for side, what, r, (nr, nw, mr, mw) in rows:
        if what == "full":
            fulls[side] = r["seconds"]
        share = "" if what == "full" else f"{r['seconds'] / fulls[side]:.1%}"
        print(f"| {side} | {what} | {r['rows']} | {r['seconds']:.1f} | {share} | {r['peak_mb']:.0f} | {nr} / {nw} | "
              f"{mr:.0f} / {mw:.0f} |")


if __name__ == "__main__":
    main()
