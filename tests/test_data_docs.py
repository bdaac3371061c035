"""GX Data Docs rendered by GX's own site builder from a whole-table validation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

from dataset_platform.checks.data_docs import build_data_docs, build_page, build_site_index
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



def test_a_layer_with_fewer_columns_than_its_suite_expects_still_gets_its_page(tmp_path: Path):
    """An ordered column list checked against a narrower table counts more mismatches than the
    table has columns: the page still renders, and shows the failure."""
    suite = tmp_path / "cols.json"
    suite.write_text(json.dumps({"name": "cols", "expectations": [
        {"type": "expect_table_columns_to_match_ordered_list",
         "kwargs": {"column_list": ["id", "url", "title", "text", "lang", "n_chars"]}, "severity": "critical"},
        {"type": "expect_column_values_to_be_within_iqr_fences", "kwargs": {"column": "n_chars"}, "severity": "warning"},
    ]}))
    outcome = validate_relation(duckdb.connect(), "SELECT 'a' AS id, 'b' AS text FROM range(3)", suite)
    columns, fences = outcome.outcomes
    assert not columns.success and columns.unexpected_count > columns.element_count
    assert not fences.success  # no n_chars column: no fences to render as a between-expectation
    page = build_data_docs(outcome, tmp_path / "docs", "run-1")
    import re

    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))
    assert "Expectation Suite: cols" in text and "Status: Failed" in text and "n_chars" in text


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
    # GX lists every stored result for each page and index it renders: only the newest are kept
    stored = sorted(p.relative_to(tmp_path / "docs/validation_results").parts[1]
                    for p in (tmp_path / "docs/validation_results").rglob("*.json"))
    assert stored == ["run-2", "run-3", "run-4"]
    assert not (tmp_path / "docs/validation_results/notes/run-0").exists()  # (emptied folders go too)


def test_a_run_renders_its_pages_then_the_index_once(tmp_path: Path):
    """``build_page`` leaves the site's index as it is; ``build_site_index`` renders it alone,
    listing every page, localised as a page-and-index build leaves it."""
    suite = tmp_path / "docs.json"
    suite.write_text(json.dumps({"name": "notes", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "critical"}]}))
    outcome = validate_relation(duckdb.connect(), "SELECT 'doc-' || i AS id FROM range(10) t(i)", suite)
    docs, start = tmp_path / "docs", dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    build_data_docs(outcome, docs, "run-1", start)
    index = docs / "site" / "index.html"
    before = index.read_text(encoding="utf-8")
    pages = [build_page(outcome, docs, f"run-{i}", start + dt.timedelta(minutes=i)) for i in (2, 3)]
    assert all(p.is_file() for p in pages)
    assert index.read_text(encoding="utf-8") == before and "validations/notes/run-2" not in before
    assert build_site_index(docs) == index
    after = index.read_text(encoding="utf-8")
    assert all(f"validations/notes/run-{i}/" in after for i in (1, 2, 3))
    # the same index a build with the last page would have written
    other = tmp_path / "other"
    for i in (1, 2, 3):
        build_data_docs(outcome, other, f"run-{i}", start + dt.timedelta(minutes=i if i > 1 else 0))
    assert after == (other / "site" / "index.html").read_text(encoding="utf-8")


def test_the_pages_load_nothing_from_the_network(tmp_path: Path):
    """Every script, stylesheet and image a page loads is a file of the site (offline Data Docs)."""
    import re

    from xstatic.pkg import bootstrap

    suite = tmp_path / "docs.json"
    suite.write_text(json.dumps({"name": "notes", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "critical"}]}))
    outcome = validate_relation(duckdb.connect(), "SELECT 'doc-' || i AS id FROM range(10) t(i)", suite)
    site = tmp_path / "docs" / "site"
    page = build_data_docs(outcome, tmp_path / "docs", "run-1", dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC))
    for html_file in (page, site / "index.html"):
        html = html_file.read_text(encoding="utf-8")
        loaded = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html) + re.findall(r'<link\b[^>]*\bhref="([^"]+)"', html) \
            + re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', html) + re.findall(r"url\('([^']+)'\)", html)
        assert loaded, html_file
        remote = [u for u in loaded if re.match(r"(https?:)?//", u)]
        assert not remote, f"{html_file.name} still loads {remote}"
        missing = [u for u in loaded if not (html_file.parent / u).is_file()]
        assert not missing, f"{html_file.name} loads files the site does not have: {missing}"
        assert "integrity=" not in html and "crossorigin=" not in html  # (a file:// page refuses CORS loads)
        # Bootstrap, jQuery and Font Awesome from their packages, then our stand-in for bootstrap-table
        for name in ("bootstrap.min.css", "bootstrap.bundle.min.js", "jquery.min.js", "all.min.css",
                     "data_docs_offline.js"):
            assert any(u.endswith("/" + name) for u in loaded), (html_file.name, name)
    css = site / "static" / "vendor" / "bootstrap" / "css" / "bootstrap.min.css"
    assert css.read_bytes() == (Path(bootstrap.BASE_DIR) / "css" / "bootstrap.min.css").read_bytes()
    fa = (site / "static" / "vendor" / "font-awesome" / "css" / "all.min.css").read_text(encoding="utf-8")
    fonts = set(re.findall(r"url\(\.\./webfonts/([\w.-]+)\)", fa))
    assert fonts and all((site / "static" / "vendor" / "font-awesome" / "webfonts" / f).is_file() for f in fonts)
    # a second page reuses the copied files (the same bytes; nothing rewritten)
    mtime = css.stat().st_mtime_ns
    build_data_docs(outcome, tmp_path / "docs", "run-2", dt.datetime(2026, 11, 23, 11, 0, tzinfo=dt.UTC))
    assert css.stat().st_mtime_ns == mtime


_RENDER_WITHOUT_SHARED_TEMPLATES = """
import datetime as dt, json, sys
from pathlib import Path
import duckdb
from dataset_platform.checks import data_docs
from dataset_platform.checks.gx_suites import validate_relation
if sys.argv[3] == "plain":
    data_docs._SHARED_TEMPLATES.append(None)  # (as if installed: GX's views compile their own)
