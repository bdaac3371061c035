"""PII detection quality and speed (dataset_platform/stages/clean/pii.py).

    python bench/pii_eval.py [--corpus DIR] [--split dev|test|all] [--repeat N] [--long-docs N] [--show-errors]

Quality: span-level precision / recall per type on the shared corpus ``pii/pii_spans.jsonl``
(English Presidio synthetic sentences, Chinese CCF BDCI 2020 texts). Corpus types are mapped onto
ours (PHONE_NUMBER, mobile -> phone; EMAIL_ADDRESS, email -> email; CREDIT_CARD -> card;
IBAN_CODE -> iban; IP_ADDRESS -> ip); the others are out of scope and listed with their counts.
Two matching rules: ``overlap`` (a predicted span of the same type shares at least one character
with the gold span; one prediction matches at most one gold span and vice versa) and ``exact``
(same type, same start and end).

Split: each text is in ``dev`` or ``test`` by the first byte of the SHA-256 of its ``id`` (even:
dev, odd: test; fixed, independent of the file's order). Tune on ``--split dev`` (with
``--show-errors``); report ``--split test`` (the default), the part not looked at while tuning.
``--split all`` scores every text.

Speed: documents/s of ``find_pii`` on the corpus texts (repeated), on longer texts (real news
articles of the corpus' neardup/bbc_news set, and synthetic news-sized texts from bench/common.py
with PII sprinkled in), and, for comparison, ``phonenumbers.PhoneNumberMatcher`` (regions US and
CN, leniency VALID) over the same corpus texts. Peak RSS of this process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import pyarrow as pa
from common import machine, paragraphs

from dataset_platform.stages.clean.pii import PII_TYPES, find_pii, find_pii_batch

TYPE_MAP = {
    "EMAIL_ADDRESS": "email", "email": "email",
    "PHONE_NUMBER": "phone", "mobile": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
}
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpus"


def load(corpus: Path) -> list[dict]:
    with open(corpus / "pii" / "pii_spans.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


SPLITS = ("dev", "test", "all")


def split_of(doc_id: str) -> str:
    """``dev`` or ``test``: fixed per text id (SHA-256, first byte even: dev)."""
    return "dev" if hashlib.sha256(doc_id.encode("utf-8")).digest()[0] % 2 == 0 else "test"


def select(docs: list[dict], split: str) -> list[dict]:
    return docs if split == "all" else [d for d in docs if split_of(d["id"]) == split]


def _match(gold: list[tuple[str, int, int]], pred: list[tuple[str, int, int]], exact: bool) -> int:
    used: set[int] = set()
    hits = 0
    for g in gold:
        for i, p in enumerate(pred):
            if i in used or p[0] != g[0]:
                continue
            if (p[1] == g[1] and p[2] == g[2]) if exact else (p[1] < g[2] and g[1] < p[2]):
                used.add(i)
                hits += 1
                break
    return hits


def score(docs: list[dict], exact: bool = False) -> dict[tuple[str, str], Counter]:
    """(lang or 'all', type) -> Counter(gold, pred, tp)."""
    out: dict[tuple[str, str], Counter] = {}
    for d in docs:
        gold = [(TYPE_MAP[s["type"]], s["start"], s["end"]) for s in d["spans"] if s["type"] in TYPE_MAP]
        pred = [(s.type, s.start, s.end) for s in find_pii(d["text"])]
        for lang in (d["lang"], "all"):
            for t in PII_TYPES:
                g = [x for x in gold if x[0] == t]
                p = [x for x in pred if x[0] == t]
                c = out.setdefault((lang, t), Counter())
                c["gold"] += len(g)
                c["pred"] += len(p)
                c["tp"] += _match(g, p, exact)
    return out


def errors(docs: list[dict]) -> tuple[list[str], list[str]]:
    """Missed gold spans and predictions without a gold span of their type (with what they overlap)."""
    missed, extra = [], []
    for d in docs:
        t = d["text"]
        gold = [(TYPE_MAP[s["type"]], s["start"], s["end"]) for s in d["spans"] if s["type"] in TYPE_MAP]
        pred = find_pii(t)
        for g in gold:
            if not any(p.type == g[0] and p.start < g[2] and g[1] < p.end for p in pred):
                missed.append(f"{d['lang']} {g[0]:6s} {t[g[1]:g[2]]!r}  ...{t[max(0, g[1] - 25):g[2] + 10]!r}")
        for p in pred:
            if not any(p.type == g[0] and p.start < g[2] and g[1] < p.end for g in gold):
                other = [s["type"] for s in d["spans"] if s["start"] < p.end and p.start < s["end"]]
                extra.append(f"{d['lang']} {p.type:6s} {t[p.start:p.end]!r} gold there: {other or 'none'}  "
                             f"...{t[max(0, p.start - 25):p.end + 10]!r}")
    return missed, extra


def table(sc: dict[tuple[str, str], Counter], langs: list[str]) -> str:
    rows = ["| lang | type | gold spans | predicted | true positives | precision | recall |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for lang in langs:
        for t in PII_TYPES:
            c = sc.get((lang, t), Counter())
            if not c["gold"] and not c["pred"]:
                continue
            p = f"{c['tp'] / c['pred']:.3f}" if c["pred"] else "–"
            r = f"{c['tp'] / c['gold']:.3f}" if c["gold"] else "–"
            rows.append(f"| {lang} | {t} | {c['gold']} | {c['pred']} | {c['tp']} | {p} | {r} |")
    return "\n".join(rows)


def synthetic_docs(n: int) -> list[str]:
    """News-sized texts (3-8 paragraphs of 40-90 words); every 4th carries some PII."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        pars = paragraphs(rng)
        if i % 4 == 0:
            pars.insert(1, f"Contact bench{i}@example.org or +44 20 7946 {i % 10000:04d}, "
                           f"host 10.{i % 250}.{i % 200}.{i % 100}, on 2024-01-{1 + i % 28:02d} for version 3.{i % 9}.1.")
        out.append("\n\n".join(pars))
    return out


