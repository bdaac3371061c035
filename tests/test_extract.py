"""Extraction: the chain, title/date, paragraph breaks, legacy encodings, the per-page time bound and
error isolation, worker processes, text dumps' records in bulk (the same rows as one by one), and
the config wiring (real trafilatura, resiliparse, DuckDB)."""

from __future__ import annotations

import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from dataset_platform.config import ConfigError, ExtractSettings, parse_config
from dataset_platform.stages import extract as extract_mod
from dataset_platform.stages.extract import (
    _FOLD,
    _LINE_BREAKS,
    _SPACES,
    _WS,
    DEFAULT_CHAIN,
    Extracted,
    Options,
    _fold_lines,
    extract_html,
    extract_page,
    extract_text_batch,
    fold_lines_array,
    options_from,
    run_chain,
    run_extract,
)
from dataset_platform.storage import memory_connection

PARAS = [
    "The ferry between Aldmouth and the outer islands will run twice a day from next month, the operator said on Tuesday.",
    "Residents had asked for a second crossing for years, because the single morning boat left no time for hospital visits.",
    "The new timetable adds an evening departure and a larger vessel that can carry twelve cars and forty bicycles.",
    "Fares stay the same for island residents, while visitors will pay a small surcharge during the summer season.",
]
ZH_PARAS = [
    "滨江区新建的社区食堂于本周三开始营业，附近的老人可以在这里吃到价格实惠的午饭。",
    "食堂每天提供三种套餐，工作人员还会根据季节调整菜单，让饭菜更加清淡健康。",
    "不少居民表示，有了这个食堂以后，子女上班时也不用再担心家里老人的吃饭问题。",
]


def article_page(title: str, paras: list[str], *, lang: str = "en", date: str | None = None, charset: str = "utf-8") -> str:
    meta = f"<meta property='article:published_time' content='{date}T08:30:00+00:00'>" if date else ""
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f"<html lang='{lang}'><head><meta charset='{charset}'><title>{title}</title>{meta}</head><body>"
        "<nav><ul><li><a href='/'>Home</a></li><li><a href='/news'>News</a></li><li><a href='/contact'>Contact</a></li></ul></nav>"
        f"<main><article><h1>{title}</h1>{body}</article></main>"
        "<footer><p>Copyright 2019 Aldmouth Courier. All rights reserved.</p></footer></body></html>"
    )


def test_main_text_title_date_and_paragraph_breaks():
    ex = extract_html(article_page("Second ferry for the islands", PARAS, date="2026-03-17"), "http://a.test/ferry")
    assert ex is not None and ex.extractor == "trafilatura"
    assert ex.title == "Second ferry for the islands"
    assert ex.date == "2026-03-17"  # from the page's metadata, not the footer's copyright year
    lines = ex.text.split("\n")
    for p in PARAS:  # every paragraph on a line of its own
        assert p in lines
    assert "Contact" not in ex.text and "All rights reserved" not in ex.text  # boilerplate removed
    assert ex.lang == "en" and 0.5 < ex.lang_score <= 1


def test_no_date_in_metadata_gives_none():
    ex = extract_html(article_page("Second ferry for the islands", PARAS), "http://a.test/ferry")
    assert ex is not None and ex.date is None


def test_gbk_page_given_as_bytes_is_decoded():
    html = article_page("社区食堂开业", ZH_PARAS, lang="zh", charset="gbk").encode("gbk")
    ex = extract_html(html, "http://a.test/zh")
    assert ex is not None
    assert ZH_PARAS[0] in ex.text and ex.lang == "zh"


def test_gbk_bytes_labelled_utf8_by_the_server_still_decode():
    html = article_page("社区食堂开业", ZH_PARAS, lang="zh", charset="gbk").encode("gbk")
    from dataset_platform.stages.extract import decode

    assert ZH_PARAS[1] in decode(html, "text/html; charset=utf-8")


def test_chain_falls_through_and_records_the_extractor():
    html = article_page("Second ferry for the islands", PARAS)
    # min_chars above what any extractor finds: every extractor runs, the longest text wins
    ex = run_chain(html, None, ("trafilatura", "resiliparse"), min_chars=10**9)
    assert ex is not None and ex.extractor in ("trafilatura", "resiliparse")
    assert ex.title == "Second ferry for the islands"  # metadata still from trafilatura
    only_resiliparse = run_chain(html, None, ("resiliparse",))
    assert only_resiliparse is not None and only_resiliparse.extractor == "resiliparse"
    assert PARAS[2] in only_resiliparse.text


