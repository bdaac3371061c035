"""The plain library stages on crafted documents, with real DuckDB."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.config import CleanSettings, DatasetSettings, ReleaseSettings, SplitSettings
from dataset_platform.release.publish import latest_release, publish_release
from dataset_platform.release.split import assign_splits
from dataset_platform.stages.clean.stage import normalise_text, run_clean
from dataset_platform.stages.dedup.stage import run_dedup
from dataset_platform.stages.extract import detect_language, extract_html, run_extract
from dataset_platform.storage import memory_connection

EN_PARAS = [
    "The harbour town of Westmere opened its new tidal laboratory on Monday, after four years of planning.",
    "Researchers there will measure how the estuary changes with each season and publish the figures every month.",
    "Local schools have already booked visits, and the mayor said the building would stay open to the public.",
    "Funding came from a regional science council, which expects the first report before the end of spring.",
]
ZH_TEXT = "西湖区的新图书馆于本周一正式开放。馆内收藏了三万多册图书，并设有儿童阅读区和自习室。市民可以免费办理借书证，每次最多借阅五本书。馆长表示，今后还会定期举办讲座和展览活动。"


def page(title: str, paras: list[str], lang: str = "en") -> str:
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f"<html lang='{lang}'><head><meta charset='utf-8'><title>{title}</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About us</a> <a href='/contact'>Contact</a></nav>"
        f"<article><h1>{title}</h1>{body}</article>"
        "<footer>Copyright 2026 Example Media. All rights reserved. Privacy policy. Terms of use.</footer>"
        "</body></html>"
    )


def test_extract_html_strips_boilerplate_and_detects_language():
    ex = extract_html(page("Tidal lab opens", EN_PARAS), "http://x.test/a")
    assert ex is not None
    assert "tidal laboratory" in ex.text and "All rights reserved" not in ex.text and "About us" not in ex.text
    assert ex.text.count("\n") >= 3  # paragraph breaks kept
    assert ex.title == "Tidal lab opens"
    assert ex.lang == "en" and 0.5 < ex.lang_score <= 1.0
    zh = extract_html(page("新图书馆开放", [ZH_TEXT], "zh"), "http://x.test/zh")
    assert zh is not None and zh.lang == "zh" and "图书馆" in zh.text
    assert detect_language("") == ("und", 0.0)


def raw_table(rows):
    cols = ["id", "source", "crawl_id", "url", "status", "content_type", "html"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_run_extract_triage_records_every_reason():
    con = memory_connection()
    con.register("raw_in", raw_table([
        ("a1", "s", "c", "http://x.test/a", 200, "text/html", page("Tidal lab opens", EN_PARAS)),
        ("a2", "s", "c", "http://x.test/missing", 404, "text/html", "<html>Not found</html>"),
        ("a3", "s", "c", "http://x.test/r.pdf", 200, "application/pdf", None),
        ("a4", "s", "c", "http://x.test/empty", 200, "text/html", "   "),
        ("a5", "s", "c", "http://x.test/nav", 200, "text/html", "<html><body><img src='/a.png'></body></html>"),
    ]))
    res = run_extract(con, "raw_in", batch_size=2)
    assert res.balanced and res.input_rows == 5 and res.kept_rows == 1
    rej = {r[0]: (r[1], r[2]) for r in con.sql("SELECT id, rule, value FROM rejected").fetchall()}
    assert rej == {"a2": ("http_status", "404"), "a3": ("not_html", "application/pdf"),
                   "a4": ("empty_body", "0"), "a5": ("no_main_text", rej["a5"][1])}
    assert con.sql("SELECT lang FROM kept").fetchall() == [("en",)]


def test_normalise_text_repairs_and_folds():
    assert normalise_text("cafÃ©  \t  au\u00a0lait\x07\r\n\r\n\r\n\r\nnext") == "café au lait\n\nnext"


def test_clean_keeps_a_written_article_and_drops_a_fragment():
    article = "\n".join(EN_PARAS + ["The council will publish the full plan on its website next week."])
    con = memory_connection()
    con.register("docs", pa.table({"id": ["a", "b"], "text": [article, "Home | News | Contact"]}))
    res = run_clean(con, "docs", CleanSettings())
    assert res.balanced and res.kept_rows == 1
    assert con.sql("SELECT id, stage, rule FROM rejected").fetchall() == [("b", "clean", "gopher_repetition.top_2gram_char_frac")]


def test_clean_redacts_pii_and_counts():
    text = " ".join(EN_PARAS) + " Write to jane.doe@example.com or call +44 20 7946 0123 or (555) 010-1234. 请拨打13800138000。"
    con = memory_connection()
    con.register("docs", pa.table({"id": ["p"], "text": [text]}))
    # a short text dense with numbers: the quality rules only annotate here, PII is what is tested
    run_clean(con, "docs", CleanSettings(rules={f: {"mode": "annotate"} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}))
    out, em, ph = con.sql("SELECT text, pii_email, pii_phone FROM kept").fetchall()[0]
    assert "@" not in out and "7946" not in out and "010-1234" not in out and "13800138000" not in out
    assert out.count("<EMAIL>") == 1 and out.count("<PHONE>") == 3
    assert (em, ph) == (1, 3)
    assert "2026" not in text or "2026" in out  # plain numbers are not phones


def test_clean_redacts_pii_in_urls_and_leaves_other_urls_byte_for_byte():
    """Issue 19, probe 4: an e-mail, a phone and a card number in a query string were released."""
    article = "\n".join(EN_PARAS + ["The council will publish the full plan on its website next week."])
    urls = ["https://shop.test/checkout?email=jane%40example.com&tel=%2B14155552671&cc=4111111111111111&p=2",
            "https://news.test/2026/05/tidal-lab-1234567.html?utm_source=feed",
            "https://jane:secret@site.test/profile"]
    con = memory_connection()
    con.register("docs", pa.table({"id": ["a", "b", "c"], "url": urls, "title": ["T", "T", "T"],
                                   "text": [article, article + " Again.", article + " Once more."]}))
    res = run_clean(con, "docs", CleanSettings())
    assert res.kept_rows == 3 and res.extra["urls_redacted"] == 2
    got = dict(con.sql("SELECT id, url FROM kept").fetchall())
    assert got["a"] == "https://shop.test/checkout?email=%3CEMAIL%3E&tel=%3CPHONE%3E&cc=%3CCARD%3E&p=2"
    assert got["b"] == urls[1]  # no PII: unchanged (dates and article numbers are not phones)
    assert got["c"] == "https://site.test/profile"  # credentials never released


def test_dedup_keeps_one_per_group_deterministically():
    con = memory_connection()
    con.register("docs", pa.table({
        "id": ["b", "a", "c", "d"],
        "url": ["http://x/mirror/1", "http://x/articles/1", "http://x/2", "http://x/3"],
        "text": ["Same  text here", "same text here", "other text", "third"],
    }))
    res = run_dedup(con, "docs")
    assert res.balanced and res.kept_rows == 3
    assert sorted(r[0] for r in con.sql("SELECT id FROM kept").fetchall()) == ["a", "c", "d"]
    assert con.sql("SELECT doc_id, keeper_id, kind, similarity FROM clusters").fetchall() == [("b", "a", "exact", 1.0)]
    assert con.sql("SELECT id, rule, value FROM rejected").fetchall() == [("b", "exact_duplicate", "a")]


def test_splits_are_stable_and_follow_ratios():
    con = memory_connection()
    con.sql("CREATE TABLE docs AS SELECT 'id' || i AS id, 'http://x/' || i AS url FROM range(20000) t(i)")
    s = SplitSettings(group_by=["url"])
    assign_splits(con, "docs", s)
    first = con.sql("SELECT id, split FROM split_docs ORDER BY id").fetchall()
    shares = dict(con.sql("SELECT split, count(*) / 20000 FROM split_docs GROUP BY 1").fetchall())
    assert abs(shares["train"] - 0.8) < 0.02 and abs(shares["validation"] - 0.1) < 0.015
    # adding documents never moves the old ones
    con.sql("INSERT INTO docs SELECT 'new' || i, 'http://y/' || i FROM range(500) t(i)")
    con.sql("CREATE TABLE prev AS SELECT id, split FROM split_assignments")
    assign_splits(con, "docs", s, previous_sql="prev")
    again = dict(con.sql("SELECT id, split FROM split_docs").fetchall())
    assert all(again[i] == sp for i, sp in first)


def _labelled(con, n=40):
    con.sql(f"""CREATE OR REPLACE TABLE lab AS SELECT 'doc' || lpad(i::VARCHAR, 3, '0') AS id, 'demo' AS source,
        'http://x/' || i AS url, 'T' || i AS title, 'text number ' || i AS text, 'en' AS lang,
        md5('text number ' || i) AS content_hash,
        CASE WHEN i % 2 = 0 THEN 'science' ELSE 'sports' END AS topic, 'rule' AS topic_source,
        0.5 AS topic_confidence FROM range({n}) t(i)""")


def test_release_is_deterministic_and_idempotent(tmp_path):
    con = memory_connection()
    _labelled(con)
    ds = DatasetSettings(name="t", license="cc-by-4.0")
    a = publish_release(con, "lab", tmp_path / "r1", ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    b = publish_release(con, "lab", tmp_path / "r2", ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    assert a.version == b.version and a.files == b.files and a.total_rows == 40
    for name in ("README.md", "manifest.json"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    again = publish_release(con, "lab", tmp_path / "r1", ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    assert again.created is False and len([p for p in (tmp_path / "r1" / "t").iterdir() if p.is_dir()]) == 1
    manifest = json.loads((a.path / "manifest.json").read_text())
    assert manifest["total_rows"] == 40 and set(manifest["rows"]) == {"train", "validation", "test"}
    card = (a.path / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "configs:" in card and "num_examples" in card
    t = pq.read_table(a.path / "data" / "train-00000-of-00001.parquet")
    assert t.num_rows == a.rows["train"] and "split" not in t.column_names
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{a.path}/data/*.parquet')").fetchall()[0][0] == 40


def test_failed_release_leaves_previous_intact(tmp_path, monkeypatch):
    con = memory_connection()
    _labelled(con)
    ds = DatasetSettings(name="t")
    first = publish_release(con, "lab", tmp_path, ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    before = {p: p.read_bytes() for p in first.path.rglob("*") if p.is_file()}
    _labelled(con, n=60)

    import dataset_platform.release.publish as rel

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(rel, "dataset_card", boom)
    with pytest.raises(OSError, match="disk full"):
        publish_release(con, "lab", tmp_path, ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    assert latest_release(tmp_path, "t") == first.path
    assert {p: p.read_bytes() for p in first.path.rglob("*") if p.is_file()} == before
    assert not list((tmp_path / "t").glob(".tmp-*"))  # no half-written folder left behind


def test_release_shards_are_bounded_and_load_with_datasets_and_duckdb(tmp_path):
    import datasets

    con = memory_connection()
    _labelled(con, n=300)
    con.sql("UPDATE lab SET text = repeat('words of the document number ' || id || '. ', 40)")
    info = publish_release(con, "lab", tmp_path, DatasetSettings(name="t"), SplitSettings(), config_fingerprint="f",
                           label_sets=["topic"], release=ReleaseSettings(max_shard_bytes=64 * 1024))
    manifest = json.loads((info.path / "manifest.json").read_text())
    train_files = sorted(k for k in manifest["files"] if k.startswith("data/train-"))
    assert len(train_files) >= 3 and train_files[0].endswith(f"-00000-of-{len(train_files):05d}.parquet")
    for rel in train_files:  # each shard holds at most the bound of text (no single document is larger)
        ((size,),) = duckdb.sql(f"SELECT sum(strlen(text) + strlen(title)) FROM read_parquet('{info.path / rel}')").fetchall()
        assert size <= 64 * 1024
    assert sum(m["rows"] for m in manifest["files"].values()) == 300 == info.total_rows
    files = {s: sorted(str(p) for p in (info.path / "data").glob(f"{s}-*.parquet")) for s in ("train", "validation", "test")}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    assert {k: v.num_rows for k, v in ds.items()} == info.rows
    assert ds["train"].column_names == ["id", "source", "url", "title", "text", "lang", "topic", "topic_source",
                                        "topic_confidence", "augmented_from"]
    from dataset_platform.release.publish import release_view_sql

    got = duckdb.sql(f"SELECT split, count(*) FROM {release_view_sql(info.path)} GROUP BY 1").fetchall()
    assert dict(got) == info.rows


def test_release_diff_and_stable_splits_against_the_previous_release(tmp_path):
    con = memory_connection()
    _labelled(con, n=200)
    ds = DatasetSettings(name="t")
    first = publish_release(con, "lab", tmp_path, ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"])
    con.sql("CREATE TABLE prev AS SELECT id, split FROM split_assignments")
    before = dict(con.sql("SELECT id, split FROM split_docs").fetchall())
    # refresh: 50 documents added, 10 removed, 5 relabelled
    _labelled(con, n=250)
    con.sql("DELETE FROM lab WHERE id IN (SELECT id FROM lab ORDER BY id LIMIT 10)")
    con.sql("UPDATE lab SET topic = 'culture' WHERE id IN (SELECT id FROM lab ORDER BY id LIMIT 5)")
    second = publish_release(con, "lab", tmp_path, ds, SplitSettings(), config_fingerprint="f", label_sets=["topic"],
                             previous_assignments_sql="prev")
    assert second.previous == first.version and second.diff == {"added": 50, "removed": 10, "changed": 5}
    after = dict(con.sql("SELECT id, split FROM split_docs").fetchall())
    assert all(after[i] == s for i, s in before.items() if i in after)
    diff = duckdb.sql(f"SELECT change, count(*) FROM read_parquet('{second.path / 'diff.parquet'}') GROUP BY 1").fetchall()
    assert dict(diff) == {"added": 50, "removed": 10, "changed": 5}
    card = (second.path / "README.md").read_text()
    assert f"Against {first.version}: 50 documents added, 10 removed, 5 changed" in card


def test_augmented_copies_stay_in_train_with_provenance(tmp_path):
    from dataset_platform.config import AugmentSettings
    con = memory_connection()
    _labelled(con, n=100)
    con.sql("UPDATE lab SET text = 'The big city council said the new plan will help many people start again ' || id")
    aug = AugmentSettings(enabled=True, copies=2, seed=3)
    info = publish_release(con, "lab", tmp_path, DatasetSettings(name="t"), SplitSettings(), config_fingerprint="f",
                           label_sets=["topic"], augment=aug)
    from dataset_platform.release.publish import release_view_sql

    rows = duckdb.sql(f"SELECT id, split, augmented_from, text FROM {release_view_sql(info.path)}").fetchall()
    originals = {r[0]: r for r in rows if r[2] is None}
    copies = [r for r in rows if r[2] is not None]
    assert len(originals) == 100 and copies
    assert all(r[1] == "train" and originals[r[2]][1] == "train" and r[3] != originals[r[2]][3] for r in copies)
    assert info.stats["augmentation"]["rows"] == len(copies)
    again = publish_release(con, "lab", tmp_path / "again", DatasetSettings(name="t"), SplitSettings(),
                            config_fingerprint="f", label_sets=["topic"], augment=aug)
    assert again.files == info.files  # deterministic copies
