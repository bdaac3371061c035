"""Deduplication: exact and MinHash-LSH near-duplicates on crafted English and Chinese documents
(generated here from word lists written for these tests), keeper rules, cluster outputs, the CLI."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pyarrow as pa
import pytest

from dataset_platform import atomic
from dataset_platform.config import DedupSettings
from dataset_platform.stages.dedup import refresh as dedup_refresh
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.stages.dedup.minhash import (
    MinHashParams,
    batch_signatures,
    estimated_jaccard,
    exact_jaccard,
    shingle_hashes,
    signatures,
)
from dataset_platform.stages.dedup.stage import run_dedup
from dataset_platform.storage import memory_connection

EN_WORDS = (
    "river bridge market garden library harbour station orchard museum valley bakery tower meadow school theatre "
    "village ferry forest castle workshop council farmer teacher doctor painter sailor miller weaver baker "
    "morning evening winter summer autumn spring rain wind snow storm sunlight shadow lantern window door roof "
    "opened closed repaired painted visited measured cleaned described photographed planted carried built "
    "quietly slowly early late again often rarely together alone near beyond across under above behind "
    "red green blue small large old new busy empty narrow wide bright dark warm cold"
).split()
ZH_CHARS = "山水田木火土石日月云风雨雪花草树林河湖海城村路桥门窗家人学校书店市场工厂医生老师农民孩子朋友春夏秋冬早晚新旧大小长短高低远近"
BOILER = ("Subscribe to our newsletter for weekly updates. Follow us on every network. "
          "Read our privacy policy and terms of use. All rights reserved by the publisher of this site.")


def en_doc(rng: random.Random, paragraphs: int = 5, words: int = 60) -> str:
    paras = []
    for _ in range(paragraphs):
        ws = [rng.choice(EN_WORDS) for _ in range(words)]
        paras.append(" ".join(ws).capitalize() + ".")
    return "\n".join(paras)


def zh_doc(rng: random.Random, sentences: int = 12, chars: int = 25) -> str:
    return "".join("".join(rng.choice(ZH_CHARS) for _ in range(chars)) + "。" for _ in range(sentences))


def edit_words(rng: random.Random, text: str, every: int = 40) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // every)):
        words[rng.randrange(len(words))] = "changed"
    return " ".join(words)


def edit_chars(rng: random.Random, text: str, every: int = 60) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // every)):
        chars[rng.randrange(len(chars))] = "改"
    return "".join(chars)


def _swap_first_sentences(text: str) -> str:
    s = [x + "。" for x in text.split("。") if x]
    return "".join([s[1], s[0], *s[2:]])


def dedup(rows: list[dict], settings: DedupSettings | None = None):
    con = memory_connection()
    con.register("docs_arrow", pa.Table.from_pylist(rows))
    con.sql("CREATE TABLE docs AS SELECT * FROM docs_arrow")
    res = run_dedup(con, "docs", settings)
    clusters = con.sql("SELECT cluster_id, doc_id, keeper_id, similarity, kind FROM clusters ORDER BY doc_id").fetchall()
    kept = [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()]
    rejected = {r[0]: (r[1], r[2]) for r in con.sql("SELECT id, rule, value FROM rejected").fetchall()}
    return res, kept, clusters, rejected


def ident(i: int) -> str:
    return f"{i:016x}"


@pytest.fixture(scope="module")
def crafted():
    """20 distinct English and 10 distinct Chinese originals, with planted near-duplicates."""
    rng = random.Random(7)
    en = [en_doc(rng) for _ in range(20)]
    zh = [zh_doc(rng) for _ in range(10)]
    rows, planted = [], {}
    for i, t in enumerate(en):
        rows.append({"id": ident(i), "text": t, "lang": "en"})
    for i, t in enumerate(zh):
        rows.append({"id": ident(100 + i), "text": t, "lang": "zh"})
    variants = {
        200: (0, edit_words(rng, en[0])),  # a word in 40 replaced
        201: (1, "\n".join(reversed(en[1].split("\n")))),  # paragraphs reordered
        202: (2, en[2] + "\n" + BOILER),  # boilerplate appended
        203: (3, edit_words(rng, en[3] + "\n" + BOILER)),  # both
        204: (100, edit_chars(rng, zh[0])),  # a character in 60 replaced
        205: (101, zh[1] + "版权所有，未经许可不得转载。"),  # a notice appended
        206: (102, _swap_first_sentences(zh[2])),  # two sentences swapped
    }
    for vid, (orig, text) in variants.items():
        rows.append({"id": ident(vid), "text": text, "lang": "zh" if orig >= 100 else "en"})
        planted[ident(vid)] = ident(orig)
    # distinct documents that share a long boilerplate block: not duplicates
    for i in range(6):
        rows.append({"id": ident(300 + i), "text": en_doc(rng, paragraphs=3) + "\n" + BOILER + " " + BOILER, "lang": "en"})
    return rows, planted


def test_planted_near_duplicates_are_clustered_with_their_originals(crafted):
    rows, planted = crafted
    res, kept, clusters, rejected = dedup(rows)
    assert res.balanced
    near = {doc: keeper for _, doc, keeper, _, kind in clusters if kind == "near"}
    assert near == planted  # every planted variant, nothing else (the originals have smaller ids)
    assert all(rejected[d] == ("near_duplicate", k) for d, k in near.items())
    assert all(0.7 <= sim <= 1.0 for *_, sim, kind in clusters)
    assert set(kept) == {r["id"] for r in rows} - set(planted)


def test_distinct_documents_sharing_boilerplate_are_not_clustered(crafted):
    rows, _ = crafted
    _, kept, clusters, _ = dedup(rows)
    shared = {ident(300 + i) for i in range(6)}
    assert shared <= set(kept)
    assert not [c for c in clusters if c[1] in shared or c[2] in shared]


def test_keeper_is_highest_quality_then_earliest_fetch_then_id():
    rng = random.Random(3)
    base = en_doc(rng)
    rows = [
        {"id": ident(1), "text": base, "quality": 0.5, "fetched_at": "2026-03-01T00:00:00Z"},
        {"id": ident(2), "text": edit_words(rng, base), "quality": 0.9, "fetched_at": "2026-05-01T00:00:00Z"},
        {"id": ident(3), "text": edit_words(rng, base), "quality": 0.9, "fetched_at": "2026-04-01T00:00:00Z"},
    ]
    _, kept, clusters, _ = dedup(rows)
    assert kept == [ident(3)]  # quality 0.9, then the earlier fetch
    assert {c[1]: c[2] for c in clusters} == {ident(1): ident(3), ident(2): ident(3)}
    rows = [{k: v for k, v in r.items() if k != "quality"} for r in rows]
    assert dedup(rows)[1] == [ident(1)]  # no quality: earliest fetch
    rows = [{k: v for k, v in r.items() if k != "fetched_at"} for r in rows]
    assert dedup(rows)[1] == [ident(1)]  # neither: smallest id


def test_exact_duplicate_of_a_dropped_near_duplicate_points_at_the_final_keeper():
    rng = random.Random(5)
    base = en_doc(rng)
    variant = edit_words(rng, base)
    rows = [{"id": ident(1), "text": base}, {"id": ident(2), "text": variant},
            {"id": ident(3), "text": variant.upper()}]  # exact duplicate of 2 (case folded)
    _, kept, clusters, rejected = dedup(rows)
    assert kept == [ident(1)]
    by_doc = {c[1]: c for c in clusters}
    assert by_doc[ident(2)][2] == ident(1) and by_doc[ident(2)][4] == "near"
    assert by_doc[ident(3)][2] == ident(1) and by_doc[ident(3)][4] == "exact"  # handed on to the final keeper
    assert by_doc[ident(3)][0] == by_doc[ident(2)][0]  # one cluster id
    assert rejected[ident(3)] == ("exact_duplicate", ident(1))


def test_near_off_keeps_near_duplicates_and_runs_are_deterministic(crafted):
    rows, planted = crafted
    _, kept_off, clusters_off, _ = dedup(rows, DedupSettings(near=False))
    assert set(planted) <= set(kept_off) and not clusters_off
    assert dedup(rows)[1:] == dedup(list(reversed(rows)))[1:]  # input order does not matter


def test_verification_threshold_decides_borderline_pairs():
    rng = random.Random(11)
    base = en_doc(rng, paragraphs=8)
    far = edit_words(rng, base, every=12)  # about 1 word in 12 changed: Jaccard of 5-grams ~0.6
    p = MinHashParams()
    j = exact_jaccard(base, far, p)
    assert 0.3 < j < 0.75
    rows = [{"id": ident(1), "text": base}, {"id": ident(2), "text": far}]
    assert dedup(rows, DedupSettings(threshold=0.95))[1] == [ident(1), ident(2)]
    loose = dedup(rows, DedupSettings(threshold=0.0, bands=56, rows=2))  # many bands: a candidate pair
    assert loose[1] == [ident(1)]


def test_minhash_estimates_track_exact_jaccard():
    rng = random.Random(13)
    p = MinHashParams()
    texts = []
    for k in (60, 30, 15, 8):
        base = en_doc(rng)
        texts += [base, edit_words(rng, base, every=k)]
    sh, off = shingle_hashes(texts, None, p)
    sig = signatures(sh, off, p)
    est = estimated_jaccard(sig[0::2], sig[1::2])
    exact = np.array([exact_jaccard(texts[i], texts[i + 1], p) for i in range(0, len(texts), 2)])
    assert np.all(np.abs(est - exact) < 0.15), (est, exact)
    assert exact[0] > exact[-1]  # more edits, less similar


def test_compiled_kernel_computes_the_numpy_signatures_bit_for_bit():
    """The numba kernel (units split, hashed, shingled and minimised in one pass) against the
    Arrow + numpy path it replaces for space-separated scripts; CJK rows go through numpy."""
    import xxhash

    from dataset_platform.stages.dedup.kernel import xxh64

    for raw in (b"", b"a", b"abcd", b"abcdefg", b"abcdefgh", b"river bridge market", b"x" * 31, b"y" * 32,
                b"z" * 33, b"w" * 100, "naïve straße 中文".encode() * 5):
        data = np.frombuffer(raw, np.uint8) if raw else np.zeros(0, np.uint8)
        assert xxh64(data, 0, len(raw), np.uint64(7)) == xxhash.xxh64_intdigest(raw, 7), raw
    rng = random.Random(23)
    texts = [en_doc(rng) for _ in range(40)] + [
        "", None, "one", "two words", "a b c d", "a b c d e f",  # fewer units than n, exactly n, more
        "Hello, World!! \u00a0non\u2003breaking\u3000spaces", "tab\tnew\nline\rform\fvertical\vend",
        "Naïve CAFÉ, ÉCOLE and STRASSE/straße -- 3.14 + x_y_z", "¡¿…—“quoted”—!?", "   ", zh_doc(rng),
        "Ελληνικά κείμενα και русский текст тоже здесь", "emoji 🙂 between 🙂🙂 words here now",
    ]
    langs = [None] * (len(texts) - 3) + ["zh", None, None]
    for p in (MinHashParams(), MinHashParams(ngram=3, bands=4, rows=5, seed=9), MinHashParams(ngram=1)):
        sh, off = shingle_hashes(texts, langs, p)
        expected = signatures(sh, off, p)
        got = batch_signatures(pa.array(texts, pa.string()), pa.array(langs, pa.string()), p)
        assert got.shape == expected.shape and got.dtype == np.uint64
        assert np.array_equal(got, expected), np.flatnonzero((got != expected).any(axis=1))
        sliced = pa.array(texts, pa.string()).slice(40, 8)  # an Arrow slice: buffers with an offset
        assert np.array_equal(batch_signatures(sliced, None, p), expected[40:48])


def test_cjk_documents_use_character_shingles():
    rng = random.Random(17)
    a = zh_doc(rng)
    p = MinHashParams()
    _, off = shingle_hashes([a], ["zh"], p)
    han = sum(1 for c in a if c != "。")
    assert off[1] == han - p.cjk_ngram + 1  # one shingle per 5 consecutive characters
    assert exact_jaccard(a, edit_chars(rng, a), p, "zh") > 0.6


def test_stage_dedup_cli(tmp_path, crafted):
    import subprocess
    import sys

    rows, planted = crafted
    inp = tmp_path / "docs.jsonl"
    inp.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out, clusters = tmp_path / "kept.parquet", tmp_path / "clusters.jsonl"
    r = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "stage", "dedup", "--input", str(inp),
                        "--output", str(out), "--clusters", str(clusters)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    kept = pq.read_table(out).column("id").to_pylist()
    assert set(kept) == {r["id"] for r in rows} - set(planted)
    got = [json.loads(line) for line in clusters.read_text().splitlines()]
    assert {c["doc_id"]: c["keeper_id"] for c in got} == planted and {c["kind"] for c in got} == {"near"}
    r = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "stage", "dedup", "--input", str(inp),
                        "--output", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--clusters" in r.stderr


def test_incremental_refresh_matches_a_full_run_and_reuses_signatures(tmp_path, crafted):
    rows, planted = crafted
    first = [r for r in rows if int(r["id"], 16) < 200 or int(r["id"], 16) >= 300]  # originals, boilerplate docs
    index = tmp_path / "minhash_index"
    logs: list[str] = []

    def run(batch, log=None):
        con = memory_connection()
        con.register("a", pa.Table.from_pylist(batch))
        con.sql("CREATE TABLE d AS SELECT * FROM a")
        idx = MinHashIndex(index)
        run_dedup(con, "d", index=idx, log=log)
        idx.commit(con)
        return [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()], \
            dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall())

    kept1, _ = run(first)
    assert index.exists() and set(kept1) == {r["id"] for r in first}
    kept2, clusters2 = run(rows, logs.append)  # the refresh brings the planted variants
    full_con = dedup(rows)
    assert kept2 == full_con[1]  # the same kept set as one run over everything
    assert clusters2 == planted
    # only the 7 new documents were signed; the others came from the index
    assert f"dedup: signatures for {len(planted)}/{len(planted)} new or changed documents ({len(first)} reused)" in logs


def test_a_document_kept_before_wins_over_a_newcomer(tmp_path):
    rng = random.Random(23)
    base = en_doc(rng)
    index = tmp_path / "minhash_index"

    def run(batch):
        con = memory_connection()
        con.register("a", pa.Table.from_pylist(batch))
        con.sql("CREATE TABLE d AS SELECT * FROM a")
        idx = MinHashIndex(index)
        run_dedup(con, "d", index=idx)
        idx.commit(con)
        return [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()]

    old = {"id": ident(9), "text": base}
    newcomer = {"id": ident(1), "text": edit_words(rng, base)}  # smaller id: would win a fresh run
    assert run([old]) == [ident(9)]
    assert run([old, newcomer]) == [ident(9)]  # the published document stays
    shutil.rmtree(index)
    assert run([old, newcomer]) == [ident(1)]  # without history the id decides

    # the same for exact duplicates: a later copy with a smaller URL/id does not displace it
    shutil.rmtree(index)
    mirror = {"id": ident(8), "url": "http://x.test/mirror/a", "text": base}
    original = {"id": ident(2), "url": "http://x.test/a", "text": base.upper()}  # same normalised text
    assert run([mirror]) == [ident(8)]
    assert run([mirror, original]) == [ident(8)]
    shutil.rmtree(index)
    assert run([mirror, original]) == [ident(2)]


def test_a_newcomer_linking_two_kept_documents_drops_neither(tmp_path, monkeypatch):
    """A and B share too little to be near-duplicates; N is near to both. Kept before, A and B
    both stay when N arrives (N goes to one of them), by difference and by the full pass alike;
    without history the chain A-N-B is one cluster with one keeper."""
    rng = random.Random(5)
    words = en_doc(rng, paragraphs=5, words=80).split(" ")

    def edited(start: int, word: str) -> str:
        return " ".join(word if i % 40 == start else w for i, w in enumerate(words))

    a = {"id": ident(5), "text": edited(3, "alpha"), "quality": 0.5}
    b = {"id": ident(6), "text": edited(23, "beta"), "quality": 0.9}
    n = {"id": ident(1), "text": " ".join(words), "quality": 0.1}
    others = [{"id": ident(100 + i), "text": en_doc(rng), "quality": 0.5} for i in range(30)]
    first = tmp_path / "first"
    kept, clusters, _ = _indexed_run([a, b, *others], first)
    assert {a["id"], b["id"]} <= set(kept) and not clusters  # not near-duplicates of each other
    shutil.copytree(first, tmp_path / "full")
    kept, clusters, logs = _indexed_run([a, b, n, *others], first)
    assert any(m.startswith("dedup: refresh by difference") for m in logs)
    assert {a["id"], b["id"]} <= set(kept) and clusters == {n["id"]: b["id"]}  # B: the higher quality
    with monkeypatch.context() as m:
        m.setattr(dedup_refresh, "refresh_by_difference", lambda *a, **k: None)
        assert _indexed_run([a, b, n, *others], tmp_path / "full")[:2] == (kept, clusters)
    fresh, clusters, _ = _indexed_run([a, b, n, *others], tmp_path / "fresh")
    assert a["id"] not in fresh and clusters == {n["id"]: b["id"], a["id"]: b["id"]}


def _indexed_run(batch, index_dir, *, settings=None, commit=True, **kw):
    """One dedup run against the index in ``index_dir``: (kept ids, clusters, log lines)."""
    logs: list[str] = []
    con = memory_connection()
    con.register("a", pa.Table.from_pylist(batch))
    con.sql("CREATE TABLE d AS SELECT * FROM a")
    idx = MinHashIndex(index_dir)
    run_dedup(con, "d", settings, index=idx, log=logs.append, **kw)
    kept = [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()]
    clusters = dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall())
    if commit:
        idx.commit(con)
    return kept, clusters, logs


def _signed(logs: list[str]) -> str:
    return next(m for m in reversed(logs) if m.startswith("dedup: signatures for"))


def test_signing_on_a_process_pool_gives_the_same_result(crafted, monkeypatch):
    rows, planted = crafted
    _, one, _, _ = dedup(rows)
    con = memory_connection()
    con.register("a", pa.Table.from_pylist(rows))
    run_dedup(con, "a", batch_size=4, workers=2)  # 10 batches over 2 processes
    assert [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()] == one
    assert dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall()) == planted
    logs: list[str] = []
    run_dedup(con, "a", batch_size=8, workers=2, log=logs.append)  # 6 batches (<= IN_PROCESS): on 2 threads
    assert [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()] == one
    assert dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall()) == planted
    assert 1 < sum(m.startswith("dedup: signatures for") for m in logs) <= 8  # several batches, on threads
    # these few documents take the numpy path in this process; through the compiled kernel, the same
    from dataset_platform.stages.dedup import stage as dedup_module

    monkeypatch.setattr(dedup_module, "KERNEL_MIN_DOCS", 0)
    run_dedup(con, "a", batch_size=8, workers=2)
    assert [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()] == one
    assert dict(con.sql("SELECT doc_id, keeper_id FROM clusters").fetchall()) == planted


def test_a_failed_run_leaves_the_index_as_it_was(tmp_path, crafted):
    rows, planted = crafted
    first = [r for r in rows if r["id"] not in planted]
    index = tmp_path / "minhash_index"
    _indexed_run(first, index)
    before = {f.name: f.read_bytes() for f in index.iterdir()}
    _indexed_run(rows, index, commit=False)  # e.g. writing the layer failed: no commit
    assert {f.name for f in index.iterdir() if not f.name.startswith(".")} >= set(before)
    assert (index / "index.json").read_bytes() == before["index.json"]
    # a run killed hard while writing a part's arrays leaves a temporary file
    atomic.temporary_path(index / "part-00099.sig.npy").write_bytes(b"cut off")
    _, clusters, logs = _indexed_run(rows, index)  # the next run signs the newcomers again
    assert clusters == planted
    assert _signed(logs) == f"dedup: signatures for {len(planted)}/{len(planted)} new or changed documents ({len(first)} reused)"
    # files of the uncommitted and the killed run are gone after this commit
    meta = json.loads((index / "index.json").read_text())
    assert sorted(f.name for f in index.iterdir()) == sorted(
        ["index.json", *meta["state"], *meta["docs"], *(meta[name] for name in ("edges", "exact", "near", "flipped")),
         *(f"part-{p:05d}{ext}" for p in meta["parts"] for ext in (".parquet", ".sig.npy", ".bkeys.npy", ".brows.npy"))])


def test_changed_text_and_changed_settings(tmp_path, crafted):
    rows, planted = crafted
    index = tmp_path / "minhash_index"
    _indexed_run(rows, index)
    n = len(rows)  # no exact duplicates here: every document is signed
    # the same documents again: nothing signed, every edge reused
    kept, clusters, logs = _indexed_run(rows, index)
    assert clusters == planted
    assert not [m for m in logs if m.startswith("dedup: signatures for")]  # nothing to sign
    assert any(f"{len(planted)} verified pairs reused from the index" in m for m in logs)
    # one original changes its text: it alone is signed again, and its variant is now the keeper
    changed = [dict(r, text=en_doc(random.Random(99))) if r["id"] == ident(0) else r for r in rows]
    kept, clusters, logs = _indexed_run(changed, index)
    assert _signed(logs) == f"dedup: signatures for 1/1 new or changed documents ({n - 1} reused)"
    assert ident(0) in kept and ident(200) in kept and ident(200) not in clusters
    # a new threshold keeps the signatures but verifies every edge again
    kept, clusters, logs = _indexed_run(changed, index, settings=DedupSettings(threshold=0.75))
    assert not [m for m in logs if m.startswith("dedup: signatures for")]
    assert not [m for m in logs if "reused from the index" in m]
    # other shingles: everything is signed again
    kept, clusters, logs = _indexed_run(changed, index, settings=DedupSettings(ngram=4))
    assert _signed(logs) == f"dedup: signatures for {n}/{n} new or changed documents (0 reused)"
    assert clusters == {k: v for k, v in planted.items() if k != ident(200)}


def test_parts_are_compacted_when_mostly_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(MinHashIndex, "COMPACT_MIN_ROWS", 10)
    rng = random.Random(31)
    base = en_doc(rng)
    pair = [{"id": ident(0), "text": base}, {"id": ident(1), "text": edit_words(rng, base)}]  # never changes
    index = tmp_path / "minhash_index"

    def batch(texts: list[str]) -> list[dict]:
        return pair + [{"id": ident(10 + i), "text": t} for i, t in enumerate(texts)]

    a = [en_doc(rng) for _ in range(30)]
    b = [a[0]] + [en_doc(rng) for _ in range(29)]  # all but one replaced
    c = [a[0], b[1]] + [en_doc(rng) for _ in range(28)]  # again, keeping one text of each earlier run
    _indexed_run(batch(a), index)  # part 1: 32 signatures
    _indexed_run(batch(b), index)  # part 2: 29; part 1 holds 3 live rows of 32
    assert json.loads((index / "index.json").read_text())["parts"] == [1, 2]
    kept, clusters, _ = _indexed_run(batch(c), index)  # part 3: 28; parts would hold 89 rows for 32 live
    meta = json.loads((index / "index.json").read_text())
    assert len(meta["parts"]) == 1 and sorted(f.name for f in index.glob("part-*.parquet")) == [
        f"part-{meta['parts'][0]:05d}.parquet"]
    assert clusters == {ident(1): ident(0)}
    kept2, clusters2, logs = _indexed_run(batch(c), index)  # the compacted part serves the next run
    assert (kept2, clusters2) == (kept, clusters)
    assert not [m for m in logs if m.startswith("dedup: signatures for")]
