"""Decontamination throughput: n-gram overlap against benchmark-sized evaluation sets.

    python bench/decontam.py --docs 100000 [--items 15000] [--zh-share 0.1] [--plant-share 0.01]

Documents: bench/common.py's Zipf pseudo-word paragraphs (about 2 KB each) and, for
``--zh-share`` of them, Chinese-like text drawn from a fixed list of Han characters. Evaluation
sets are generated the same way at the size of the real ones: ``--items`` English multiple-choice
items (question of 15-60 words, four choices of 2-15 words; MMLU's test set has 14 042) and
``--items * 0.8`` Chinese ones (question of 20-90 characters, choices of 3-20; CMMLU has 11 582),
every string field matched (questions, choices, answer letters). ``--plant-share`` of the
documents get an item's question pasted in the middle (English items in English documents,
Chinese in Chinese); the run checks that exactly those are rejected.

Measured in a child process, as the pipeline runs the stage: ``load_benchmarks`` (reported on its
own), then ``run_decontaminate`` over ``read_parquet`` (DuckDB memory limit 1 GB) and the kept
layer written to Parquet without a sort. Peak memory is the child's VmHWM. MB/s counts the UTF-8
bytes of the texts. Prints a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import VOCAB, WEIGHTS, machine, paragraphs, vm_hwm_mb

OUT = HERE / "out"
#: 2 500 Han characters (a fixed stride through the CJK block), Zipf-weighted like VOCAB
HAN = [chr(0x4E00 + 7 * i) for i in range(2500)]
HAN_W = [1.0 / (r + 1) for r in range(len(HAN))]


def zh_text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(HAN, weights=HAN_W, k=rng.randint(lo, hi)))


def en_text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(VOCAB, weights=WEIGHTS, k=rng.randint(lo, hi))).capitalize()


def build_benchmarks(items: int, seed: int = 11) -> list[Path]:
    """Two JSONL sets in bench/out (reused when present)."""
    rng = random.Random(seed)
    paths = []
    for name, n, make, q, c in (("bench_en", items, en_text, (15, 60), (2, 15)),
                                ("bench_zh", int(items * 0.8), zh_text, (20, 90), (3, 20))):
        path = OUT / f"decontam-{name}-{items}.jsonl"
        paths.append(path)
        if path.exists():
            continue
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(n):
                item = {"id": f"{name}/{i:05d}", "question": make(rng, *q) + ("?" if make is en_text else "？"),
                        "choices": [make(rng, *c) for _ in range(4)], "answer": "ABCD"[i % 4]}
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return paths


def build_docs(n: int, benchmarks: list[Path], zh_share: float, plant_share: float, seed: int = 5) -> tuple[Path, int]:
    """The input layer (bench/out, reused when present) and how many documents were planted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = OUT / f"decontam-in-{n}-{zh_share}-{plant_share}.parquet"
    planted_path = path.with_suffix(".planted.json")
    if path.exists() and planted_path.exists():
        return path, len(json.loads(planted_path.read_text()))
    qs = {lang: [json.loads(line)["question"] for line in p.read_text(encoding="utf-8").splitlines()]
          for lang, p in zip(("en", "zh"), benchmarks)}
    rng = random.Random(seed)
    ids, texts, langs, planted = [], [], [], []
    for i in range(n):
        lang = "zh" if rng.random() < zh_share else "en"
        if lang == "zh":
            parts = [zh_text(rng, 60, 200) + "。" for _ in range(rng.randint(3, 8))]
        else:
            parts = paragraphs(rng)
        if rng.random() < plant_share:
            k = rng.randrange(len(parts) + 1)
            parts.insert(k, rng.choice(qs[lang]))
            planted.append(f"{i:016x}")
        ids.append(f"{i:016x}")
        texts.append(("" if lang == "zh" else "\n").join(parts))
        langs.append(lang)
    table = pa.table({"id": ids, "source": ["bench"] * n, "url": [f"https://bench.example/{x}" for x in ids],
                      "title": [f"Page {x}" for x in ids], "text": texts, "lang": langs})
    pq.write_table(table, path, row_group_size=20_000)
    planted_path.write_text(json.dumps(planted))
    return path, len(planted)


