"""The GX suites in expectations/ and the whole-table validation library, on real Parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from great_expectations.exceptions import ExpectationNotFoundError

from dataset_platform.checks.gx_suites import (
    BATCH_TYPES,
    NATIVE_TYPES,
    OWN_TYPES,
    SuiteError,
    expand_label_sets,
    load_suite,
    referenced_columns,
    validate_relation,
)
from dataset_platform.checks.gx_suites import validate_parquet as _validate_parquet
from dataset_platform.contracts.schema import LAYERS
from dataset_platform.contracts.schema import columns as _columns
from dataset_platform.contracts.schema import select_list as _select_list

#: the label sets the labelled layers are tested with (their columns are configuration-dependent)
LABEL_SETS = {"topic": ["nature", "other"]}


def columns(layer: str) -> list[str]:
    return _columns(layer, list(LABEL_SETS))


def select_list(layer: str) -> str:
    return _select_list(layer, list(LABEL_SETS))

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "expectations"
UNIQUE = "expect_column_values_to_be_unique"
NOT_NULL = "expect_column_values_to_not_be_null"
LENGTHS = "expect_column_value_lengths_to_be_between"

# A valid value for every contract column, as SQL over row number i (texts differ per row).
VALID = {
    "id": "substr(md5('doc' || i), 1, 16)",
    "source": "'demo'",
    "crawl_id": "'demo-20261101T120000123456Z'",
    "url": "'https://example.org/page/' || i",
    "fetch_url": "'http://mirror.example.org/page/' || i",
    "status": "200",
    "content_type": "'text/html'",
    "charset": "'utf-8'",
    "fetched_at": "TIMESTAMPTZ '2026-11-01 12:00:00+00' + to_seconds(i)",
    "depth": "i % 3",
    "referer": "NULL",
    "body_bytes": "2000 + i",
    "html": "'<html><body><p>page ' || i || '</p></body></html>'",
    "seq": "i + 1",
    "outcome": "'fetched'",
    "detail": "NULL",
    "etag": "'\"' || md5('e' || i) || '\"'",
    "last_modified": "'Wed, 01 Jan 2025 00:00:00 GMT'",
    "headers": "'{\"content-type\": \"text/html\"}'",
    "title": "'Page ' || i",
    "text": "'Document ' || i || ' talks about rivers, mountains and the weather in spring and autumn.'",
    "lang": "'en'",
    "lang_score": "0.98",
    "date": "CASE WHEN i % 3 = 0 THEN NULL ELSE '2026-0' || (1 + i % 9) || '-15' END",
    "extractor": "CASE WHEN i % 5 = 0 THEN 'trafilatura_recall' ELSE 'trafilatura' END",
    "n_chars": "80",
    "n_words": "14",
    "pii_email": "0",
    "pii_phone": "i % 2",
    "pii_ip": "0",
    "pii_card": "0",
    "pii_iban": "i % 3",
    "pii_cn_id": "0",
    "quality": "'{\"gopher_quality.word_count\":' || (60 + i) || '}'",
    "annotations": "CASE WHEN i % 2 = 0 THEN ['fineweb.short_line_ratio'] ELSE [] END",
    "content_hash": "md5('text' || i)",
    "text_hash": "hash('Document ' || i)",
    "quality_score": "CASE WHEN i % 4 = 0 THEN NULL ELSE (i % 10) / 10.0 END",
    "cluster_id": "md5('cluster' || i)",
    "doc_id": "substr(md5('dup' || i), 1, 16)",
    "keeper_id": "substr(md5('doc' || i), 1, 16)",
    "similarity": "1.0",
    "kind": "'exact'",
    "topic": "CASE WHEN i % 2 = 0 THEN 'nature' ELSE 'other' END",
    "topic_source": "'rule'",
    "augmented_from": "NULL",
    "label_set": "'topic'",
    "annotator": "'annotator' || (i % 3)",
    "annotation_id": "i + 1",
    "task_id": "i // 3 + 1",
    "updated_at": "'2026-11-23T10:00:00.000000Z'",
    "file": "'project-1-export.json'",
    "topic_confidence": "0.75",
    "stage": "'clean'",
    "rule": "'gopher_quality.word_count'",
    "value": "'12'",
    "split": "CASE i % 3 WHEN 0 THEN 'train' WHEN 1 THEN 'validation' ELSE 'test' END",
}


def write_layer(path: Path, layer: str, n: int, **override: str) -> Path:
    """Write ``n`` rows of ``layer`` (contract columns and types, in row order i) with DuckDB.

    ``override`` replaces a column's SQL expression over the row number ``i``.
    """
    exprs = ", ".join(f"{override.get(c, VALID[c])} AS \"{c}\"" for c in columns(layer))
    con = duckdb.connect()
    try:
        con.sql(f"COPY (SELECT {select_list(layer)} FROM (SELECT i, {exprs} FROM range({n}) t(i)) ORDER BY i) "
                f"TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def suite(layer: str) -> Path:
    return SUITES / f"{layer}.json"


def spec_of(layer: str) -> dict:
    """The suite as validated: its label-set templates expanded for LABEL_SETS."""
    return expand_label_sets(load_suite(suite(layer)), LABEL_SETS)


def validate_parquet(path, suite_path, **kw):
    return _validate_parquet(path, suite_path, label_sets=LABEL_SETS, **kw)


def outcome(result, typ: str, column: str):
    (o,) = [o for o in result.outcomes if o.type == typ and o.kwargs.get("column") == column]
    return o


# --------------------------------------------------------------------------------------------- suites


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_suite_loads_and_guards_its_contract(layer):
    spec = spec_of(layer)
    assert spec["name"] == layer
    critical = [e for e in spec["expectations"] if e["severity"] == "critical"]
    assert {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": columns(layer)},
            "severity": "critical"} in critical
    if layer == "crawl_log":  # one row per record of a batch: a dump may hold a URL twice
        assert {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["crawl_id", "seq"]},
                "severity": "critical"} in critical
    elif layer == "human_annotations":  # one label per person, document and label set
        assert {"type": "expect_compound_columns_to_be_unique",
                "kwargs": {"column_list": ["doc_id", "label_set", "annotator"]}, "severity": "critical"} in critical
    else:
        key = "doc_id" if layer == "duplicate_clusters" else "id"
        assert {"type": UNIQUE, "kwargs": {"column": key}, "severity": "critical"} in critical
    if layer in ("deduplicated_documents", "labelled_documents", "decontaminated_documents"):
        assert {"type": UNIQUE, "kwargs": {"column": "content_hash"}, "severity": "critical"} in critical
    row_count = [e for e in critical if e["type"] == "expect_table_row_count_to_be_between"]
    if layer in ("rejected_documents", "duplicate_clusters", "human_annotations"):
        assert row_count == []  # these may legitimately be empty
    else:
        assert row_count == [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1},
                              "severity": "critical"}]
    assert any(e["severity"] == "warning" for e in spec["expectations"]) or layer == "duplicate_clusters"


def test_every_column_a_suite_names_is_in_the_contract():
    for layer in LAYERS:
        names = set(columns(layer))
        for e in spec_of(layer)["expectations"]:
            assert set(referenced_columns(e)) <= names, (layer, e)
    assert sorted(p.stem for p in SUITES.glob("*.json")) == sorted(LAYERS)


def test_supported_types_are_what_gx_says_they_are():
    """Batch types are GX row-level (map) expectations; native types are GX types too."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    for typ in BATCH_TYPES:
        assert issubclass(get_expectation_impl(typ),
                          ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation), typ
    for typ in set(NATIVE_TYPES) - OWN_TYPES:
        assert get_expectation_impl(typ) is not None
    for typ in OWN_TYPES:  # ours (GX has no IQR expectation): the name must not shadow a GX type
        with pytest.raises(ExpectationNotFoundError):
            get_expectation_impl(typ)
    assert not BATCH_TYPES & set(NATIVE_TYPES)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_valid_table_passes_every_suite(tmp_path, layer):
    result = validate_parquet(write_layer(tmp_path / "t.parquet", layer, 25), suite(layer), batch_rows=10)
    assert result.suite == layer and result.row_count == 25
    assert [o for o in result.outcomes if not o.success] == []
    assert result.critical_passed and result.warnings_passed
    assert len(result.outcomes) == len(spec_of(layer)["expectations"])
    for o in result.outcomes:
        assert o.engine == ("duckdb" if o.type in NATIVE_TYPES else "gx")
        if o.engine == "gx":
            assert o.element_count == 25 and o.unexpected_count == 0  # every row of every batch


