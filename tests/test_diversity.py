"""Diversity floors and label balance over a real DuckDB relation."""

from __future__ import annotations

import random

import duckdb

from dataset_platform.checks.diversity import assess, measure, measure_files


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


def _shards(con, folder, rng, n_files: int) -> list:
    """Parquet files like a release's shards: random sources, hosts, languages and topics, with
    augmented copies, NULLs, empty strings, ties and non-ASCII values; one file has no topic."""
    files = []
    for i in range(n_files):
        rows = []
        for j in range(rng.randint(0, 60)):
            rows.append((rng.choice(["web", "dump", "", None]),
                         rng.choice(["https://www.a.test/x", "http://b.test:81/y", "https://é.test/z", "", None,
                                     f"https://h{rng.randint(0, 9)}.test/{j}"]),
                         rng.choice(["en", "zh", "de", "", None]), rng.choice(["sport", "Sport", "ümlaut", "", None]),
                         None if rng.random() < 0.8 else f"id{j}"))
        f = folder / f"train-{i:05d}.parquet"
        con.sql("CREATE OR REPLACE TEMP TABLE s (source VARCHAR, url VARCHAR, lang VARCHAR, topic VARCHAR, "
                "augmented_from VARCHAR)")
        if rows:
            con.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?)", rows)
        cols = "source, url, lang, augmented_from" if i == 1 else "*"
        con.sql(f"COPY (SELECT {cols} FROM s) TO '{f}' (FORMAT parquet)")
        files.append(f)
    return files


def test_counts_kept_per_file_add_up_to_the_whole_and_only_new_files_are_read(tmp_path):
    con = duckdb.connect()
    rng = random.Random(7)
    data, cache = tmp_path / "data", tmp_path / "counts"
    data.mkdir()
    for round_ in range(3):
        files = _shards(con, data, rng, 5)
        whole = f"(SELECT * FROM read_parquet({[str(f) for f in files]}, union_by_name = true) WHERE augmented_from IS NULL)"
        given = [(f, f"round {round_} file {f.name}") for f in files]
        assert measure_files(con, given, ["topic", "missing_set"], cache) == measure(con, whole, ["topic", "missing_set"])
    # a file counted before is not read again: its counts are taken as they are
    kept = sorted(cache.glob("*.parquet"))
    assert len(kept) == 5  # (the counts of files no longer given are gone)
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    files[0].write_bytes(b"not parquet any more")  # (same identity: the counts kept stand for it)
    again = measure_files(con, given, ["topic", "missing_set"], cache)
    assert again and {p: p.stat().st_mtime_ns for p in sorted(cache.glob("*.parquet"))} == stamps
    assert measure_files(con, [], ["topic"], cache) == {} and not list(cache.glob("*.parquet"))
