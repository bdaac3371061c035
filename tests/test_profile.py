"""The layer profile (length histogram, language and source shares) over a real DuckDB relation."""

from __future__ import annotations

import duckdb
import pytest

from dataset_platform.checks.profile import TOP, bar, profile


def test_histogram_quantiles_and_shares():
    con = duckdb.connect()
    # 10 documents of 50 chars (en, a), 5 of 500 (zh, a), 4 of 5 000 (en, b), 1 of 200 000 and one NULL text
    con.sql("""CREATE TABLE t AS
        SELECT repeat('x', 50) AS text, 'en' AS lang, 'a' AS source FROM range(10) UNION ALL
        SELECT repeat('x', 500), 'zh', 'a' FROM range(5) UNION ALL
        SELECT repeat('x', 5000), 'en', 'b' FROM range(4) UNION ALL
        SELECT repeat('x', 200000), NULL, 'b' UNION ALL
        SELECT NULL, 'en', 'c'""")
    p = profile(con, "t")
    assert p.rows == 21
    hist = dict(p.lengths)
    assert list(hist) == ["0-100", "100-300", "300-1k", "1k-3k", "3k-10k", "10k-30k", "30k-100k", "100k+"]
    assert (hist["0-100"], hist["300-1k"], hist["3k-10k"], hist["100k+"]) == (11, 5, 4, 1)  # NULL text counts as 0
    assert sum(hist.values()) == 21
    assert p.length_median == 275.0 and p.length_p90 == 5000.0  # over the 20 texts (NULL left out)
    assert p.languages == [("en", 15), ("zh", 5), ("(none)", 1)] and p.distinct_languages == 3
    assert p.sources == [("a", 15), ("b", 5), ("c", 1)] and p.distinct_sources == 3


def test_many_values_are_summed_as_other_and_a_table_without_text_is_refused():
    con = duckdb.connect()
    con.sql(f"CREATE TABLE t AS SELECT 'doc' AS text, 's' || (i % {TOP + 3}) AS source FROM range(110) r(i)")
    p = profile(con, "t")
    assert len(p.sources) == TOP + 1 and p.sources[-1][0] == "other"
    assert sum(n for _, n in p.sources) == 110 and p.languages == [] and p.distinct_sources == TOP + 3
    with pytest.raises(ValueError, match="no text column"):
        profile(con, "(SELECT 1 AS id)")
    assert bar(0.5, 10) == "█████·····" and bar(2.0, 4) == "████"


def test_a_layer_in_parts_is_profiled_from_a_per_part_cache(tmp_path):
    """The parts' lengths, languages and sources are kept per part: the profile equals the
    profile over the texts, a part left as it was is not read again, a rewritten part is, and a
    part that is gone leaves the cache."""
    from dataset_platform.checks.profile import parts_profile_sql

    con = duckdb.connect()
    layer, cache = tmp_path / "layers" / "cleaned_documents", tmp_path / "checks" / "profile"

    def write(source: str, part: str, sql: str):
        (layer / source / part).mkdir(parents=True, exist_ok=True)
        tmp = layer / source / part / ".data.tmp"
        con.sql(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet)")
        tmp.replace(layer / source / part / "data.parquet")  # as the runner commits a part

    write("news", "b1", "SELECT repeat('x', 50 + i) AS text, 'en' AS lang, 'news' AS source FROM range(30) r(i)")
    write("news", "b2", "SELECT repeat('y', 5000) AS text, 'zh' AS lang, 'news' AS source FROM range(7)")
    write("site", "c1", "SELECT NULL::VARCHAR AS text, 'en' AS lang, 'site' AS source FROM range(2)")

    def both():
        files = sorted(layer.glob("*/*/data.parquet"))
        direct = profile(con, f"read_parquet({[str(f) for f in files]})")
        return direct, profile(con, parts_profile_sql(con, files, cache))

    direct, cached = both()
    assert cached == direct and cached.rows == 39 and cached.length_median == 68.0
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.parquet")}
    assert len(stamps) == 3
    direct, cached = both()  # nothing changed: nothing read again
    assert cached == direct and {p.name: p.stat().st_mtime_ns for p in cache.glob("*.parquet")} == stamps
    write("news", "b2", "SELECT repeat('z', 20) AS text, 'fr' AS lang, 'news' AS source FROM range(3)")
    (layer / "site" / "c1" / "data.parquet").unlink()
    direct, cached = both()
    assert cached == direct and cached.rows == 33 and ("fr", 3) in cached.languages
    now = {p.name for p in cache.glob("*.parquet")}
    assert len(now) == 2 and len(now & set(stamps)) == 1  # b1 kept, b2 replaced, c1 gone