@pytest.mark.parametrize("layer", list(LAYERS))
def test_empty_tables_fail_only_where_rows_are_required(tmp_path, layer):
    result = validate_parquet(write_layer(tmp_path / "t.parquet", layer, 0), suite(layer))
    assert result.row_count == 0
    failed = [o.type for o in result.failed()]
    if layer in ("rejected_documents", "duplicate_clusters", "human_annotations"):
        assert failed == []
    elif layer in ("labelled_documents", "decontaminated_documents"):  # and no label value at all: a diversity warning
        assert failed == ["expect_table_row_count_to_be_between", "expect_column_unique_value_count_to_be_between"]
        assert [o.severity for o in result.failed()] == ["critical", "warning"]
    else:
        assert failed == ["expect_table_row_count_to_be_between"]
        assert result.failed()[0].observed_value == 0 and not result.critical_passed


# --------------------------------------------------------------------------------------------- violations


def test_null_ids_in_two_batches_fail_critical_with_exact_counts(tmp_path):
    path = write_layer(tmp_path / "t.parquet", "cleaned_documents", 30,
                       id="CASE WHEN i IN (3, 24) THEN NULL ELSE substr(md5('doc' || i), 1, 16) END")
    result = validate_parquet(path, suite("cleaned_documents"), batch_rows=10)
    assert not result.critical_passed and result.warnings_passed
    nulls = outcome(result, NOT_NULL, "id")
    assert (nulls.success, nulls.element_count, nulls.unexpected_count) == (False, 30, 2)
    assert nulls.sample_unexpected == [None, None]
    assert [(o.type, o.kwargs.get("column")) for o in result.failed()] == [(NOT_NULL, "id")]
    # nulls are "missing" for the other id expectations, which still see the 28 others
    assert outcome(result, UNIQUE, "id").unexpected_count == 0
    assert outcome(result, "expect_column_values_to_match_regex", "id").success


