"""GX Data Docs rendered by GX's own site builder from a whole-table validation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

from dataset_platform.checks.data_docs import build_data_docs
from dataset_platform.checks.gx_suites import validate_relation


def test_a_validation_renders_as_data_docs(tmp_path: Path):
    suite = tmp_path / "docs.json"
    suite.write_text(json.dumps({"name": "notes", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "critical"},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}, "severity": "critical"},
        {"type": "expect_column_values_to_be_within_iqr_fences", "kwargs": {"column": "n", "k": 3}, "severity": "warning"},
    ]}))
    con = duckdb.connect()
    outcome = validate_relation(
        con, "SELECT CASE WHEN i = 4 THEN NULL ELSE 'doc-' || (i % 40) END AS id, "
             "CASE WHEN i = 7 THEN 99999 ELSE 100 + i % 10 END AS n FROM range(50) t(i)", suite, batch_rows=16)
    assert not outcome.critical_passed
    page = build_data_docs(outcome, tmp_path / "docs", "run-1", dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC))
    assert page == tmp_path / "docs/site/validations/notes/run-1/20261123T100000.000000Z/notes.html"
    html = page.read_text(encoding="utf-8")
    # GX's renderer: the suite, every expectation with its column, and the failures with their counts
    import re

    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Expectation Suite: notes" in text and "Status: Failed" in text and "Run Name run-1" in text
    assert "values must never be null. 1 unexpected values found" in text
    assert "values must be unique. 18 unexpected values found" in text and "doc-0" in text
    # the IQR fences, restated as GX's between-expectation with the fences computed over the table
    assert "greater than or equal to 87.0 and less than or equal to 122.0" in text and "99999" in text
    index = (tmp_path / "docs/site/index.html").read_text(encoding="utf-8")
    assert "validations/notes/run-1" in index
    # a second build adds its page next to the first, and the index lists both
    second = build_data_docs(outcome, tmp_path / "docs", "run-2")
    assert second.exists() and page.exists() and page.read_text(encoding="utf-8") == html
    index = (tmp_path / "docs/site/index.html").read_text(encoding="utf-8")
    assert "validations/notes/run-1" in index and "validations/notes/run-2" in index



def test_the_index_lists_the_newest_validations_and_older_pages_stay(tmp_path: Path):
    """GX's index builder reads every result it lists on every build: the index lists the newest
    ``index_limit`` ones, so a check's cost does not grow with every check ever run."""
    suite = tmp_path / "docs.json"
    suite.write_text(json.dumps({"name": "notes", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "critical"}]}))
    con = duckdb.connect()
    outcome = validate_relation(con, "SELECT 'doc-' || i AS id FROM range(10) t(i)", suite)
    start = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    pages = [build_data_docs(outcome, tmp_path / "docs", f"run-{i}", start + dt.timedelta(minutes=i), index_limit=3)
             for i in range(5)]
    assert all(p.exists() for p in pages)  # every page stays (each check's metadata links its own)
    index = (tmp_path / "docs/site/index.html").read_text(encoding="utf-8")
    assert "validations/notes/run-4/" in index and "validations/notes/run-2/" in index
    assert "validations/notes/run-1/" not in index
