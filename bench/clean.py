"""Clean-stage throughput, and agreement/throughput against datatrove's four quality filters.

    python bench/clean.py --docs 100000 [--datatrove-every 10] [--workers N]

Documents (English, news-sized, deterministic) are built from real text: the BBC articles of the
shared corpus (neardup/bbc_news) and the English ground-truth texts of webextract, each document a
random selection of paragraphs of one source text, and about 40 % turned into low-quality
variants: repeated lines, cookie/policy/javascript boilerplate, bullet lists, short documents,
code with curly brackets, lorem ipsum, lines ending in ellipses, hashtag lists, menus of short lines.

1. ``run_clean`` (our stage: normalisation, every rule, PII) over all documents, on all workers,
   in a child process reading them from Parquet as the pipeline does;
2. datatrove 0.10.1 GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter ->
   FineWebQualityFilter (English defaults, its spaCy tokenizer) on every ``--datatrove-every``-th
   document (datatrove is ~70 docs/s per core: 100k documents would take ~12 min on 2 cores), in a
   process pool of the same size (spaCy loaded in each worker before timing); keep/drop decisions
   compared on those documents, disagreements
   counted by (our first failing rule, datatrove's reason).

Needs the ``bench`` extra (datatrove, spacy) and the shared corpus (``DATASET_PLATFORM_CORPUS``
or ``../shared/corpus`` next to the repo). Prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not installed

from common import DescendantPeak, machine, vm_hwm_mb


def corpus_dir() -> Path:
    env = os.environ.get("DATASET_PLATFORM_CORPUS")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "corpus"
    if not p.exists():
        sys.exit(f"corpus not found at {p}; set DATASET_PLATFORM_CORPUS")
    return p


def source_texts(corpus: Path) -> list[list[str]]:
    out = []
    for line in open(corpus / "neardup" / "bbc_news" / "docs.jsonl", encoding="utf-8"):
        out.append(json.loads(line)["text"])
    for line in open(corpus / "webextract" / "groundtruth.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r.get("lang") == "en" and r.get("text") and len(r["text"]) > 500:
            out.append(r["text"])
    return [[p.strip() for p in t.split("\n") if p.strip()] for t in out]


BOILER = [
    "This website uses cookies to improve your experience.",
    "Read our privacy policy and terms of use.",
    "Please enable JavaScript to view the comments.",
    "Share this article", "Follow us", "Advertisement", "Related topics", "Sign up for our newsletter",
]
CODE = ["function init() {", "  var x = document.getElementById('main');", "  x.style.display = 'none';", "}"]


def make_doc(rng: random.Random, sources: list[list[str]]) -> str:
    paras = rng.choice(sources)
    k = rng.randint(max(1, len(paras) // 3), len(paras))
    start = rng.randint(0, len(paras) - k)
    body = paras[start : start + k]
    v = rng.random()
    if v < 0.60:
        return "\n".join(body)
    kind = rng.randrange(10)
    if kind == 0:  # repeated lines
        rep = rng.choice(body)
        return "\n".join(body + [rep] * rng.randint(1, 6))
    if kind == 1:  # boilerplate lines around the text
        return "\n".join(rng.sample(BOILER, rng.randint(2, 6)) + body + rng.sample(BOILER, rng.randint(1, 4)))
    if kind == 2:  # bullet list
        items = [f"- {p.split('.')[0][:rng.randint(20, 90)]}" for p in body for _ in range(rng.randint(1, 3))]
        return "\n".join(([body[0]] if rng.random() < 0.5 else []) + items)
    if kind == 3:  # short document
        return " ".join(" ".join(body).split()[: rng.randint(10, 80)])
    if kind == 4:  # code / javascript
        return "\n".join(body[: rng.randint(1, 4)] + CODE * rng.randint(1, 3))
    if kind == 5:  # lorem ipsum
        return "\n".join(body + ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."])
    if kind == 6:  # lines ending in ellipsis (teasers)
        return "\n".join(p[: rng.randint(40, 120)].rstrip() + "..." for p in body)
    if kind == 7:  # hashtags
        tags = " ".join(f"#{w.strip('.,;:')}" for w in rng.sample(" ".join(body).split(), min(40, len(" ".join(body).split()))))
        return "\n".join(body[: rng.randint(1, 3)] + [tags])
    if kind == 8:  # menu of short lines
        words = " ".join(body).split()
        return "\n".join(" ".join(words[i : i + rng.randint(1, 4)]) for i in range(0, min(len(words), 300), 3))
    # repeated paragraph block (scraped twice)
    return "\n\n".join(body + body[: rng.randint(1, len(body))])


def build_docs(n: int, seed: int = 7) -> list[str]:
    sources = source_texts(corpus_dir())
    rng = random.Random(seed)
    return [make_doc(rng, sources) for _ in range(n)]


# ---------------------------------------------------------------- datatrove side
_FILTERS = None


def _dt_init():
    global _FILTERS
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    _FILTERS = [
        ("gopher_repetition", GopherRepetitionFilter()),
        ("gopher_quality", GopherQualityFilter()),
        ("c4", C4QualityFilter()),
        ("fineweb", FineWebQualityFilter()),
    ]


def _dt_init_warm() -> None:
    """Worker initializer: build the filters and load spaCy (run them on one document)."""
    _dt_init()
    _dt_chunk([("warm", "A short warm-up text. It has two sentences, and it is enough for spaCy.")])


def _dt_wait(_: int) -> bool:
    time.sleep(0.2)  # tasks start only after the initializer: a few of them reach every worker
    return True


def _dt_chunk(chunk: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    from datatrove.data import Document

    if _FILTERS is None:
        _dt_init()
    out = []
    for doc_id, text in chunk:
        doc = Document(text=text, id=doc_id)
        reason = None
        for fam, f in _FILTERS:
            r = f.filter(doc)
            if r is not True and not (isinstance(r, tuple) and r[0]):
                reason = f"{fam}:{r[1] if isinstance(r, tuple) else 'dropped'}"
                break
        out.append((doc_id, reason))
    return out


def _ours_child(inp: str, workers: int, batch_size: int) -> None:
    """The stage as the pipeline runs it: Parquet in, a private DuckDB, worker processes."""
    from dataset_platform.config import CleanSettings
    from dataset_platform.stages.clean.stage import run_clean
    from dataset_platform.storage import memory_connection, sql_str

    con = memory_connection()
    t = time.monotonic()
    with DescendantPeak() as workers_peak:
        res = run_clean(con, f"read_parquet({sql_str(inp)})", CleanSettings(), batch_size=batch_size, workers=workers)
    seconds = time.monotonic() - t
    print(res.summary(), file=sys.stderr)
    rejected = dict(con.sql("SELECT id, rule FROM rejected").fetchall())
    print(json.dumps({"seconds": seconds, "rejected": rejected, "stage_rss_mb": vm_hwm_mb(),
                      "worker_rss_mb": workers_peak.peak_mb}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--datatrove-every", type=int, default=10)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _ours_child(args._child, args.workers, args.batch_size)
        return

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_platform.stages.clean.text import normalise_array

    out_dir = Path(__file__).resolve().parent / "out"
    out_dir.mkdir(exist_ok=True)
    inp = out_dir / f"clean-input-{args.docs}.parquet"
    t = time.monotonic()
    raw = build_docs(args.docs)
    # both sides see the same normalised text (our stage normalises again: idempotent)
    texts = normalise_array(raw).to_pylist()
    del raw
    ids = [f"{i:08d}" for i in range(len(texts))]
    n_chars = sum(map(len, texts))
    pq.write_table(pa.table({"id": ids, "text": texts, "lang": ["en"] * len(texts)}), inp, row_group_size=10_000)
    sample = [(ids[i], texts[i]) for i in range(0, len(texts), args.datatrove_every)]
    n_docs = len(texts)
    del texts, ids
    print(f"built {n_docs} docs, {n_chars / n_docs:.0f} chars/doc mean, in {time.monotonic() - t:.1f}s", file=sys.stderr)

    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(inp), "--workers", str(args.workers),
           "--batch-size", str(args.batch_size)]
    child = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    fig = json.loads(child.stdout.strip().splitlines()[-1])
    ours_s = fig["seconds"]
    ours_rate = n_docs / ours_s
    ours = fig["rejected"]

    chunks = [sample[i : i + 200] for i in range(0, len(sample), 200)]
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_dt_init_warm) as pool:
        pool.map(_dt_wait, range(4 * args.workers), chunksize=1)  # spaCy loaded everywhere before the clock starts
        with DescendantPeak() as dt_peak:
            t = time.monotonic()
            dt = dict(x for part in pool.imap(_dt_chunk, chunks) for x in part)
            dt_s = time.monotonic() - t
    dt_rate = len(sample) / dt_s

    agree = 0
    classes: Counter = Counter()
    ours_drop = dt_drop = 0
    for doc_id, _ in sample:
        a, b = ours.get(doc_id), dt[doc_id]
        ours_drop += a is not None
        dt_drop += b is not None
        if (a is None) == (b is None):
            agree += 1
        else:
            classes[(a or "kept", b or "kept")] += 1
    fam_ours = Counter((ours.get(i) or "kept").split(".")[0] for i, _ in sample)
    fam_dt = Counter((dt[i] or "kept").split(":")[0] for i, _ in sample)

    w = args.workers
    print(f"\nmachine: {machine()}; workers {w}; load avg {os.getloadavg()[0]:.2f}")
    print(f"docs {n_docs}, {n_chars / n_docs:.0f} chars/doc; datatrove sample {len(sample)} (every {args.datatrove_every}th)")
    print("\n| side | docs | seconds | docs/s | docs/s per core | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| run_clean (ours: normalisation, every rule, PII; Parquet in, {w} workers) | {n_docs} | {ours_s:.1f} | "
          f"{ours_rate:.0f} | {ours_rate / w:.0f} | {fig['stage_rss_mb']:.0f} stage + {fig['worker_rss_mb']:.0f} largest worker |")
    print(f"| datatrove 0.10.1 GopherRep+GopherQual+C4+FineWeb ({w} workers) | {len(sample)} | {dt_s:.1f} | {dt_rate:.0f} | "
          f"{dt_rate / w:.0f} | {dt_peak.peak_mb:.0f} largest worker |")
    print(f"\nthroughput ratio: {ours_rate / dt_rate:.1f}x")
    print(f"agreement on keep/drop: {agree}/{len(sample)} = {100 * agree / len(sample):.2f}%  "
          f"(dropped: ours {ours_drop}, datatrove {dt_drop})")
    print(f"first rule family, ours: {dict(sorted(fam_ours.items()))}")
    print(f"first filter, datatrove: {dict(sorted(fam_dt.items()))}")
    print("\n| ours | datatrove | documents |")
    print("|---|---|---:|")
    for (a, b), c in classes.most_common():
        print(f"| {a} | {b} | {c} |")


if __name__ == "__main__":
    main()