def test_a_duplicate_id_in_two_different_batches_is_caught(tmp_path):
    path = write_layer(tmp_path / "t.parquet", "cleaned_documents", 30, id="substr(md5('doc' || (i % 29)), 1, 16)")
    con = duckdb.connect()
    ids = [r[0] for r in con.sql(f"SELECT id FROM '{path}'").fetchall()]
    con.close()
    dup = _md5("doc0")[:16]
    assert [n for n, i in enumerate(ids) if i == dup] == [0, 29]  # first and last of five 7-row batches
    result = validate_parquet(path, suite("cleaned_documents"), batch_rows=7)
    unique = outcome(result, UNIQUE, "id")
    assert (unique.success, unique.engine, unique.element_count, unique.unexpected_count) == (False, "duckdb", 30, 2)
    assert unique.sample_unexpected == [dup]
    assert [o.type for o in result.failed()] == [UNIQUE]
    assert not result.critical_passed and result.warnings_passed


def test_duplicate_across_batches_proven_with_one_row_batches(tmp_path):
    """With batch_rows=1 no batch ever holds both copies: only a whole-table check sees them."""
    path = write_layer(tmp_path / "t.parquet", "deduplicated_documents", 12,
                       content_hash="CASE WHEN i IN (0, 11) THEN md5('same') ELSE md5('text' || i) END")
    result = validate_parquet(path, suite("deduplicated_documents"), batch_rows=1)
    o = outcome(result, UNIQUE, "content_hash")
    assert (o.success, o.unexpected_count, o.sample_unexpected) == (False, 2, [_md5("same")])
    assert outcome(result, NOT_NULL, "text").element_count == 12


