"""Extraction quality on the labelled pages of the shared corpus (``webextract/``).

    python bench/extract_eval.py                        # ours vs trafilatura defaults
    python bench/extract_eval.py --systems ours,traf_default,resiliparse,chain:trafilatura,resiliparse
    python bench/extract_eval.py --corpus PATH/webextract --workers 2

Every page of ``groundtruth.jsonl`` is read as raw bytes (gzip'd, original charset) and decoded
with the crawler's charset logic, then given to each system as the same string.

Scores (per page, then averaged over the pages of a language: macro):

- pages with a full-text ground truth (``full_text*``, ``markdown`` with its markup stripped):
  token precision / recall / F1 over bags of tokens (multiset overlap). Tokens: whitespace
  words, lower-cased, punctuation stripped from their ends; for zh/ja every CJK character is a
  token (and runs of other characters are split on whitespace). A system returning nothing
  scores P = R = F1 = 0 on that page.
- ``snippets`` pages: the share of ``with`` snippets found in the extraction and of ``without``
  snippets absent (whitespace folded on both sides).

Systems: ``ours`` (the pipeline's default chain, ``stages.extract.DEFAULT_CHAIN``),
``traf_default`` (``trafilatura.extract(html)`` with its defaults), ``resiliparse``, and
``chain:<a>,<b>...[@N]`` for any chain of ``stages.extract.EXTRACTORS`` (N: its ``min_chars``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "webextract"
FULL_KINDS = ("full_text", "full_text_cleaneval", "full_text_from_reference_html", "markdown")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_RE = re.compile(f"[{_CJK}]")
_PUNCT = "\"'`()[]{}<>.,;:!?*#|-–—_/\\«»“”‘’„…·•~=+%&@^$§¶©®。，、；：！？「」『』（）《》【】〈〉"
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARK = re.compile(r"^\s{0,3}(#{1,6}\s|[-*+]\s|\d+\.\s|>\s?)|[*_`]{1,3}|^\s*\|?[-:| ]{3,}\|?\s*$", re.M)


def tokens(text: str, lang: str) -> Counter:
    """Bag of tokens (see the module docstring)."""
    text = text.lower()
    out: list[str] = []
    cjk = lang in ("zh", "ja")
    for w in text.split():
        if cjk and _CJK_RE.search(w):
            for part in re.split(f"([{_CJK}])", w):
                part = part.strip(_PUNCT)
                if part:
                    out.append(part)
        else:
            w = w.strip(_PUNCT)
            if w:
                out.append(w)
    return Counter(out)


def prf(pred: str, gold: str, lang: str) -> tuple[float, float, float]:
    p_t, g_t = tokens(pred, lang), tokens(gold, lang)
    common = sum((p_t & g_t).values())
    n_p, n_g = sum(p_t.values()), sum(g_t.values())
    p = common / n_p if n_p else 0.0
    r = common / n_g if n_g else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def strip_markdown(md: str) -> str:
    return _MD_MARK.sub(" ", _MD_LINK.sub(r"\1", md))


def _fold(s: str) -> str:
    return " ".join(s.split())


def snippet_scores(pred: str, with_: list[str], without: list[str]) -> tuple[float | None, float | None]:
    text = _fold(pred)
    w = sum(_fold(s) in text for s in with_) / len(with_) if with_ else None
    wo = sum(_fold(s) not in text for s in without) / len(without) if without else None
    return w, wo


def load_pages(corpus: Path) -> list[dict]:
    rows = [json.loads(line) for line in (corpus / "groundtruth.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return sorted(rows, key=lambda r: r["id"])


def run_system(system: str, html: str, url: str | None) -> str:
    """Text a system extracts from one page ("" when it finds nothing)."""
    from dataset_platform.stages import extract as ex

    if system == "traf_default":
        import trafilatura

        return trafilatura.extract(html) or ""
    if system == "ours":
        chain = ex.DEFAULT_CHAIN
    elif system == "resiliparse":
        chain = ("resiliparse",)
    elif system.startswith("chain:"):
        spec, _, min_chars = system[len("chain:"):].partition("@")
        chain = tuple(spec.split(","))
    else:
        raise ValueError(f"unknown system {system!r}")
    r = ex.run_chain(html, url, chain, int(min_chars or 1) if system.startswith("chain:") else ex.DEFAULT_MIN_CHARS)
    return r.text if r else ""


def _score_page(args: tuple[dict, Path, tuple[str, ...]]) -> dict:
    row, corpus, systems = args
    from dataset_platform.text.charset import decode_html

    html = decode_html(gzip.decompress((corpus / row["html_file"]).read_bytes()))[0]
    out = {"id": row["id"], "lang": row["lang"], "kind": row["gt_kind"], "scores": {}, "seconds": {}}
    for system in systems:
        t0 = time.perf_counter()
        try:
            pred = run_system(system, html, row.get("url"))
        except Exception as e:  # a system that raises scores zero on that page
            print(f"{system} raised {type(e).__name__} on {row['id']}", file=sys.stderr)
            pred = ""
        out["seconds"][system] = time.perf_counter() - t0
        if row["gt_kind"] == "snippets":
            out["scores"][system] = snippet_scores(pred, row.get("with") or [], row.get("without") or [])
        else:
            gold = strip_markdown(row["text"]) if row["gt_kind"] == "markdown" else row["text"]
            out["scores"][system] = prf(pred, gold, row["lang"])
    return out


def evaluate(corpus: Path = DEFAULT_CORPUS, systems: tuple[str, ...] = ("ours", "traf_default"),
             workers: int = 2) -> list[dict]:
    """One result per page (sorted by id) with per-system scores."""
    pages = load_pages(corpus)
    jobs = [(row, corpus, systems) for row in pages]
    if workers <= 1:
        return [_score_page(j) for j in jobs]
    # spawned, not forked: a fork of a large process (a test session with DuckDB and Arrow threads)
    # once crashed in libxml2 during the child's garbage collection
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_score_page, jobs, chunksize=4))


def summarise(results: list[dict], systems: tuple[str, ...]) -> dict:
    """{"full": {lang: {system: (n, P, R, F1)}}, "snippets": {lang: {system: (n, with, without)}}}."""
    full: dict = defaultdict(lambda: defaultdict(list))
    snip: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        for s in systems:
            sc = r["scores"][s]
            if r["kind"] == "snippets":
                snip[r["lang"]][s].append(sc)
                snip["all"][s].append(sc)
            else:
                full[r["lang"]][s].append(sc)
                full["all"][s].append(sc)

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else float("nan")

    out = {"full": {}, "snippets": {}}
    for lang, per in full.items():
        out["full"][lang] = {s: (len(v), mean([x[0] for x in v]), mean([x[1] for x in v]), mean([x[2] for x in v]))
                             for s, v in per.items()}
    for lang, per in snip.items():
        out["snippets"][lang] = {s: (len(v), mean([x[0] for x in v]), mean([x[1] for x in v])) for s, v in per.items()}
    return out


def _order(langs) -> list[str]:
    return sorted(langs, key=lambda lang: (lang == "all", lang not in ("en", "zh"), lang))


def markdown_table(summary: dict, systems: tuple[str, ...]) -> str:
    lines = ["Token-level precision / recall / F1 (macro over pages) on full-text ground truth:", "",
             "| lang | pages | " + " | ".join(f"{s} P / R / F1" for s in systems) + " |",
             "|---|---:|" + "---|" * len(systems)]
    for lang in _order(summary["full"]):
        per = summary["full"][lang]
        n = per[systems[0]][0]
        cells = [f"{per[s][1]:.3f} / {per[s][2]:.3f} / **{per[s][3]:.3f}**" for s in systems]
        lines.append(f"| {lang} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "Snippet pages (share of `with` snippets found / of `without` snippets absent):", "",
              "| lang | pages | " + " | ".join(f"{s} with / without" for s in systems) + " |",
              "|---|---:|" + "---|" * len(systems)]
    for lang in _order(summary["snippets"]):
        per = summary["snippets"][lang]
        n = per[systems[0]][0]
        cells = [f"{per[s][1]:.3f} / {per[s][2]:.3f}" for s in systems]
        lines.append(f"| {lang} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--systems", default="ours,traf_default",
                    help="comma-separated; chain:a,b takes the rest of the list (put it last)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    head, sep, chain = args.systems.partition("chain:")
    systems = tuple(s for s in head.split(",") if s) + ((f"chain:{chain}",) if sep else ())
    t0 = time.perf_counter()
    results = evaluate(args.corpus, systems, args.workers)
    summary = summarise(results, systems)
    print(markdown_table(summary, systems))
    secs = {s: sum(r["seconds"][s] for r in results) for s in systems}
    print("\nseconds of extraction over all pages: " + ", ".join(f"{s} {v:.1f}" for s, v in secs.items()))
    print(f"wall {time.perf_counter() - t0:.1f} s, {len(results)} pages, {args.workers} workers", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
