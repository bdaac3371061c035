"""Near-duplicate quality on the shared corpus (``neardup/``), at the default settings.

    python bench/dedup_eval.py [--corpus PATH/neardup]

1. Clough-Stevenson: the labelled pairs (source text vs answer: cut / light / heavy / non; the
   corpus marks ``cut`` as near-duplicate). All documents go through ``run_dedup``; a pair is
   predicted a duplicate when both documents end in one cluster. Pair-level precision / recall,
   and each pair's exact shingle Jaccard next to the decision.
2. BBC articles with planted edits (our own edits, deterministic): for 60 articles, one variant
   each of: 1 %, 3 %, 5 %, 10 %, 20 % of words replaced, paragraphs reordered, a boilerplate block
   appended, the first third cut. Everything (the 223 originals + 480 variants) goes through
   ``run_dedup``; recall per edit kind (variant clustered with its original), and precision over
   all clustered pairs (a pair is correct when it is a planted pair or the corpus's own exact pair).
3. Candidate pairs (documents sharing a band key) of part 2: estimated Jaccard (signatures) against
   exact Jaccard of the shingle sets: mean absolute difference, and how often both sides of the
   0.7 verification threshold agree.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np
import pyarrow as pa

from dataset_platform.config import DedupSettings
from dataset_platform.stages.dedup.minhash import (
    MinHashParams,
    band_keys,
    exact_jaccard,
    shingle_hashes,
    signatures,
)
from dataset_platform.stages.dedup.stage import run_dedup
from dataset_platform.storage import memory_connection

BOILER = ("Share this article. Sign up for our daily newsletter and get the top stories in your inbox. "
          "Follow us for more. Cookies help us deliver our services; by using them you agree.")


def clusters_of(rows: list[dict], settings: DedupSettings) -> dict[str, str]:
    """doc id -> keeper id of its cluster (keepers map to themselves)."""
    con = memory_connection()
    con.register("a", pa.Table.from_pylist(rows))
    con.sql("CREATE TABLE d AS SELECT * FROM a")
    run_dedup(con, "d", settings)
    out = {r["id"]: r["id"] for r in rows}
    out.update(dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall()))
    return out


def prf(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def clough(corpus: Path, settings: DedupSettings, params: MinHashParams) -> None:
    docs = {json.loads(x)["id"]: json.loads(x)["text"] for x in open(corpus / "clough_stevenson" / "docs.jsonl")}
    pairs = [json.loads(x) for x in open(corpus / "clough_stevenson" / "pairs.jsonl")]
    ids = {d: f"{i:016x}" for i, d in enumerate(sorted(docs))}
    keeper = clusters_of([{"id": ids[d], "text": t} for d, t in docs.items()], settings)
    tp = fp = fn = 0
    print("| pair (answer) | label | near_duplicate (gold) | exact Jaccard | clustered |")
    print("|---|---|---|---:|---|")
    for p in pairs:
        same = keeper[ids[p["a"]]] == keeper[ids[p["b"]]]
        gold = bool(p["near_duplicate"])
        tp += same and gold
        fp += same and not gold
        fn += gold and not same
        j = exact_jaccard(docs[p["a"]], docs[p["b"]], params)
        print(f"| {p['b']} | {p['label']} | {gold} | {j:.3f} | {same} |")
    prec, rec = prf(tp, fp, fn)
    print(f"\nClough-Stevenson pairs: {len(pairs)}; TP {tp}, FP {fp}, FN {fn}; precision {prec:.3f}, recall {rec:.3f}\n")


def edits(rng: random.Random, text: str) -> dict[str, str]:
    words = text.split(" ")

    def replace(share: float) -> str:
        w = list(words)
        for i in rng.sample(range(len(w)), max(1, int(len(w) * share))):
            w[i] = rng.choice(["lorem", "quartz", "nimbus", "vortex", "ember", "cobalt"])
        return " ".join(w)

    paras = [p for p in text.split("\n") if p.strip()]
    shuffled = paras[:]
    rng.shuffle(shuffled)
    return {
        "replace_1pct": replace(0.01), "replace_3pct": replace(0.03), "replace_5pct": replace(0.05),
        "replace_10pct": replace(0.10), "replace_20pct": replace(0.20),
        "paragraphs_reordered": "\n".join(shuffled), "boilerplate_appended": text + "\n" + BOILER,
        "first_third_cut": " ".join(words[len(words) // 3 :]),
    }


def bbc(corpus: Path, settings: DedupSettings, params: MinHashParams) -> None:
    docs = [json.loads(x) for x in open(corpus / "bbc_news" / "docs.jsonl")]
    known = [json.loads(x) for x in open(corpus / "bbc_news" / "computed_duplicate_pairs.jsonl")]
    rng = random.Random(42)
    rows, planted, kind_of = [], {}, {}
    for i, d in enumerate(docs):
        rows.append({"id": f"{i:016x}", "text": d["text"]})
    idx = {d["id"]: f"{i:016x}" for i, d in enumerate(docs)}
    n = len(rows)
    for i in rng.sample(range(len(docs)), 60):
        for kind, text in edits(rng, docs[i]["text"]).items():
            vid = f"{n:016x}"
            n += 1
            rows.append({"id": vid, "text": text})
            planted[vid] = f"{i:016x}"
            kind_of[vid] = kind
    keeper = clusters_of(rows, settings)
    found = defaultdict(lambda: [0, 0])
    for vid, orig in planted.items():
        found[kind_of[vid]][1] += 1
        found[kind_of[vid]][0] += keeper[vid] == keeper[orig]
    print("| planted edit | pairs | recall | mean exact Jaccard |")
    print("|---|---:|---:|---:|")
    texts = {r["id"]: r["text"] for r in rows}
    for kind in sorted(found):
        hits, total = found[kind]
        js = [exact_jaccard(texts[v], texts[o], params) for v, o in planted.items() if kind_of[v] == kind]
        print(f"| {kind} | {total} | {hits / total:.3f} | {np.mean(js):.3f} |")
    # precision over every clustered pair (member, keeper)
    groups = defaultdict(list)
    for d, k in keeper.items():
        groups[k].append(d)
    truth = set(planted.items()) | {(o, v) for v, o in planted.items()}
    for p in known:  # the corpus's own exact duplicate pair(s)
        a, b = idx[p["a"]], idx[p["b"]]
        truth |= {(a, b), (b, a)}
    origin = dict(planted.items())
    tp = fp = 0
    for k, members in groups.items():
        for m in members:
            if m == k:
                continue
            same_origin = origin.get(m, m) == origin.get(k, k)
            ok = (m, k) in truth or same_origin
            tp += ok
            fp += not ok
    print(f"\nBBC: {len(docs)} articles + {len(planted)} planted variants; clustered pairs {tp + fp}, "
          f"correct {tp} (precision {tp / max(1, tp + fp):.3f})\n")
    # candidate pairs: estimated vs exact Jaccard
    ids = [r["id"] for r in rows]
    sh, off = shingle_hashes([r["text"] for r in rows], None, params)
    sig = signatures(sh, off, params)
    keys = band_keys(sig, params)
    buckets = defaultdict(list)
    for d in range(len(ids)):
        for band in range(params.bands):
            buckets[(band, int(keys[d, band]))].append(d)
    cand = {(a, b) for m in buckets.values() if len(m) > 1 for i, a in enumerate(m) for b in m[i + 1 :]}
    est = np.array([(sig[a] == sig[b]).mean() for a, b in sorted(cand)])
    exact = np.array([exact_jaccard(rows[a]["text"], rows[b]["text"], params) for a, b in sorted(cand)])
    thr = settings.threshold
    agree = np.mean((est >= thr) == (exact >= thr))
    print(f"candidate pairs {len(cand)}: mean |estimated - exact Jaccard| {np.abs(est - exact).mean():.3f}; "
          f"same side of {thr:g}: {agree:.3f}; exact Jaccard of candidates min {exact.min():.3f}, "
          f"median {np.median(exact):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "neardup")
    args = ap.parse_args()
    settings = DedupSettings()
    params = MinHashParams(ngram=settings.ngram, cjk_ngram=settings.cjk_ngram, bands=settings.bands,
                           rows=settings.rows, seed=settings.seed)
    print(f"settings: {settings.ngram}-gram shingles, {settings.bands} bands x {settings.rows} rows, "
          f"verification at estimated Jaccard >= {settings.threshold:g}\n")
    clough(args.corpus, settings, params)
    bbc(args.corpus, settings, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