def test_page_without_main_text_gives_none():
    assert extract_html("<html><head><title>Empty</title></head><body><div><img src='a.png'></div></body></html>") is None


# ---------------------------------------------------------------- the stage: time bound, errors, workers

def slow_on_marker(html: str, url: str | None) -> Extracted | None:
    """Module-level (picklable) extractor: hangs on pages marked SLOW, raises on pages marked BOOM."""
    if "SLOW" in html:
        time.sleep(30)
    if "BOOM" in html:
        raise UnicodeError("synthetic failure")
    return run_chain(html, url, DEFAULT_CHAIN)


def raw_table(con, pages: dict[str, str]) -> str:
    ids = sorted(pages)
    con.register(
        "raw_arrow",
        pa.table(
            {
                "id": ids,
                "source": ["s"] * len(ids),
                "crawl_id": ["c1"] * len(ids),
                "url": [f"http://a.test/{i}" for i in ids],
                "status": [200] * len(ids),
                "content_type": ["text/html"] * len(ids),
                "html": [pages[i] for i in ids],
            }
        ),
    )
    con.sql("CREATE TABLE raw_in AS SELECT * FROM raw_arrow")
    return "raw_in"


@pytest.mark.parametrize("workers", [1, 2])
def test_slow_and_failing_pages_are_rejected_and_the_rest_goes_on(workers):
    pages = {f"p{i:02d}": article_page(f"Ferry news {i}", PARAS[i % 4 :] + PARAS[: i % 4]) for i in range(8)}
    pages["p03"] = pages["p03"].replace("<body>", "<body><!-- SLOW -->")
    pages["p05"] = pages["p05"].replace("<body>", "<body><!-- BOOM -->")
    con = memory_connection()
    t0 = time.monotonic()
    res = run_extract(con, raw_table(con, pages), batch_size=3,
                      options=Options(timeout_s=1.0, workers=workers, chunk_size=2), extract_fn=slow_on_marker)
    assert time.monotonic() - t0 < 25  # the 30 s page was cut at its 1 s bound
    rejected = {r[0]: (r[1], r[2]) for r in con.sql("SELECT id, rule, value FROM rejected").fetchall()}
    assert rejected == {"p03": ("extract_timeout", "1"), "p05": ("extract_error", "UnicodeError")}
    kept = [r[0] for r in con.sql("SELECT id FROM kept ORDER BY id").fetchall()]
    assert kept == [p for p in sorted(pages) if p not in rejected]
    assert res.kept_rows == 6 and res.rejected_rows == 2


def test_workers_give_the_same_rows_as_one_process():
    pages = {f"p{i:02d}": article_page(f"Ferry news {i}", PARAS[i % 4 :] + PARAS[: i % 4], date=f"2026-01-{i + 1:02d}")
             for i in range(12)}
    outs = []
    for workers in (1, 2):
        con = memory_connection()
        run_extract(con, raw_table(con, pages), batch_size=5, options=Options(workers=workers, chunk_size=3))
        outs.append(con.sql("SELECT * FROM kept ORDER BY id").fetchall())
    assert outs[0] == outs[1] and len(outs[0]) == 12
    assert outs[0][0][5] == "2026-01-01"  # the date column


def test_extract_settings_in_config():
    base = {"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://127.0.0.1:1/"], "allowed_domains": ["127.0.0.1"]}]}
    cfg = parse_config({**base, "pipeline": {"extract": {"chain": ["resiliparse", "trafilatura"], "timeout_s": 2.5,
                                                         "workers": 1}}})
    opts = options_from(cfg.pipeline.extract)
    assert opts.chain == ("resiliparse", "trafilatura") and opts.timeout_s == 2.5 and opts.workers == 1
    assert options_from(ExtractSettings()).chain == DEFAULT_CHAIN
    with pytest.raises(ConfigError, match="chain"):
        parse_config({**base, "pipeline": {"extract": {"chain": ["boilerpipe"]}}})
    with pytest.raises(ConfigError, match="timeout_s"):
        parse_config({**base, "pipeline": {"extract": {"timeout_s": -1}}})


# ---------------------------------------------------------------- text dumps' records, in bulk

def test_character_classes_are_pythons():
    """The bulk folding's classes are what str.splitlines, str.strip and _WS use (this Python)."""
    breaks, spaces, fold = set(), set(), set()
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if len(f"a{c}a".splitlines()) == 2:
            breaks.add(c)
        elif c.isspace():
            spaces.add(c)
        if _WS.fullmatch(c) and c not in breaks:
            fold.add(c)
    assert breaks == set(_LINE_BREAKS) and spaces == set(_SPACES) and fold == set(_FOLD)


