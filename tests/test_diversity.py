"""Diversity floors and label balance over a real DuckDB relation."""

from __future__ import annotations

import duckdb

from dataset_platform.checks.diversity import assess, measure


def _table(con):
    con.sql("""CREATE TABLE r AS SELECT * FROM (VALUES
        ('web', 'https://www.news.test/a', 'en', 'sports'),
        ('web', 'http://news.test:8080/b', 'en', 'sports'),
        ('web', 'https://blog.test/c', 'zh', 'sports'),
        ('dump', 'jsonl://notes.jsonl#line=1', 'en', 'science'),
        ('dump', NULL, NULL, NULL)) t(source, url, lang, topic)""")


def test_counts_and_findings():
    con = duckdb.connect()
    _table(con)
    m = measure(con, "r", ["topic", "missing_set"])
    assert m["sources"][0] == 2 and m["languages"][0] == 2
    # hosts: www. and ports dropped; the dump's placeholder URL has its file name as host
    assert m["domains"] == (3.0, "news.test 2, blog.test 1, notes.jsonl 1")
    assert m["topic: values"][0] == 2 and m["topic: largest share"] == (0.75, "sports: 3 of 4")
    assert "missing_set: values" not in m
    found = {f.what: f for f in assess(m, min_sources=2, min_languages=3, min_domains=1, min_label_values=2,
                                       max_label_share=0.7)}
    assert found["sources"].ok and found["domains"].ok and found["topic: values"].ok
    assert not found["languages"].ok and found["languages"].kind == "floor"
    assert not found["topic: largest share"].ok and found["topic: largest share"].kind == "limit"
    relaxed = assess(m, min_sources=1, min_languages=1, min_domains=1, min_label_values=1, max_label_share=0.75)
    assert all(f.ok for f in relaxed)


def test_a_table_without_the_columns_measures_nothing():
    con = duckdb.connect()
    assert measure(con, "(SELECT 1 AS id)", ["topic"]) == {}