outcome = validate_relation(duckdb.connect(), "SELECT 'doc-' || (i % 7) AS id FROM range(20) t(i)", Path(sys.argv[1]))
data_docs.build_data_docs(outcome, Path(sys.argv[2]) / "first", "run-0")  # (the templates compiled once)
page = data_docs.build_data_docs(outcome, Path(sys.argv[2]), "run-1", dt.datetime(2026, 12, 4, tzinfo=dt.UTC))
from great_expectations.render.view.view import DefaultJinjaView
print(page, type(DefaultJinjaView(None).env.bytecode_cache).__name__)
"""


def test_pages_rendered_with_shared_compiled_templates_are_the_pages_gx_renders(tmp_path: Path):
    import re
    import subprocess
    import sys

    suite = tmp_path / "docs.json"
    suite.write_text(json.dumps({"name": "notes", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}, "severity": "critical"},
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "id", "min_value": 5},
         "severity": "warning"}]}))
    pages = {}
    for how in ("plain", "shared"):
        out = subprocess.run([sys.executable, "-c", _RENDER_WITHOUT_SHARED_TEMPLATES, str(suite),
                              str(tmp_path / how), how], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        page, cache = out.stdout.split()
        assert cache == ("NoneType" if how == "plain" else "_InMemory")
        # (each render draws new element ids and stamps links with the time it ran)
        pages[how] = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|d=\d{8}T\d{6}\.\d+Z", "~",
                            Path(page).read_text(encoding="utf-8"))
    assert "values must be unique" in pages["plain"] and pages["shared"] == pages["plain"]