TRICKY = [
    "plain ascii text, one line",
    "  Two  spaces\tand\t\ttabs  \n\n\n  second   line  \n",
    "windows\r\nline\r\nends\r\n\r\n", "old mac\rends\r\r", "\n\rreversed\n\r",
    "vertical\x0btab\x0cform feed", "file\x1cgroup\x1drecord\x1eunit\x1fsep",
    "next line\x85here", "line\u2028separator\u2029paragraph",
    "nbsp\xa0\xa0inside \xa0 and\xa0", "\xa0leading nbsp", "zero\u200bwidth\u200b\u200b space",
    "\u200b", "\u200b\n\u200b\nafter zero-width lines", "\t\t", "\n\n \n\t\n", " \u3000 \n",
    "\u3000全角空格\u3000开头和结尾\u3000", "ideographic\u3000space inside",
    "\u2000en quad\u2001em quad\u2002\u200a hair\u202fnarrow\u205fmath\u1680ogham",
    "\n".join(ZH_PARAS), "東京都は本日、新しい図書館を開館しました。\n\n\u3000市民の皆さまのご来館をお待ちしています。",
    "서울시는 오늘 새로운 도서관을 열었다고 밝혔다.", "Привет, мир!\r\nЭто тест.",
    "مرحبا بالعالم. هذا اختبار للغة العربية.", "e\u0301te\u0301 combining acute", "A\u030angstrom \u212b sign",
    "\u1e0b\u0323 dot order", "\u1100\u1161\u11a8 hangul jamo", "\uff21\uff22 fullwidth \ufb01 ligature",
    "\ufffd\ufffd replacement chars", "nonchar \ufffe\uffff\ufdd0", "nul \x00 and \x01 controls",
    "c1 \x80\x96 controls", "private \ue000\U000f0000 use", "tags \U000e0001\U000e0041", "\ufeffbom first",
    "max \U0010ffff", "emoji 👍🏽 and ZWJ 👩\u200d💻", "<p>looks like <b>html</b> &amp; entities</p>",
    "word " * 30000, "x" * 70000 + "\n" + "y " * 1000, "   \n".join(["short"] * 500),
]
ALPHABET = "ab字é \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2009\u200a\u200b\u2028\u2029\u202f\u205f\u3000\u0301\u0323\u030a\ufeff\U0001f44d"


