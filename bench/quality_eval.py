"""Quality model (``stages/quality_model.py``): ROC AUC on held-out documents and scoring speed.

    python bench/quality_eval.py [--corpus PATH/corpus] [--seed 0] [--docs 20000] [--fasttext]

Items are built from the shared corpus: **good** = a window of consecutive paragraphs (a third
to all of them) of a BBC article (``neardup/bbc_news``) or of an English webextract ground truth
(``webextract/groundtruth.jsonl``, over 500 characters); **bad** = low-quality pages built by
:func:`make_bad` from the same texts, of four kinds written for this benchmark: ``boilerplate``
(cookie, login, legal and sharing lines with at most one sentence of the article), ``menu``
(navigation: short lines of section names and title words, ``|`` separated or one per line),
``spam`` (keyword stuffing: shop phrases around the article's own words, links and shouting)
and ``machine`` (word salad from a word-bigram Markov chain over the article: its vocabulary
and local word pairs, no sense). Items are split by source text (every item of a text on the
same side: 20 % of the texts held out), so the model is never tested on a text it was trained on.

Reported: ROC AUC over every held-out item and per bad kind (good items against that kind),
training seconds, and scoring docs/s on one core (the process pinned to one CPU, BLAS to one
thread; features included) over the held-out items repeated to ``--docs`` documents. With
``--fasttext`` (the ``fasttext`` / ``fasttext-wheel`` package installed) fastText's supervised
classifier is measured on the same split and features (word bigrams, one thread, fixed seed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np
from common import machine, vm_hwm_mb

from dataset_platform.stages import quality_model as qm

KINDS = ("boilerplate", "menu", "spam", "machine")

BOILER = [
    "We use cookies to give you the best experience on our website.",
    "By continuing to browse you agree to our use of cookies.",
    "Accept all cookies", "Manage preferences", "Log in", "Register", "Forgot your password?",
    "Subscribe to our newsletter", "Share on Facebook", "Share on Twitter", "Email this page",
    "Copyright 2024 All rights reserved.", "Terms and conditions", "Privacy notice", "Contact us",
    "Skip to main content", "Back to top", "Advertisement", "Continue reading", "Most popular",
    "This site requires JavaScript to work properly.", "Sponsored content", "You may also like",
]
SECTIONS = ["Home", "News", "Sport", "Business", "Weather", "Travel", "Culture", "Video", "Live", "World",
            "Politics", "Tech", "Science", "Health", "Entertainment", "More", "Search", "Menu", "Sign in"]
SHOP = ["buy cheap", "best price", "free shipping", "order now", "discount", "click here", "limited offer",
        "100% guaranteed", "top quality", "sale", "lowest prices online", "visit our store", "call now"]


def corpus_dir(arg: str | None) -> Path:
    env = arg or os.environ.get("DATASET_PLATFORM_CORPUS")
    p = Path(env) if env else REPO.parent / "shared" / "corpus"
    if not p.exists():
        sys.exit(f"corpus not found at {p}; pass --corpus or set DATASET_PLATFORM_CORPUS")
    return p


def source_texts(corpus: Path) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every good source text, in file order."""
    out = []
    for line in open(corpus / "neardup" / "bbc_news" / "docs.jsonl", encoding="utf-8"):
        r = json.loads(line)
        out.append((r.get("title") or "", r["text"]))
    for line in open(corpus / "webextract" / "groundtruth.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r.get("lang") == "en" and r.get("text") and len(r["text"]) > 500:
            out.append((r.get("title") or "", r["text"]))
    return [(t, [p.strip() for p in text.split("\n") if p.strip()]) for t, text in out]


def make_good(rng: random.Random, paras: list[str]) -> str:
    k = rng.randint(max(1, len(paras) // 3), len(paras))
    start = rng.randint(0, len(paras) - k)
    return "\n".join(paras[start:start + k])


def make_bad(rng: random.Random, kind: str, title: str, paras: list[str]) -> str:
    """A low-quality page of ``kind`` built from one source text."""
    words = " ".join(paras).split()
    title_words = [w.strip(".,:;'\"") for w in (title or " ".join(words[:8])).split() if len(w) > 2]
    if kind == "boilerplate":
        lines = rng.sample(BOILER, rng.randint(5, 12))
        if rng.random() < 0.7:
            lines.insert(rng.randrange(len(lines)), paras[0].split(". ")[0] + ".")
        return "\n".join(lines)
    if kind == "menu":
        items = rng.sample(SECTIONS, rng.randint(6, 14)) + rng.sample(title_words, min(len(title_words), 4))
        if rng.random() < 0.5:
            return " | ".join(items) + "\n" + "\n".join(rng.sample(SECTIONS, 5))
        return "\n".join(items)
    if kind == "spam":
        kw = rng.sample(title_words, min(len(title_words), 3)) or ["deal"]
        out = []
        for _ in range(rng.randint(6, 20)):
            w = rng.choice(kw)
            out.append(f"{rng.choice(SHOP)} {w} {rng.choice(SHOP)} {w}{rng.choice(['!', '!!!', '', ' >>'])}")
        if rng.random() < 0.5:
            out.append(f"www.{rng.choice(kw).lower()}-deals.example/shop")
        text = "\n".join(out) if rng.random() < 0.5 else " ".join(out)
        return text.upper() if rng.random() < 0.3 else text
    if kind == "machine":
        nxt = defaultdict(list)
        for a, b in zip(words, words[1:]):
            nxt[a].append(b)
        w = rng.choice(words)
        out = [w]
        for _ in range(rng.randint(80, 400)):
            w = rng.choice(nxt.get(w) or words)
            out.append(w)
        return " ".join(out)
    raise ValueError(kind)


def build_items(corpus: Path, seed: int, per_text: int = 2) -> list[dict]:
    """Items with text, label (1 good, 0 bad), kind, group (source text index), held_out."""
    rng = random.Random(seed)
    items = []
    for g, (title, paras) in enumerate(source_texts(corpus)):
        held = rng.random() < 0.2
        for _ in range(per_text):
            items.append({"text": make_good(rng, paras), "label": 1, "kind": "good", "group": g, "held_out": held})
        for kind in rng.sample(KINDS, per_text):
            items.append({"text": make_bad(rng, kind, title, paras), "label": 0, "kind": kind, "group": g,
                          "held_out": held})
    return items


def auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def evaluate(items: list[dict], scores: np.ndarray) -> dict:
    test = [i for i in items if i["held_out"]]
    y = np.array([i["label"] for i in test])
    out = {"auc": auc(y, scores), "held_out": len(test)}
    for kind in KINDS:
        mask = np.array([i["kind"] in ("good", kind) for i in test])
        out[f"auc_{kind}"] = auc(y[mask], scores[mask])
    return out


def one_core() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass


def run_stage(model, texts: list[str], threshold: float = 0.5) -> float:
    """docs/s of the stage's own path (``run_quality``: texts streamed from DuckDB in batches, scored,
    joined back, rejects written) over ``texts``, on this process's one core."""
    import pyarrow as pa

    from dataset_platform.config import QualityModelSettings
    from dataset_platform.storage import memory_connection

    con = memory_connection()
    con.sql("SET threads = 1")
    con.register("_t", pa.table({"id": [f"{i:016x}" for i in range(len(texts))], "text": texts}))
    con.sql("CREATE TABLE docs AS SELECT * FROM _t")
    t0 = time.perf_counter()
    qm.run_quality(con, "docs", QualityModelSettings(threshold=threshold), model, batch_size=2000)
    dt = time.perf_counter() - t0
    con.close()
    return len(texts) / dt


def run_sklearn(items: list[dict], docs: int, seed: int) -> dict:
    train = [i for i in items if not i["held_out"]]
    test = [i for i in items if i["held_out"]]
    t0 = time.perf_counter()
    model = qm.train([i["text"] for i in train], [i["label"] for i in train], seed=seed)
    train_s = time.perf_counter() - t0
    assert not isinstance(model, str), model
    scores = model.score([i["text"] for i in test])
    texts = [test[k % len(test)]["text"] for k in range(docs)]
    t0 = time.perf_counter()
    for k in range(0, docs, 2000):
        model.score(texts[k:k + 2000])
    dt = time.perf_counter() - t0
    return {**evaluate(items, scores), "train_s": train_s, "docs_per_s_core": docs / dt,
            "stage_docs_per_s_core": run_stage(model, texts)}


def run_fasttext(items: list[dict], docs: int, seed: int) -> dict:
    import fasttext

    train = [i for i in items if not i["held_out"]]
    test = [i for i in items if i["held_out"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(f"__label__{'good' if i['label'] else 'bad'} {qm.features(i['text'])}\n"
                                for i in train), encoding="utf-8")
        t0 = time.perf_counter()
        model = fasttext.train_supervised(str(path), wordNgrams=2, epoch=25, lr=0.5, dim=50, minCount=1,
                                          thread=1, seed=seed, verbose=0)
        train_s = time.perf_counter() - t0

    def score(texts):  # the binding's own predict per text: fasttext-wheel 0.9.2's Python wrapper
        # fails under numpy 2 (copy=False) and its multilinePredict returns wrong probabilities
        return np.array([{lab: p for p, lab in model.f.predict(qm.features(t), 2, 0.0, "strict")}
                         .get("__label__good", 0.0) for t in texts])

    scores = score([i["text"] for i in test])
    texts = [test[k % len(test)]["text"] for k in range(docs)]
    t0 = time.perf_counter()
    for k in range(0, docs, 2000):
        score(texts[k:k + 2000])
    dt = time.perf_counter() - t0
    return {**evaluate(items, scores), "train_s": train_s, "docs_per_s_core": docs / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", type=int, default=20_000, help="documents scored for the speed figure")
    ap.add_argument("--fasttext", action="store_true", help="also measure fastText (needs the package)")
    args = ap.parse_args()
    one_core()
    items = build_items(corpus_dir(args.corpus), args.seed)
    test = [i for i in items if i["held_out"]]
    chars = sum(len(i["text"]) for i in test) / len(test)
    print(f"{machine()}; items: {len(items)} ({len(items) - len(test)} train, {len(test)} held out; held-out "
          f"mean {chars:.0f} chars); one core")
    rows = [("scikit-learn hashed 1-2 grams, TF-IDF, logistic regression (the stage)", run_sklearn(items, args.docs, args.seed))]
    if args.fasttext:
        rows.append(("fastText supervised, word bigrams, dim 50", run_fasttext(items, args.docs, args.seed)))
    print("\n| model | ROC AUC | " + " | ".join(f"AUC {k}" for k in KINDS) + " | train s | docs/s per core |")
    print("|---|---|" + "---|" * len(KINDS) + "---|---|")
    for name, r in rows:
        print(f"| {name} | {r['auc']:.4f} | " + " | ".join(f"{r[f'auc_{k}']:.4f}" for k in KINDS)
              + f" | {r['train_s']:.2f} | {r['docs_per_s_core']:.0f} |")
    if "stage_docs_per_s_core" in rows[0][1]:
        print(f"\nthe stage's path (run_quality over DuckDB, one thread): {rows[0][1]['stage_docs_per_s_core']:.0f} "
              f"docs/s per core; peak RSS {vm_hwm_mb():.0f} MB")


if __name__ == "__main__":
    main()