def child(inp: str, out: str, benchmarks: list[str]) -> None:
    from dataset_platform.config import BenchmarkSet, DecontaminationSettings
    from dataset_platform.stages.decontaminate import load_benchmarks, run_decontaminate
    from dataset_platform.storage import memory_connection, sql_str, write_parquet

    settings = DecontaminationSettings(benchmarks=[BenchmarkSet(path=p) for p in benchmarks])
    con = memory_connection(memory_limit="1GB", temp_dir=OUT / "tmp")
    t0 = time.perf_counter()
    index = load_benchmarks(settings.benchmarks, ngram=settings.ngram, cjk_ngram=settings.cjk_ngram)
    t1 = time.perf_counter()
    res = run_decontaminate(con, f"read_parquet({sql_str(inp)})", settings, index=index,
                            log=lambda m: print(f"{time.perf_counter() - t1:7.1f}s {m}", file=sys.stderr, flush=True))
    stage_seconds, stage_rss = time.perf_counter() - t1, vm_hwm_mb()
    write_parquet(con, "SELECT * FROM kept", Path(out))  # input in id order: no sort
    t2 = time.perf_counter()
    rejected = [r[0] for r in con.sql("SELECT id FROM rejected ORDER BY id").fetchall()]
    print(json.dumps({"load_seconds": t1 - t0, "seconds": t2 - t1, "stage_seconds": stage_seconds,
                      "stage_rss_mb": stage_rss, "ngrams": len(index), "lengths": index.lengths,
                      "rejected": rejected, "kept": res.kept_rows, "extra": res.extra, "rss_mb": vm_hwm_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=15_000)
    ap.add_argument("--zh-share", type=float, default=0.1)
    ap.add_argument("--plant-share", type=float, default=0.01)
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args._child[0], args._child[1], args._child[2:])
        return
    OUT.mkdir(exist_ok=True)
    t = time.perf_counter()
    benches = build_benchmarks(args.items)
    inp, n_planted = build_docs(args.docs, benches, args.zh_share, args.plant_share)
    print(f"inputs ready in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    mb = sum(pc.sum(pc.binary_length(b.column(0))).as_py() or 0
             for b in pq.ParquetFile(inp).iter_batches(columns=["text"])) / 1e6
    planted = set(json.loads(inp.with_suffix(".planted.json").read_text()))
    out = OUT / f"decontam-kept-{args.docs}.parquet"
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", str(inp), str(out),
                        *map(str, benches)], stdout=subprocess.PIPE, text=True, check=True)
    fig = json.loads(r.stdout.strip().splitlines()[-1])
    found = set(fig["rejected"])
    s = fig["seconds"]
    print(f"\nmachine: {machine()}; load avg {os.getloadavg()[0]:.2f}")
    print(f"docs {args.docs} ({mb:.1f} MB of text, {args.zh_share:.0%} Chinese); benchmark items "
          f"{args.items} + {int(args.items * 0.8)}, {fig['ngrams']} n-grams (window lengths {fig['lengths']}), "
          f"index built in {fig['load_seconds']:.1f}s")
    print(f"planted {n_planted}: rejected {len(found)}, of them planted {len(found & planted)}, "
          f"planted and missed {len(planted - found)}")
    print(f"stage without the write: {fig['stage_seconds']:.1f}s, peak RSS {fig['stage_rss_mb']:.0f} MB")
    print("\n| stage | command | input docs | seconds | docs/s | MB/s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(f"| decontaminate (13-grams, {fig['ngrams']} benchmark n-grams; kept layer written) | "
          f"`python bench/decontam.py --docs {args.docs}` | {args.docs} | {s:.1f} | {args.docs / s:.0f} | {mb / s:.1f} | "
          f"{fig['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
