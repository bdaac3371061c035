"""Labelling quality (and speed) of ``stages/label/stage.py``.

    python bench/label_eval.py [--corpus PATH/corpus] [--folds 5] [--throughput 20000]

1. BBC news topics (``neardup/bbc_news/docs.jsonl``: id, category, title, text; category is the
   gold label): stratified k-fold cross-validation of the classifier exactly as the stage trains
   it - ``run_label`` gets a gold table built from the training folds and labels the held-out
   fold; its ``model_value`` is the prediction. The corpus's one exact duplicate pair is kept in
   one fold (grouped folds), so no article is tested on its own copy. Macro-F1, per-class
   precision/recall/F1, the confusion matrix; then a keyword-rule-only baseline (a few keywords
   per topic written for this benchmark, no model) and rules + model combined, both through
   ``run_label`` too.
2. Classifier choices, with the stage's own ``train_classifier`` and ``tokens`` on the same
   folds: logistic regression at several C against a calibrated linear SVM (one SVM refit on all
   rows, or the three calibration-fold SVMs averaged), on BBC (English) and
   on the CMMLU subset (``benchmark/cmmlu_test_subset.jsonl``: Chinese questions + choices, gold =
   subject, 8 subjects) with Chinese tokens as characters + bigrams, bigrams only, or jieba words.
   Macro-F1, accuracy, log loss (how honest the confidences are) and seconds.
3. ``--throughput N``: docs/s of ``run_label`` on N generated documents (bench/common.py's
   Zipf pseudo-word paragraphs, a planted topic word per document), rules only and rules + model.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np
import pyarrow as pa

from dataset_platform.config import LabelRule, LabelSet, LabelSettings
from dataset_platform.stages.label.stage import (
    DEFAULT_C,
    DEFAULT_CJK,
    DEFAULT_CLASSIFIER,
    Classifier,
    model_text,
    run_label,
    tokens,
    train_classifier,
)
from dataset_platform.storage import memory_connection

#: keyword rules written for this benchmark (not tuned on the folds): the rule-only baseline
BBC_RULES = {
    "business": ["shares", "profit", "economy", "market", "bank", "company", "firm", "sales", "growth", "investors"],
    "entertainment": ["film", "music", "band", "album", "award", "star", "actor", "actress", "singer", "show"],
    "politics": ["labour", "tory", "tories", "election", "minister", "party", "mps", "government", "blair", "howard"],
    "sport": ["match", "cup", "player", "coach", "champion", "team", "win", "injury", "season", "rugby"],
    "tech": ["software", "computer", "technology", "mobile", "internet", "users", "digital", "phone", "games", "online"],
}


# ------------------------------------------------------------------ metrics


def f1_table(gold: list[str], pred: list[str | None], classes: list[str]) -> tuple[float, dict, np.ndarray]:
    """Macro-F1, per-class (precision, recall, F1, support), confusion (rows gold, columns predicted;
    a last column for no prediction)."""
    idx = {c: i for i, c in enumerate(classes)}
    conf = np.zeros((len(classes), len(classes) + 1), dtype=int)
    for g, p in zip(gold, pred):
        conf[idx[g], idx[p] if p in idx else len(classes)] += 1
    per = {}
    for c, i in idx.items():
        tp = conf[i, i]
        fp = conf[:, i].sum() - tp
        fn = conf[i].sum() - tp
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per[c] = (prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0, int(conf[i].sum()))
    return float(np.mean([v[2] for v in per.values()])), per, conf


def print_report(title: str, gold: list[str], pred: list[str | None], classes: list[str]) -> float:
    macro, per, conf = f1_table(gold, pred, classes)
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    print(f"\n### {title}\n\nmacro-F1 **{macro:.4f}**, accuracy {acc:.4f}, {len(gold)} documents\n")
    print("| class | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|")
    for c, (p, r, f, n) in per.items():
        print(f"| {c} | {p:.4f} | {r:.4f} | {f:.4f} | {n} |")
    print("\nconfusion (rows: gold, columns: predicted)\n")
    print("| gold \\ predicted | " + " | ".join(classes) + " | none |")
    print("|---|" + "---:|" * (len(classes) + 1))
    for c, row in zip(classes, conf):
        print(f"| {c} | " + " | ".join(str(x) for x in row) + " |")
    return macro


# ------------------------------------------------------------------ data and folds


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def load_bbc(corpus: Path) -> tuple[list[dict], list[int]]:
    """Articles (sorted by id) and a group per article: the corpus's duplicate pairs share one."""
    folder = corpus / "neardup" / "bbc_news"
    docs = sorted(read_jsonl(folder / "docs.jsonl"), key=lambda d: d["id"])
    group = {d["id"]: i for i, d in enumerate(docs)}
    for p in read_jsonl(folder / "computed_duplicate_pairs.jsonl"):
        group[p["b"]] = group[p["a"]]
    return docs, [group[d["id"]] for d in docs]