def test_warning_only_violation_leaves_critical_passed(tmp_path):
    path = write_layer(tmp_path / "t.parquet", "cleaned_documents", 30,
                       title="CASE WHEN i % 10 IN (1, 2) THEN NULL ELSE 'Page ' || i END")  # 6 of 30 = 20% > 10%
    result = validate_parquet(path, suite("cleaned_documents"), batch_rows=8)
    assert result.critical_passed and not result.warnings_passed
    title = outcome(result, NOT_NULL, "title")
    assert (title.severity, title.element_count, title.unexpected_count) == ("warning", 30, 6)
    assert title.sample_unexpected == [None] * 6
    assert list(result.failed("warning")) == [title] == result.failed()


def test_mostly_is_applied_to_the_whole_table_not_per_batch(tmp_path):
    short = "CASE WHEN i IN ({}) THEN 'tiny' ELSE 'Document ' || i || repeat(' words', 10) END"
    # one short text out of 30: a 10-row batch holding it has 10% > 5% short, the table 3.3%: passes
    one = validate_parquet(write_layer(tmp_path / "a.parquet", "cleaned_documents", 30, text=short.format("7")),
                           suite("cleaned_documents"), batch_rows=10)
    o = _text_bounds(one)
    assert (o.success, o.element_count, o.unexpected_count, o.sample_unexpected) == (True, 30, 1, ["tiny"])
    assert one.warnings_passed
    # two out of 30 (6.7%): fails, although the first 20-row batch alone (1 short, 5%) would pass
    two = validate_parquet(write_layer(tmp_path / "b.parquet", "cleaned_documents", 30, text=short.format("3, 23")),
                           suite("cleaned_documents"), batch_rows=20)
    o = _text_bounds(two)
    assert (o.success, o.unexpected_count) == (False, 2)
    assert two.critical_passed and not two.warnings_passed


def test_column_contract_is_checked_exactly(tmp_path):
    con = duckdb.connect()
    good = write_layer(tmp_path / "t.parquet", "duplicate_clusters", 5)
    sql = f"SELECT cluster_id, keeper_id, doc_id, similarity, kind, 1 AS extra FROM '{good}'"
    result = validate_relation(con, sql, suite("duplicate_clusters"))
    con.close()
    (cols,) = [o for o in result.outcomes if o.type == "expect_table_columns_to_match_ordered_list"]
    assert not cols.success and cols.severity == "critical" and cols.engine == "duckdb"
    assert cols.observed_value == ["cluster_id", "keeper_id", "doc_id", "similarity", "kind", "extra"]
    assert cols.sample_unexpected == ["1: expected 'doc_id', got 'keeper_id'", "2: expected 'keeper_id', got 'doc_id'",
                                      "5: expected None, got 'extra'"]
    assert [o.type for o in result.failed()] == ["expect_table_columns_to_match_ordered_list"]


def test_missing_column_fails_the_expectations_that_name_it(tmp_path):
    con = duckdb.connect()
    path = write_layer(tmp_path / "t.parquet", "rejected_documents", 4)
    result = validate_relation(con, f"SELECT * EXCLUDE (rule) FROM '{path}'", suite("rejected_documents"))
    con.close()
    failed = {(o.type, o.kwargs.get("column")) for o in result.failed()}
    assert failed == {("expect_table_columns_to_match_ordered_list", None), (NOT_NULL, "rule"), (LENGTHS, "rule"),
                      ("expect_column_values_to_match_regex", "rule")}
    assert all(o.observed_value == "missing column(s): ['rule']" for o in result.failed() if o.kwargs.get("column"))