def fuzz_texts(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def text_batch(texts: list[str], titles: list[str | None] | None = None) -> pa.RecordBatch:
    titles = titles or [None, "  A title  ", "\u3000标题\u3000", "", "\xa0"] * (len(texts) // 5 + 1)
    return pa.RecordBatch.from_pydict({"id": [f"t{i:05d}" for i in range(len(texts))], "text": texts,
                                       "title": titles[: len(texts)]})


@pytest.mark.parametrize("threads", [None, 2])
def test_text_rows_in_bulk_equal_from_text_row_by_row(threads, monkeypatch):
    texts = TRICKY + fuzz_texts(3000)
    assert [_fold_lines(t) for t in texts] == fold_lines_array(pa.array(texts)).to_pylist()
    # a low bound sends the longest texts through extract_page (under its time bound) instead
    monkeypatch.setattr(extract_mod, "BULK_MAX_BYTES", 20000)
    batch = text_batch(texts)
    opts = Options(workers=threads or 1)
    with ThreadPoolExecutor(2) as pool:
        got = extract_text_batch(batch, opts, pool if threads else None)
    want = [extract_page(None, None, r["text"], r["title"], opts) for r in batch.to_pylist()]
    assert got.schema.names == ["id", "title", "date", "text", "lang", "lang_score", "extractor", "rule", "value"]
    assert got.column("id").to_pylist() == batch.column("id").to_pylist()
    assert [tuple(r.values())[1:] for r in got.to_pylist()] == want
    rules = {r[6] for r in want}
    assert rules == {None, "no_main_text", "extract_error"}  # every way a text row can end


def test_blank_check_is_duckdbs_trim():
    """The triage's cheaper blank test says what length(trim(x)) = 0 says."""
    texts = TRICKY + fuzz_texts(2000, seed=2) + ["", " ", "   ", "\xa0\u3000 \u2000", " \u0301", "\u2000 a", "\t "]
    con = memory_connection()
    con.register("strings", pa.table({"x": texts}))
    got = con.sql(f"SELECT {extract_mod._blank('x')}, length(trim(x)) = 0 FROM strings").fetchall()
    assert [g for g, _ in got] == [w for _, w in got] and sum(w for _, w in got) >= 4


def dump_table(con, rows: dict[str, tuple]) -> str:
    """raw_pages rows id -> (status, content_type, html, text, title)."""
    ids = sorted(rows)
    cols = list(zip(*(rows[i] for i in ids)))
    con.register("dump_arrow", pa.table({
        "id": ids, "source": ["s"] * len(ids), "crawl_id": ["c1"] * len(ids),
        "url": [f"http://a.test/{i}" for i in ids], "status": pa.array(cols[0], pa.int32()),
        "content_type": pa.array(cols[1], pa.string()), "html": pa.array(cols[2], pa.string()),
        "text": pa.array(cols[3], pa.string()), "title": pa.array(cols[4], pa.string()),
    }))
    con.sql("CREATE TABLE dump_in AS SELECT * FROM dump_arrow")
    return "dump_in"


def expected_outputs(rows: dict[str, tuple], opts: Options):
    """kept / rejected as the triage (in SQL: DuckDB's trim) then extract_page on every page gives them."""
    con = memory_connection()

    def blank(s: str) -> bool:
        return con.sql("SELECT length(trim(?)) = 0", params=[s]).fetchall()[0][0]

    kept, rejected = [], []
    for i in sorted(rows):
        status, ctype, html, text, title = rows[i]
        url = f"http://a.test/{i}"
        if not 200 <= status <= 299:
            rejected.append((i, "s", url, "extract", "http_status", str(status)))
            continue
        if text is not None and html is None:
            if blank(text):
                rejected.append((i, "s", url, "extract", "empty_body", "0"))
                continue
        elif ctype not in ("text/html", "application/xhtml+xml"):
            rejected.append((i, "s", url, "extract", "not_html", ctype or ""))
            continue
        elif html is None or blank(html):
            rejected.append((i, "s", url, "extract", "empty_body", "0"))
            continue
        title_, date, body, lang, score, extractor, rule, value = extract_page(url, html, text, title, opts)
        if rule:
            rejected.append((i, "s", url, "extract", rule, value))
        else:
            kept.append((i, "s", "c1", url, title_, date, body, lang, score, extractor))
    return kept, rejected


@pytest.mark.parametrize("workers", [1, 2])
def test_mixed_html_and_text_dump_gives_the_rows_of_page_by_page(workers, monkeypatch):
    monkeypatch.setattr(extract_mod, "BULK_MAX_BYTES", 20000)
    rows: dict[str, tuple] = {}
    for i, t in enumerate(TRICKY + fuzz_texts(200, seed=5)):
        rows[f"t{i:04d}"] = (200, "text/plain", None, t, ["  Title ", None, "\u3000"][i % 3])
    for i in range(6):
        rows[f"h{i:02d}"] = (200, "text/html", article_page(f"Ferry news {i}", PARAS[i % 4:] + PARAS[: i % 4]),
                             None, None)
    rows["h90"] = (200, "text/html", "<html><body><img src='a.png'></body></html>", None, None)
    rows["h91"] = (200, "text/html", article_page("Both", PARAS), "text beside html: the html wins", "T")
    rows["x01"] = (404, "text/plain", None, "not found", None)
    rows["x02"] = (200, "text/plain", None, "", None)
    rows["x03"] = (200, "text/plain", None, "    ", None)
    rows["x04"] = (200, "application/pdf", None, None, None)
    opts = Options(workers=workers, chunk_size=3)
    con = memory_connection()
    res = run_extract(con, dump_table(con, rows), batch_size=64, options=opts)
    kept, rejected = expected_outputs(rows, opts)
    assert con.sql("SELECT * FROM kept").fetchall() == kept
    assert con.sql("SELECT * FROM rejected ORDER BY id").fetchall() == rejected
    assert res.kept_rows == len(kept) and res.rejected_rows == len(rejected)
    assert {r[-1] for r in kept} == {"text", "trafilatura"}


def test_text_only_input_starts_no_process_pool(monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("a process pool was started for text rows")

    monkeypatch.setattr(extract_mod, "ProcessPoolExecutor", no_pool)
    rows = {f"t{i:03d}": (200, "text/plain", None, "\n".join(PARAS[: 1 + i % 4]), None) for i in range(50)}
    con = memory_connection()
    res = run_extract(con, dump_table(con, rows), batch_size=16, options=Options(workers=2))
    assert res.kept_rows == 50
    assert con.sql("SELECT DISTINCT lang, extractor FROM kept").fetchall() == [("en", "text")]