def load_cmmlu(corpus: Path) -> list[dict]:
    rows = read_jsonl(corpus / "benchmark" / "cmmlu_test_subset.jsonl")
    return sorted(({"id": r["id"], "title": None, "text": r["question"] + "\n" + "\n".join(r["choices"]),
                    "category": r["subject"]} for r in rows), key=lambda d: d["id"])


def folds_of(labels: list[str], groups: list[int], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(labels)), labels, groups))


# ------------------------------------------------------------------ 1. run_label on BBC


def docs_table(docs: list[dict]) -> pa.Table:
    return pa.table({
        "id": [d["id"] for d in docs], "source": ["bbc"] * len(docs),
        "url": [f"https://news.example/{d['id']}" for d in docs],
        "title": [d["title"] for d in docs], "text": [d["text"] for d in docs],
    })


def run_stage(docs: list[dict], train: list[dict], label_set: LabelSet) -> dict[str, tuple]:
    """run_label on ``docs`` with gold from ``train``: id -> (value, source, rule_value, model_value)."""
    con = memory_connection()
    con.register("docs_arrow", docs_table(docs))
    gold = pa.table({"id": [d["id"] for d in train], "title": [d["title"] for d in train],
                     "text": [d["text"] for d in train], label_set.name: [d["category"] for d in train]})
    run_label(con, "docs_arrow", LabelSettings(sets=[label_set], seed=0), gold=gold if train else None, log=None)
    rows = con.sql("SELECT id, value, source, rule_value, model_value FROM label_details ORDER BY id").fetchall()
    con.close()
    return {r[0]: r[1:] for r in rows}


def bbc_stage(docs: list[dict], folds, classes: list[str]) -> None:
    gold = [d["category"] for d in docs]
    model_pred: dict[str, str | None] = {}
    rule_pred: dict[str, str | None] = {}
    both_pred: dict[str, str | None] = {}
    rules = [LabelRule(value=c, keywords=kw) for c, kw in BBC_RULES.items()]
    t0 = time.perf_counter()
    for train_idx, test_idx in folds:
        test = [docs[i] for i in test_idx]
        train = [docs[i] for i in train_idx]
        model_only = LabelSet(name="topic", values=classes, default=classes[0], rules=[], model=True)
        for ident, (_, _, _, mv) in run_stage(test, train, model_only).items():
            model_pred[ident] = mv
        combined = LabelSet(name="topic", values=classes, default=classes[0], rules=rules, model=True)
        for ident, (value, _source, rv, _) in run_stage(test, train, combined).items():
            both_pred[ident] = value
            rule_pred[ident] = rv
    seconds = time.perf_counter() - t0
    ids = [d["id"] for d in docs]
    print(f"\n## 1. BBC topics through run_label ({len(folds)}-fold, {len(docs)} articles, "
          f"{dict(sorted(Counter(gold).items()))}; {seconds:.1f} s for all folds, both configurations)")
    print_report("classifier (model_value of run_label)", gold, [model_pred[i] for i in ids], classes)
    covered = sum(rule_pred[i] is not None for i in ids)
    print_report(f"keyword rules only (rule_value; {covered}/{len(ids)} documents get a vote, the rest "
                 "count as 'none')", gold, [rule_pred[i] for i in ids], classes)
    print_report("rules + classifier combined (the stage's value)", gold, [both_pred[i] for i in ids], classes)


# ------------------------------------------------------------------ 2. classifier choices