def test_validate_relation_over_a_glob_of_files_and_consistency_rules(tmp_path):
    """A release split over files; a duplicate across files, a bad split and a bad url are all caught."""
    write_layer(tmp_path / "train-0.parquet", "dataset_release", 6)
    write_layer(tmp_path / "test-0.parquet", "dataset_release", 6,
                id="substr(md5('doc' || (i + 5)), 1, 16)",  # i=0 repeats the first file's i=5
                url="CASE WHEN i = 1 THEN 'ftp://example.org/x' ELSE 'https://example.org/t/' || i END",
                split="CASE WHEN i = 2 THEN 'dev' ELSE 'test' END",
                topic_confidence="CASE WHEN i = 3 THEN 1.5 ELSE 0.5 END")
    result = validate_parquet(tmp_path / "*.parquet", suite("dataset_release"), batch_rows=4)
    assert result.row_count == 12
    failed = {(o.type, o.kwargs.get("column")): (o.unexpected_count, o.sample_unexpected) for o in result.failed()}
    assert failed == {
        (UNIQUE, "id"): (2, [_md5("doc5")[:16]]),
        ("expect_column_values_to_match_regex", "url"): (1, ["ftp://example.org/x"]),
        ("expect_column_values_to_be_in_set", "split"): (1, ["dev"]),
        ("expect_column_values_to_be_between", "topic_confidence"): (1, [1.5]),
    }


def test_markdown_summarises_failures(tmp_path):
    path = write_layer(tmp_path / "t.parquet", "labelled_documents", 10,
                       topic="CASE WHEN i = 0 THEN '' ELSE 'nature' END",
                       lang="CASE WHEN i = 9 THEN 'e|n' ELSE 'en' END")
    md = validate_parquet(path, suite("labelled_documents")).to_markdown()
    lines = md.splitlines()
    n = len(spec_of("labelled_documents")["expectations"])
    assert lines[0] == (f"**labelled_documents**: 10 rows, {n - 2}/{n} expectations passed "
                        "(critical: FAILED, warnings: ok)")
    assert lines[2].startswith("| result | severity | expectation |") and len(lines) == 4 + n
    assert [line for line in lines if "**FAIL**" in line] == [
        "| **FAIL** | critical | column_values_to_match_regex(regex='^[a-z]{2,3}$') | lang | 1 / 10 | [\"e\\|n\"] |",
        "| **FAIL** | critical | column_values_to_be_in_set(value_set=['nature', 'other']) | topic | 1 / 10 | [\"\"] |",
    ]


# --------------------------------------------------------------------------------------------- bad suites


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not a readable JSON file"),
    ('{"expectations": []}', "'name' must be a non-empty string"),
    ('{"name": "x", "expectations": []}', "'expectations' must be a non-empty list"),
    ('{"name": "x", "expectations": [{"type": "expect_column_mean_to_be_between", '
     '"kwargs": {"column": "n", "min_value": 1}, "severity": "critical"}]}',
     "expectations[0] (expect_column_mean_to_be_between): expectation type not supported"),
    ('{"name": "x", "expectations": [{"type": "expect_column_values_to_not_be_null", '
     '"kwargs": {"column": "id"}, "severity": "fatal"}]}', "'severity' must be one of"),
    ('{"name": "x", "expectations": [{"type": "expect_column_values_to_be_unique", '
     '"kwargs": {"column": "id", "result_format": "BASIC"}, "severity": "critical"}]}',
     "not supported ['result_format']"),
    ('{"name": "x", "expectations": [{"type": "expect_column_values_to_match_regex", '
     '"kwargs": {"column": "id", "regex": "(["}, "severity": "critical"}]}', "invalid regular expression"),
    ('{"name": "x", "expectations": [{"type": "expect_column_values_to_not_be_null", '
     '"kwargs": {"column": "id", "mostly": 2}, "severity": "critical"}]}', "'mostly' must be a number between 0 and 1"),
])
def test_load_suite_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad_suite.json"
    path.write_text(content)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_kwargs_gx_rejects_are_reported_with_the_file(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"name": "typo", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "kind", "value_sett": ["a"]},
         "severity": "critical"}]}))
    good = write_layer(tmp_path / "t.parquet", "duplicate_clusters", 3)
    expected = r"typo\.json: expectations\[0\] \(expect_column_values_to_be_in_set\): GX rejects it: .*value_sett"
    with pytest.raises(SuiteError, match=expected):
        validate_parquet(good, path)