def rate(texts: list[str], fn, repeat: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    found = 0
    for _ in range(repeat):
        for t in texts:
            found += len(fn(t))
    dt = time.perf_counter() - t0
    return len(texts) * repeat / dt, found // repeat


def rate_batch(texts: list[str], repeat: int, batch: int = 2048) -> tuple[float, int]:
    """find_pii_batch over Arrow batches (the pipeline's path: RE2 pre-filter, then Python)."""
    arrays = [pa.array(texts[i:i + batch], pa.string()) for i in range(0, len(texts), batch)]
    t0 = time.perf_counter()
    found = 0
    for _ in range(repeat):
        for arr in arrays:
            found += sum(len(s) for _, s in find_pii_batch(arr))
    dt = time.perf_counter() - t0
    return len(texts) * repeat / dt, found // repeat


def speed_rows(name: str, texts: list[str], repeat: int) -> None:
    chars = sum(map(len, texts)) / len(texts)
    r, n = rate(texts, find_pii, repeat)
    print(f"| find_pii (one text at a time) | {name} x{repeat} | {len(texts) * repeat} | {chars:.0f} | {r:.0f} | {n} |")
    r, n = rate_batch(texts, repeat)
    print(f"| find_pii_batch (RE2 pre-filter) | {name} x{repeat} | {len(texts) * repeat} | {chars:.0f} | {r:.0f} | {n} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--split", choices=SPLITS, default="test",
                    help="texts scored for quality: dev (tune on it), test (held out, the default) or all")
    ap.add_argument("--repeat", type=int, default=20, help="passes over the corpus texts for the speed figure")
    ap.add_argument("--long-docs", type=int, default=5000, help="synthetic news-sized documents")
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--parquet", type=Path, default=None,
                    help="also time find_pii_batch over the text column of this Parquet file, streamed "
                         "in 2048-row batches (e.g. the output of bench/run.py's clean stage)")
    args = ap.parse_args()

    all_docs = load(args.corpus)
    docs = select(all_docs, args.split)
    print(f"corpus: {len(all_docs)} texts; split {args.split}: {len(docs)} texts ({Counter(d['lang'] for d in docs)})")
    out_of_scope = Counter(s["type"] for d in docs for s in d["spans"] if s["type"] not in TYPE_MAP)
    print("out of scope (not structured PII we redact): "
          + ", ".join(f"{k} {v}" for k, v in sorted(out_of_scope.items())))
    for rule in ("overlap", "exact"):
        sc = score(docs, exact=rule == "exact")
        print(f"\nspan-level, matching rule: {rule}")
        print(table(sc, ["all", "en", "zh"]))
    if args.show_errors:
        missed, extra = errors(docs)
        print("\nmissed (false negatives):")
        print("\n".join(missed) or "  none")
        print("\npredicted without a gold span of that type (counted as false positives):")
        print("\n".join(extra) or "  none")

    print(f"\nspeed (one process, machine: {machine()})")
    print("| what | texts | docs | chars/doc | docs/s | spans found (per pass) |")
    print("|---|---|---:|---:|---:|---:|")
    texts = [d["text"] for d in all_docs]
    speed_rows("pii corpus", texts, args.repeat)
    news_path = args.corpus / "neardup" / "bbc_news" / "docs.jsonl"
    if news_path.exists():
        news = [json.loads(x)["text"] for x in news_path.open(encoding="utf-8") if x.strip()]
        speed_rows("bbc_news articles", news, max(1, args.repeat // 4))
    web_path = args.corpus / "webextract" / "groundtruth.jsonl"
    if web_path.exists():
        web = [t for t in (json.loads(x).get("text") for x in web_path.open(encoding="utf-8") if x.strip()) if t]
        speed_rows("webextract ground-truth texts", web, max(1, args.repeat // 4))
    syn = synthetic_docs(args.long_docs)
    speed_rows("synthetic news-sized texts (1 in 4 with PII)", syn, 1)

    if args.parquet:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(args.parquet)
        t0, n, found, chars = time.perf_counter(), 0, 0, 0
        for batch in pf.iter_batches(batch_size=2048, columns=["text"]):
            col = batch.column(0)
            n += len(col)
            chars += sum(len(t) for t in col.to_pylist() if t)
            found += sum(len(sp) for _, sp in find_pii_batch(col))
        dt = time.perf_counter() - t0  # includes reading and counting characters
        print(f"| find_pii_batch (RE2 pre-filter) | {args.parquet.name} (streamed) | {n} | {chars / max(n, 1):.0f} | "
              f"{n / dt:.0f} | {found} |")

    import phonenumbers

    def matcher(t: str) -> list:
        return [m for region in ("US", "CN") for m in phonenumbers.PhoneNumberMatcher(t, region, leniency=phonenumbers.Leniency.VALID)]

    rep = max(1, args.repeat // 4)
    chars = sum(map(len, texts)) / len(texts)
    r, _ = rate(texts, matcher, rep)
    gold_phone = sum(1 for d in all_docs for s in d["spans"] if TYPE_MAP.get(s["type"]) == "phone")
    hit = 0
    for d in all_docs:
        ms = matcher(d["text"])
        for s in d["spans"]:
            if TYPE_MAP.get(s["type"]) == "phone" and any(m.start < s["end"] and s["start"] < m.end for m in ms):
                hit += 1
    print(f"| PhoneNumberMatcher US+CN, VALID (phones only) | pii corpus x{rep} | {len(texts) * rep} | {chars:.0f} | {r:.0f} | phone recall {hit}/{gold_phone} = {hit / gold_phone:.3f} |")
    few = syn[:1000]
    r, _ = rate(few, matcher, 1)
    print(f"| PhoneNumberMatcher US+CN, VALID (phones only) | synthetic news-sized texts | {len(few)} | "
          f"{sum(map(len, few)) / len(few):.0f} | {r:.0f} | |")
    print(f"\npeak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
