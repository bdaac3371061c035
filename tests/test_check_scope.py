"""Checks that cost what the materialisation wrote: row-level expectations (GX) over the parts,
files or shards not validated yet, whole-table ones over the whole layer, blocking as before.

Real DuckDB, real GX, real Dagster ``materialize()``: a stand-in asset writes parts of a layer
stored by batch (``storage/batched.py``), the project's own ``gx_suite`` check validates it, and
an asset below it shows the blocking.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from dataset_platform.config import demo_config_path, load_config
from dataset_platform.contracts.schema import select_list
from dataset_platform.defs import quality
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.storage import sql_str
from dataset_platform.storage.batched import BatchedLayer, PartInfo, ids_fingerprint
from dataset_platform.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]
LAYER = "extracted_documents"

#: a valid extracted document per row number i (override a column's SQL to plant a failure)
VALID = {
    "id": "substr(md5('doc' || i), 1, 16)",
    "source": "'src'",
    "crawl_id": "'src-20261101T120000Z'",
    "url": "'https://example.org/a/' || i",
    "title": "'Title ' || i",
    "date": "NULL",
    "text": "'Document ' || i || ' talks about rivers, mountains and the weather in spring and autumn.'",
    "lang": "'en'",
    "lang_score": "0.98",
    "extractor": "'trafilatura'",
}


def write_part(layer: BatchedLayer, key: str, rows: range, **override: str) -> None:
    """Stage part ``key`` of ``layer`` (held) with the documents numbered ``rows``."""
    staging = layer.stage(key)
    write_rows(staging / "data.parquet", rows, **override)
    con = duckdb.connect()
    ids = ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(staging / 'data.parquet')})")
    con.close()
    layer.staged(PartInfo(key, chain=f"test:{key}", ids=ids, rows=len(rows)))


def write_rows(path: Path, rows: range, **override: str) -> None:
    exprs = ", ".join(f"{override.get(c, v)} AS \"{c}\"" for c, v in VALID.items())
    con = duckdb.connect()
    con.sql(f"COPY (SELECT {select_list(LAYER)} FROM (SELECT i, {exprs} FROM range({rows.start}, {rows.stop}) t(i)) "
            f"ORDER BY id) TO {sql_str(path)} (FORMAT parquet)")
    con.close()


class Graph:
    """The stand-in layer asset, an asset below it and the real gx_suite check, run together."""

    def __init__(self, tmp_path: Path):
        self.wd = Workdir.at(tmp_path / "wd").ensure()
        self.plan: list[tuple[str, range, dict]] = []  # the parts the next materialisation writes
        plan = self.plan

        @dg.asset(name=LAYER)
        def layer_asset(platform: PlatformResource) -> None:
            with BatchedLayer(platform.wd.layer_dir(LAYER), LAYER).locked() as layer:
                for key, rows, override in plan:
                    write_part(layer, key, rows, **override)
                layer.commit()
            plan.clear()

        @dg.asset(deps=[layer_asset])
        def below() -> None:
            return None

        self.check = quality.check_definition(LAYER, "gx_suite")
        self.assets = [layer_asset, below]

    def run(self, *parts: tuple[str, range, dict]):
        self.plan[:] = list(parts)
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [*self.assets, self.check], instance=instance, raise_on_error=False,
                resources={"platform": PlatformResource(config_path=str(demo_config_path()),
                                                        workdir=str(self.wd.root))})
            (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "gx_suite"]
            done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        return ev, done


def md(ev, key):
    return ev.metadata[key].value


def test_an_old_part_is_not_validated_again_a_new_failing_one_blocks_until_fixed(tmp_path):
    g = Graph(tmp_path)
    ev, done = g.run(("src/a", range(300), {}), ("src/b", range(300, 500), {}))
    assert ev.passed and done == {LAYER, "below"}
    assert md(ev, "rows_validated") == 500 and md(ev, "layer_rows") == 500 and md(ev, "files_validated") == 2

    # a row that breaks a critical row-level rule, put into the OLD part behind the commit point's
    # back: the next check must not read it (row-level expectations cover what was written)
    write_rows(g.wd.layer_dir(LAYER) / "src/a/data.parquet", range(300), extractor="CASE WHEN i = 7 "
               "THEN 'bogus' ELSE 'trafilatura' END")
    ev, done = g.run(("src/c", range(500, 600), {}))
    assert ev.passed and done == {LAYER, "below"}
    assert md(ev, "rows_validated") == 100 and md(ev, "layer_rows") == 600
    assert md(ev, "files_validated") == 1 and md(ev, "layer_files") == 3
    assert "src/c" in md(ev, "row_level_scope")
    assert "600 rows (row-level expectations over the 100 rows" in md(ev, "results")

    # the same failure in a NEW part fails the check with ERROR and blocks the asset below
    ev, done = g.run(("src/d", range(600, 650), {"extractor": "CASE WHEN i = 610 THEN 'bogus' ELSE 'trafilatura' END"}))
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert md(ev, "failed_critical") == 1 and md(ev, "rows_validated") == 50
    assert "bogus" in md(ev, "results")
    assert done == {LAYER}

    # a later refresh that does not touch the failing part still fails: the part was not recorded
    # as validated, so it is validated again (as a check over the whole table would)
    ev, done = g.run(("src/e", range(650, 700), {}))
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert md(ev, "rows_validated") == 100 and md(ev, "files_validated") == 2
    assert done == {LAYER}

    # fixed (the part rewritten): the check passes and only the rewritten part is validated
    ev, done = g.run(("src/d", range(600, 650), {}))
    assert ev.passed and done == {LAYER, "below"}
    assert md(ev, "rows_validated") == 100  # d (rewritten) and e (never passed)
    ev, done = g.run()  # nothing new: nothing validated row by row, the layer still checked whole
    assert ev.passed and md(ev, "rows_validated") == 0 and md(ev, "layer_rows") == 700


def test_a_whole_table_expectation_sees_a_duplicate_across_an_old_and_a_new_part(tmp_path):
    g = Graph(tmp_path)
    ev, _ = g.run(("src/a", range(300), {}))
    assert ev.passed
    ev, done = g.run(("src/b", range(300, 400), {"id": "CASE WHEN i = 333 THEN substr(md5('doc' || 5), 1, 16) "
                                                       "ELSE substr(md5('doc' || i), 1, 16) END"}))
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert md(ev, "rows_validated") == 100 and md(ev, "layer_rows") == 400
    (dup,) = [line for line in md(ev, "results").splitlines() if "values_to_be_unique" in line and "| id |" in line]
    assert "**FAIL**" in dup and "2 / 400" in dup
    assert done == {LAYER}


# ------------------------------------------------------------------ without Dagster


def _cfg():
    return load_config(demo_config_path())


def test_a_changed_suite_validates_every_part_again(tmp_path):
    from dataset_platform.checks.suite_check import run_suite_check

    wd = Workdir.at(tmp_path / "wd").ensure()
    with BatchedLayer(wd.layer_dir(LAYER), LAYER).locked() as layer:
        write_part(layer, "src/a", range(200))
        write_part(layer, "src/b", range(200, 300))
        layer.commit()
    suite = tmp_path / f"{LAYER}.json"
    shutil.copy(REPO / "expectations" / f"{LAYER}.json", suite)
    assert run_suite_check(_cfg(), wd, LAYER, suite).rows_validated == 300
    assert run_suite_check(_cfg(), wd, LAYER, suite).rows_validated == 0
    spec = json.loads(suite.read_text())
    spec["expectations"].append({"type": "expect_column_values_to_not_match_regex",
                                 "kwargs": {"column": "text", "regex": "spring"}, "severity": "critical"})
    suite.write_text(json.dumps(spec))
    checked = run_suite_check(_cfg(), wd, LAYER, suite)
    assert checked.rows_validated == 300 and not checked.outcome.critical_passed and not checked.recorded
    assert run_suite_check(_cfg(), wd, LAYER, suite).rows_validated == 300  # still failing: still pending


def _crawl_log(wd: Workdir, batch: str, n: int, start: int = 0) -> None:
    from dataset_platform.storage import write_parquet

    con = duckdb.connect()
    write_parquet(con, f"""
        SELECT substr(md5('u' || i), 1, 16) AS id, 'src' AS source, '{batch}' AS crawl_id, i - {start} + 1 AS seq,
               'https://example.org/' || i AS url, NULL AS fetch_url, 'fetched' AS outcome, NULL AS detail,
               200 AS status, 'text/html' AS content_type, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS fetched_at,
               0 AS depth, NULL AS referer, 1000 AS body_bytes, md5('b' || i) AS content_hash
        FROM range({start}, {start + n}) t(i) ORDER BY seq""", wd.crawl_log_file("src", batch), layer="crawl_log")
    con.close()


def test_crawl_log_validates_the_files_of_the_batches_landed_since(tmp_path):
    from dataset_platform.checks.suite_check import run_suite_check

    wd = Workdir.at(tmp_path / "wd").ensure()
    suite = REPO / "expectations" / "crawl_log.json"
    _crawl_log(wd, "src-20261101T000000Z", 40)
    _crawl_log(wd, "src-20261102T000000Z", 30, 40)
    first = run_suite_check(_cfg(), wd, "crawl_log", suite)
    assert first.outcome.critical_passed and first.rows_validated == 70
    _crawl_log(wd, "src-20261103T000000Z", 20, 70)
    again = run_suite_check(_cfg(), wd, "crawl_log", suite)
    assert again.rows_validated == 20 and again.layer_rows == 90
    assert [u.key for u in again.units_validated] == ["src/src-20261103T000000Z.parquet"]
    # a batch loaded again rewrites its file: that file is validated again
    os.utime(wd.crawl_log_file("src", "src-20261101T000000Z"), ns=(1, 1))
    assert run_suite_check(_cfg(), wd, "crawl_log", suite).rows_validated == 40
    # whole-table expectations still see every file: a (crawl_id, seq) repeated across two files
    _crawl_log(wd, "src-20261103T000000Z", 20, 70)
    wd.crawl_log_file("other", "x").parent.mkdir(parents=True)
    shutil.copy(wd.crawl_log_file("src", "src-20261103T000000Z"), wd.crawl_log_file("other", "src-20261103T000000Z"))
    dup = run_suite_check(_cfg(), wd, "crawl_log", suite)
    assert dup.rows_validated == 40 and not dup.outcome.critical_passed


def test_a_release_validates_the_shards_it_wrote_not_those_it_shares(tmp_path):
    from dataset_platform.checks.suite_check import run_suite_check
    from dataset_platform.release.publish import publish_release

    cfg = _cfg()
    wd = Workdir.at(tmp_path / "wd").ensure()
    suite = REPO / "expectations" / "dataset_release.json"

    def docs(n: int) -> str:
        return (f"(SELECT substr(md5('doc' || i), 1, 16) AS id, 'src' AS source, 'https://example.org/' || i AS url, "
                "'Title ' || i AS title, 'Document ' || i || ' is about rivers and mountains and the weather.' AS text, "
                "'en' AS lang, 'science' AS topic, 'rule' AS topic_source, 0.9 AS topic_confidence, "
                f"md5('doc' || i) AS content_hash FROM range({n}) t(i))")

    def publish(n: int, previous: bool):
        con = duckdb.connect()
        prev = f"read_parquet({sql_str(wd.split_assignments)})" if previous else None
        info = publish_release(con, docs(n), wd.releases, cfg.dataset, cfg.pipeline.splits,
                               config_fingerprint="test", label_sets=cfg.label_set_names,
                               previous_assignments_sql=prev)
        wd.split_assignments.parent.mkdir(parents=True, exist_ok=True)
        con.sql(f"COPY (SELECT id, split, group_key FROM split_assignments ORDER BY id) "
                f"TO {sql_str(wd.split_assignments)} (FORMAT parquet)")
        con.close()
        return info

    v1 = publish(200, previous=False)
    first = run_suite_check(cfg, wd, "dataset_release", suite)
    assert first.outcome.critical_passed and first.rows_validated == 200 == first.layer_rows
    v2 = publish(201, previous=True)  # one document more: written into one new shard, the others reused
    # a reused shard may be renamed (train-00000-of-00001 -> -of-00002): content, not name, says reused
    changed = [k for k, sha in v2.files.items() if sha not in set(v1.files.values())]
    assert len(changed) == 1 and len(v2.files) >= 3
    again = run_suite_check(cfg, wd, "dataset_release", suite)
    assert [u.key for u in again.units_validated] == changed
    assert again.rows_validated == pq.read_metadata(v2.path / changed[0]).num_rows < 201
    assert again.layer_rows == 201 and again.outcome.critical_passed
    # the split column of the rows validated is the release view's own
    split = [o for o in again.outcome.outcomes if o.kwargs.get("column") == "split"]
    assert split and all(o.success and o.element_count == again.rows_validated for o in split)
    # a manifest that does not name the files: every file is validated (by file, not by content)
    manifest = json.loads((v2.path / "manifest.json").read_text())
    (v2.path / "manifest.json").write_text(json.dumps({**manifest, "files": {}}))
    assert run_suite_check(cfg, wd, "dataset_release", suite).rows_validated == 201


def test_a_whole_table_expectation_does_not_read_the_text_column(tmp_path):
    """Uniqueness, row count and the column list of a layer whose text column cannot be read."""
    from dataset_platform.checks.gx_suites import validate_relation

    path = tmp_path / "part.parquet"
    con = duckdb.connect()
    con.sql(f"COPY (SELECT substr(md5('doc' || i), 1, 16) AS id, repeat('text ', 200) || i AS text "
            f"FROM range(5000) t(i)) TO {sql_str(path)} (FORMAT parquet, COMPRESSION uncompressed)")
    meta = pq.read_metadata(path)
    with open(path, "r+b") as f:  # garble every data page of the text column
        for rg in range(meta.num_row_groups):
            col = meta.row_group(rg).column(1)
            start = col.dictionary_page_offset or col.data_page_offset
            f.seek(start)
            f.write(b"\xff" * col.total_compressed_size)
    with pytest.raises(duckdb.Error):
        con.sql(f"SELECT max(length(text)) FROM read_parquet({sql_str(path)})").fetchall()
    suite = tmp_path / "s.json"
    suite.write_text(json.dumps({"name": "s", "expectations": [
        {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": ["id", "text"]},
         "severity": "critical"},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}, "severity": "critical"},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}, "severity": "critical"},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "id", "regex": "^[0-9a-f]{16}$"},
         "severity": "critical"}]}))
    sql = f"SELECT * FROM read_parquet({sql_str(path)})"
    out = validate_relation(con, sql, suite)
    assert out.critical_passed and out.row_count == 5000 and out.rows_validated == 5000
    con.close()


def test_importing_the_code_location_and_the_cli_does_not_import_gx(tmp_path):
    code = ("import sys, dataset_platform.definitions, dataset_platform.cli; "
            "sys.exit(1 if 'great_expectations' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    assert subprocess.run([sys.executable, "-P", "-c", code], env=env, cwd=tmp_path).returncode == 0


def _clusters(wd: Workdir, rows: range, *, bad: int | None = None) -> None:
    """duplicate_clusters rewritten whole (as dedup does), one row per number; row ``bad`` with an
    invalid kind (a critical failure)."""
    path = wd.layer("duplicate_clusters")
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = "CASE WHEN i % 2 = 0 THEN 'exact' ELSE 'near' END" + (f" || CASE WHEN i = {bad} THEN '?' ELSE '' END"
                                                                  if bad is not None else "")
    con = duckdb.connect()
    con.sql(f"COPY (SELECT substr(md5('k' || i // 3), 1, 16) AS cluster_id, substr(md5('d' || i), 1, 16) AS doc_id, "
            f"substr(md5('k' || i // 3), 1, 16) AS keeper_id, 0.9 AS similarity, {kind} AS kind "
            f"FROM range({rows.start}, {rows.stop}) t(i) ORDER BY doc_id) TO {sql_str(path)} (FORMAT parquet)")
    con.close()


def test_a_file_rewritten_whole_validates_only_its_new_rows_and_blocks_until_fixed(tmp_path):
    """duplicate_clusters (and dedup's rejects) are rewritten whole on every refresh: the rows of
    the last version are not validated again, new ones are, and a failing one keeps failing."""
    from dataset_platform.checks.suite_check import run_suite_check

    wd = Workdir.at(tmp_path / "wd").ensure()
    suite = REPO / "expectations" / "duplicate_clusters.json"
    _clusters(wd, range(100))
    first = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert first.outcome.critical_passed and first.rows_validated == 100
    _clusters(wd, range(105), bad=102)  # the same 100 rows, 5 new ones, one of them invalid
    failed = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert failed.rows_validated == 5 and failed.layer_rows == 105 and not failed.outcome.critical_passed
    assert "only the rows not validated before" in failed.scope()
    assert not run_suite_check(_cfg(), wd, "duplicate_clusters", suite).outcome.critical_passed  # still
    _clusters(wd, range(105))  # fixed: the fixed row is new, so it is validated
    fixed = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert fixed.outcome.critical_passed and fixed.rows_validated == 5  # (its rows not recorded while it failed)
    _clusters(wd, range(105))  # rewritten with the same rows: none is new
    same = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert same.outcome.critical_passed and same.rows_validated == 0 and same.layer_rows == 105
    # a row that changed is a new row; a whole-table expectation still sees every row
    _clusters(wd, range(105), bad=7)
    changed = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert changed.rows_validated == 1 and not changed.outcome.critical_passed
    _clusters(wd, list_range := range(105))  # back as it was: that row was validated before
    back = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert back.outcome.critical_passed and back.rows_validated == 0
    path = wd.layer("duplicate_clusters")
    con = duckdb.connect()
    con.sql(f"COPY (SELECT * FROM read_parquet({sql_str(path)}) UNION ALL (SELECT * FROM read_parquet({sql_str(path)}) "
            f"LIMIT 1)) TO {sql_str(tmp_path / 'dup.parquet')} (FORMAT parquet)")
    con.close()
    shutil.copy(tmp_path / "dup.parquet", path)
    dup = run_suite_check(_cfg(), wd, "duplicate_clusters", suite)
    assert dup.rows_validated == 0 and dup.layer_rows == len(list_range) + 1
    assert not dup.outcome.critical_passed  # doc_id unique: over the whole file
    # other row-level expectations (another fingerprint): every row again
    other = tmp_path / "duplicate_clusters.json"
    spec = json.loads(suite.read_text())
    for e in spec["expectations"]:
        if e["type"] == "expect_column_values_to_match_regex":
            e["kwargs"]["regex"] = "^[0-9a-f]+$"
    other.write_text(json.dumps(spec))
    assert run_suite_check(_cfg(), wd, "duplicate_clusters", other).rows_validated == 106


def test_a_file_validated_whole_before_its_rows_were_kept_gets_them_kept_at_the_next_check(tmp_path):
    """A work folder from before row fingerprints: its validated file is not validated again, and
    its rows are kept then, so the next rewrite validates only what is new."""
    from dataset_platform.checks.gx_suites import row_level_fingerprint
    from dataset_platform.checks.scope import Ledger, stored_layer
    from dataset_platform.checks.suite_check import CHECK, run_suite_check

    wd = Workdir.at(tmp_path / "wd").ensure()
    suite = REPO / "expectations" / "duplicate_clusters.json"
    _clusters(wd, range(50))
    assert run_suite_check(_cfg(), wd, "duplicate_clusters", suite).rows_validated == 50
    ledger = Ledger(wd, "duplicate_clusters", CHECK, row_level_fingerprint(suite, _cfg().label_values))
    (unit,) = stored_layer(wd, "duplicate_clusters").units
    ledger._rows_file(unit).unlink()  # as an older version left it: validated, no rows kept
    assert run_suite_check(_cfg(), wd, "duplicate_clusters", suite).rows_validated == 0
    assert ledger.has_rows(unit)
    _clusters(wd, range(53))
    assert run_suite_check(_cfg(), wd, "duplicate_clusters", suite).rows_validated == 3


def test_row_fingerprints_kept_under_an_earlier_suite_are_deleted_when_another_passes(tmp_path):
    """A rewritten-whole file's row fingerprints are kept per suite fingerprint; once a changed
    suite passes, those of the old one are deleted (they would never be read again)."""
    from dataset_platform.checks.suite_check import run_suite_check

    wd = Workdir.at(tmp_path / "wd").ensure()
    suite = REPO / "expectations" / "duplicate_clusters.json"
    _clusters(wd, range(40))
    assert run_suite_check(_cfg(), wd, "duplicate_clusters", suite).outcome.critical_passed
    folder = wd.check_state("duplicate_clusters", "gx_suite").parent
    first = sorted(folder.glob("*.rows-*.parquet"))
    assert len(first) == 1
    other = tmp_path / "duplicate_clusters.json"
    spec = json.loads(suite.read_text())
    for e in spec["expectations"]:
        if e["type"] == "expect_column_values_to_match_regex":
            e["kwargs"]["regex"] = "^[0-9a-f]{16,}$"  # (still true of every row: the check passes)
    other.write_text(json.dumps(spec))
    again = run_suite_check(_cfg(), wd, "duplicate_clusters", other)
    assert again.outcome.critical_passed and again.rows_validated == 40
    now = sorted(folder.glob("*.rows-*.parquet"))
    assert len(now) == 1 and now != first