def test_an_expectation_that_errors_inside_gx_is_an_error_not_a_pass(tmp_path):
    path = tmp_path / "wrong_type.json"
    path.write_text(json.dumps({"name": "wrong_type", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "similarity", "min_value": "2026-01-01"},
         "severity": "warning"}]}))
    good = write_layer(tmp_path / "t.parquet", "duplicate_clusters", 3)
    with pytest.raises(SuiteError, match=r"wrong_type\.json: expect_column_values_to_be_between .* failed to run"):
        validate_parquet(good, path)


# --------------------------------------------------------------------------------------------- helpers


def _text_bounds(result):
    (o,) = [o for o in result.outcomes if o.type == LENGTHS and o.kwargs.get("column") == "text"
            and o.severity == "warning"]
    return o


def _md5(s: str) -> str:
    import hashlib

    return hashlib.md5(s.encode()).hexdigest()


def test_distribution_and_diversity_expectations_run_over_the_whole_table(tmp_path):
    """z-scores (GX's definition), Tukey's IQR fences and distinct-value floors, evaluated in DuckDB
    over every row: 5 huge values among 1000 are flagged by both outlier rules, wherever they are."""
    spec = {"name": "t", "expectations": [
        {"type": "expect_column_unique_value_count_to_be_between", "kwargs": {"column": "lang", "min_value": 3},
         "severity": "warning"},
        {"type": "expect_column_unique_value_count_to_be_between", "kwargs": {"column": "lang", "min_value": 2,
                                                                               "max_value": 2}, "severity": "warning"},
        {"type": "expect_column_value_z_scores_to_be_less_than", "kwargs": {"column": "n", "threshold": 3, "double_sided": True,
                                                                             "mostly": 0.999}, "severity": "warning"},
        {"type": "expect_column_value_z_scores_to_be_less_than", "kwargs": {"column": "n", "threshold": 3, "double_sided": True,
                                                                             "mostly": 0.99}, "severity": "warning"},
        {"type": "expect_column_values_to_be_within_iqr_fences", "kwargs": {"column": "n", "k": 3, "mostly": 0.999},
         "severity": "warning"},
        {"type": "expect_column_values_to_be_within_iqr_fences", "kwargs": {"column": "n"}, "severity": "info"},
    ]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    con = duckdb.connect()
    sql = ("SELECT CASE WHEN i % 2 = 0 THEN 'en' ELSE 'zh' END AS lang, "
           "CASE WHEN i % 200 = 7 THEN 100000 WHEN i = 3 THEN NULL ELSE 1000 + i % 100 END AS n FROM range(1000) t(i)")
    r = validate_relation(con, sql, path, batch_rows=64)
    few, exact, z_strict, z_loose, iqr, iqr_default = r.outcomes
    assert (few.success, few.observed_value, exact.success) == (False, 2, True)
    assert (z_strict.success, z_strict.element_count, z_strict.unexpected_count) == (False, 999, 5)
    assert z_loose.success and z_strict.sample_unexpected == [100000.0] * 5
    import statistics

    values = [1000 + i % 100 for i in range(1000) if i % 200 != 7 and i != 3] + [100000] * 5
    assert z_strict.observed_value == {"mean": round(statistics.mean(values), 3), "sd": round(statistics.stdev(values), 3)}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")  # linear interpolation, as quantile_cont
    assert (iqr.success, iqr.unexpected_count, iqr.observed_value) == (False, 5, {"q1": round(q1, 3), "q3": round(q3, 3)})
    assert not iqr_default.success and iqr_default.unexpected_count == 5 and r.critical_passed


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_suite_renders_as_gx_data_docs(tmp_path, layer):
    """GX's renderer validates each expectation's kwargs: every suite of ours must render."""
    from dataset_platform.checks.data_docs import build_data_docs

    result = validate_parquet(write_layer(tmp_path / "t.parquet", layer, 25), suite(layer), batch_rows=10)
    page = build_data_docs(result, tmp_path / "docs", "run")
    assert page.is_file() and layer in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", [
    {"type": UNIQUE, "kwargs": {"column": "a"}},
    {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"]}},
    *({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"], "ignore_row_if": how}}
      for how in ("all_values_are_missing", "any_value_is_missing", "never")),
])
@pytest.mark.parametrize("rows", ["unique", "duplicated"])
def test_uniqueness_in_duckdb_gives_gxs_verdict_and_count(spec, rows):
    """Uniqueness runs in DuckDB (first by the keys' hashes): the same verdict and unexpected count
    as GX's own evaluation of the same expectation, NULLs in every position included."""
    from dataset_platform.checks.gx_suites import _native, _validate_batches

    values = [("x", 1), ("y", None), (None, 2), (None, None), ("z", 3), (None, None), ("w", None)]
    if rows == "duplicated":
        values += [("x", 1), ("y", None), (None, 2)]
    con = duckdb.connect()
    con.sql("CREATE TABLE t (a VARCHAR, b INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", values)
    e = {**spec, "severity": "critical"}
    ours = _native(con, "SELECT * FROM t", e, ["a", "b"], len(values))
    (gx,) = _validate_batches(con, "SELECT * FROM t", ["a", "b"], {0: e}, Path("t.json"), 100, 1 << 30,
                              len(values)).values()
    assert (ours.success, ours.unexpected_count) == (gx.success, gx.unexpected_count)
    assert ours.engine == "duckdb" and gx.engine == "gx"
    con.close()


@pytest.mark.parametrize("layer", list(LAYERS))
def test_whole_table_expectations_beside_the_rows_give_what_they_give_after_them(tmp_path, layer, monkeypatch):
    """The whole-table expectations run on a second connection while GX validates the rows: the
    outcome is the one of running them first on the caller's connection."""
    from dataset_platform.checks import gx_suites

    dup = {"id": "substr(md5('doc' || (i // 2)), 1, 16)"} if "id" in columns(layer) else {}
    path = write_layer(tmp_path / "t.parquet", layer, 90, **dup)
    beside = validate_parquet(path, suite(layer), batch_rows=32)
    monkeypatch.setattr(gx_suites, "_side_connection", lambda con, sql: None)
    after = validate_parquet(path, suite(layer), batch_rows=32)
    assert beside == after
    if dup and any(e["type"] == "expect_column_values_to_be_unique" and e["kwargs"]["column"] == "id"
                   for e in spec_of(layer)["expectations"]):
        assert not outcome(beside, "expect_column_values_to_be_unique", "id").success  # (seen both ways)


def test_a_relation_only_its_connection_sees_is_validated_there(tmp_path):
    """A temporary table is its connection's own: the whole-table expectations then run there."""
    from dataset_platform.checks import gx_suites

    con = duckdb.connect()
    con.sql("CREATE TEMP TABLE t AS SELECT i % 7 AS id, 'x' AS s FROM range(50) t(i)")
    assert gx_suites._side_connection(con, "SELECT * FROM t") is None
    spec = {"name": "t", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}, "severity": "critical"},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "s"}, "severity": "critical"}]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    r = validate_relation(con, "SELECT * FROM t", path)
    unique, not_null = r.outcomes
    assert not unique.success and unique.unexpected_count == 50 and not_null.success
    assert gx_suites._side_connection(con, f"SELECT * FROM read_parquet('{write_layer(tmp_path / 'r.parquet', 'raw_pages', 3)}')") is not None