def choice_rows(name: str, docs: list[dict], folds, variants: list[dict]) -> None:
    from sklearn.metrics import log_loss

    classes = sorted({d["category"] for d in docs})
    texts = [model_text(d["title"], d["text"]) for d in docs]
    gold = [d["category"] for d in docs]
    print(f"\n### {name}: {len(docs)} documents, {len(classes)} classes, {len(folds)} folds\n")
    print("| tokens (CJK) | classifier | macro-F1 | accuracy | log loss | mean confidence | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for v in variants:
        pred: list[str | None] = [None] * len(docs)
        proba = np.zeros((len(docs), len(classes)))
        confs = np.zeros(len(docs))
        t0 = time.perf_counter()
        for train_idx, test_idx in folds:
            clf = train_classifier([texts[i] for i in train_idx], [gold[i] for i in train_idx], seed=0, **v)
            assert isinstance(clf, Classifier), clf
            toks = [tokens(texts[i], v["cjk"]) for i in test_idx]
            best, conf = clf.predict(toks)
            p = clf.model.predict_proba(clf.vectorizer.transform(toks))
            for j, i in enumerate(test_idx):
                pred[i] = clf.classes[best[j]] if best[j] >= 0 else None
                confs[i] = conf[j]
                proba[i, [classes.index(c) for c in clf.classes]] = p[j]
        seconds = time.perf_counter() - t0
        macro, _, _ = f1_table(gold, pred, classes)
        acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
        loss = log_loss(gold, np.clip(proba, 1e-15, 1), labels=classes)
        if v["kind"] == "logreg":
            clf_name = f"logistic regression C={v['c']:g}"
        else:
            clf_name = (f"linear SVM C={v['c']:g}, sigmoid calibration, "
                        + ("3 fold models averaged" if v.get("ensemble") else "one SVM refit on all"))
        if (v["cjk"], v["kind"], v["c"], v.get("ensemble", False)) == (DEFAULT_CJK, DEFAULT_CLASSIFIER, DEFAULT_C, False):
            clf_name = f"**{clf_name} (the stage's choice)**"
        print(f"| {v['cjk']} | {clf_name} | {macro:.4f} | {acc:.4f} | {loss:.4f} | {confs.mean():.3f} | {seconds:.2f} |")


def choices(bbc: list[dict], bbc_folds, cmmlu: list[dict], cmmlu_folds) -> None:
    print("\n## 2. Classifier choices (train_classifier + tokens, as the stage; same folds)")
    kinds = [{"kind": "logreg", "c": c} for c in (1.0, 10.0, 100.0)] + [
        {"kind": "svc", "c": c, "ensemble": e} for c in (0.3, 1.0, 3.0) for e in (False, True)]
    choice_rows("BBC (English)", bbc, bbc_folds, [{"cjk": "unibigram", **k} for k in kinds])
    variants = [{"cjk": cjk, **k} for cjk in ("unibigram", "bigram", "jieba") for k in kinds]
    choice_rows("CMMLU subjects (Chinese)", cmmlu, cmmlu_folds, variants)


# ------------------------------------------------------------------ 3. throughput


def throughput(n: int) -> None:
    from common import VOCAB, paragraphs

    topics = ["alpha", "beta", "gamma", "delta"]
    marker = {t: VOCAB[200 + 7 * i: 205 + 7 * i] for i, t in enumerate(topics)}  # planted topic words

    def doc(rng: random.Random, i: int) -> dict:
        t = topics[i % len(topics)]
        pars = paragraphs(rng)
        pars.insert(rng.randrange(len(pars) + 1), " ".join(rng.choices(marker[t], k=rng.randint(2, 6))))
        return {"id": f"{i:08d}", "title": f"Document {i}", "text": "\n".join(pars), "category": t}

    rng = random.Random(11)
    docs = [doc(rng, i) for i in range(n)]
    gold_docs = [doc(rng, n + i) for i in range(400)]
    gold = pa.table({"id": [d["id"] for d in gold_docs], "text": [d["text"] for d in gold_docs],
                     "topic": [d["category"] for d in gold_docs]})
    table = docs_table(docs).append_column("lang", pa.array(["en"] * n))
    # one site per topic: the domains rule is right for the beta site, silent elsewhere
    table = table.set_column(2, "url", pa.array([f"https://{d['category']}.example/{d['id']}" for d in docs]))
    rules = [LabelRule(value=t, keywords=marker[t][:3]) for t in topics] + [
        LabelRule(value="alpha", regex=r"\bka\w*lo\b"), LabelRule(value="beta", domains=["beta.example"])]
    import sklearn.svm  # noqa: F401  (imported once per process, ~2 s: not part of the per-document rate)
    chars = sum(len(d["text"]) for d in docs)
    print(f"\n## 3. Throughput: {n} generated documents ({chars / n:.0f} characters on average; "
          "gold: 400 more; scikit-learn imported beforehand)\n")
    print("| configuration | seconds | docs/s | accuracy vs planted topic |\n|---|---:|---:|---:|")
    for name, model in (("rules only (6 rules: keywords, regex, domains)", False), ("rules + classifier", True)):
        con = memory_connection()
        con.register("docs_arrow", table)
        s = LabelSettings(sets=[LabelSet(name="topic", values=topics, default="alpha", rules=rules, model=model)])
        t0 = time.perf_counter()
        run_label(con, "docs_arrow", s, gold=gold, log=None)
        seconds = time.perf_counter() - t0
        got = dict(con.sql("SELECT id, topic FROM kept").fetchall())
        acc = sum(got[d["id"]] == d["category"] for d in docs) / n
        print(f"| {name} | {seconds:.2f} | {n / seconds:.0f} | {acc:.4f} |")
        con.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--throughput", type=int, default=0, help="also time run_label on this many generated docs")
    ap.add_argument("--skip-choices", action="store_true", help="only part 1 (and 3)")
    args = ap.parse_args(argv)
    from common import machine

    print(f"# Labelling benchmark\n\n`python bench/label_eval.py --folds {args.folds}"
          f"{f' --throughput {args.throughput}' if args.throughput else ''}` on {machine()}")
    bbc, groups = load_bbc(args.corpus)
    classes = sorted({d["category"] for d in bbc})
    bbc_folds = folds_of([d["category"] for d in bbc], groups, args.folds)
    bbc_stage(bbc, bbc_folds, classes)
    if not args.skip_choices:
        cmmlu = load_cmmlu(args.corpus)
        cmmlu_folds = folds_of([d["category"] for d in cmmlu], list(range(len(cmmlu))), args.folds)
        choices(bbc, bbc_folds, cmmlu, cmmlu_folds)
    if args.throughput:
        throughput(args.throughput)
    from common import vm_hwm_mb

    print(f"\npeak RSS of the whole benchmark process: {vm_hwm_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
