"""Extraction: the chain, title/date, paragraph breaks, legacy encodings, the per-page time bound and
error isolation, worker processes, and the config wiring (real trafilatura, resiliparse, DuckDB)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from dataset_platform.config import ConfigError, ExtractSettings, parse_config
from dataset_platform.stages.extract import (
    DEFAULT_CHAIN,
    Extracted,
    Options,
    extract_html,
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
