"""The whole graph, for real: Scrapy over HTTP against the demo site, DuckDB, GX, Dagster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from dataset_platform import runner
from dataset_platform.config import demo_config_path, load_config
from dataset_platform.contracts import schema
from dataset_platform.definitions import build_definitions
from dataset_platform.defs.ingestion import all_sources_tags
from dataset_platform.ingest.refresh import DEMO_BASE_URL
from dataset_platform.release.materialise import current_release
from dataset_platform.stages.registry import STAGES
from dataset_platform.storage import Workdir, warehouse_connection

pytestmark = pytest.mark.slow

ASSETS = ["raw_pages", "crawl_log", *(n for st in STAGES for n in (st.output, *st.also_writes)),
          "rejected_documents", "dataset_release"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One real materialize() of every asset and check into a temporary workdir."""
    workdir = tmp_path_factory.mktemp("e2e")
    defs = build_definitions(demo_config_path(), workdir)
    graph = defs.resolve_all_asset_specs()
    assert {s.key.to_user_string() for s in graph} == set(ASSETS)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(defs.assets),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
            tags=all_sources_tags(load_config(demo_config_path())),  # every source partition, one run
        )
        evaluations = result.get_asset_check_evaluations()
    return Workdir.at(workdir), result, evaluations


def q(wd: Workdir, sql: str):
    con = warehouse_connection(wd)  # (the views read paths relative to the work folder)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_materialize_succeeds_and_every_check_passes(demo_run):
    wd, result, evaluations = demo_run
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set(ASSETS)
    names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    for layer in ASSETS:
        assert (layer, "gx_suite") in names
    for st in STAGES:
        assert (st.output, "accounting") in names
    assert ("raw_pages", "reconciles_with_crawl_log") in names and ("dataset_release", "reconciles_with_crawl") in names
    failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert failed == []


def test_warehouse_has_every_contract_table_with_its_columns(demo_run):
    wd, _, _ = demo_run
    for layer in ASSETS:
        cols = [r[0] for r in q(wd, f"DESCRIBE {layer}")]
        assert cols == schema.columns(layer, ["topic"]), layer  # the demo declares one label set
        assert q(wd, f"SELECT count(*) FROM {layer}")[0][0] >= (0 if layer in ("duplicate_clusters", "human_annotations") else 1)


def test_every_crawled_page_is_released_or_rejected_with_a_reason(demo_run):
    wd, _, _ = demo_run
    (crawled,) = q(wd, "SELECT count(*) FROM raw_pages")[0]
    (released,) = q(wd, "SELECT count(*) FROM dataset_release")[0]
    (rejected,) = q(wd, "SELECT count(*) FROM rejected_documents")[0]
    assert crawled == released + rejected
    lost = q(wd, """SELECT id FROM raw_pages EXCEPT SELECT id FROM dataset_release
                    EXCEPT SELECT id FROM rejected_documents""")
    assert lost == []
    assert q(wd, "SELECT count(*) FROM rejected_documents WHERE rule IS NULL OR rule = '' OR value IS NULL")[0][0] == 0
    # every dropped duplicate names a keeper that is itself in the release
    assert q(wd, """SELECT count(*) FROM duplicate_clusters c
                    WHERE c.keeper_id NOT IN (SELECT id FROM dataset_release)""")[0][0] == 0
    assert q(wd, """SELECT count(*) FROM duplicate_clusters c JOIN rejected_documents r ON r.id = c.doc_id
                    AND r.stage = 'dedup'""")[0][0] == q(wd, "SELECT count(*) FROM duplicate_clusters")[0][0]


def test_demo_site_features_flow_through(demo_run):
    wd, _, _ = demo_run
    manifest = json.loads((wd.demo_site / "manifest.json").read_text())
    kinds = {p["path"]: p["kind"] for p in manifest["pages"]}
    urls = {r[0] for r in q(wd, "SELECT url FROM raw_pages")}
    paths = {re.sub(r"^https?://[^/]+", "", u) or "/" for u in urls}
    # robots.txt is obeyed: nothing under /private/ was fetched
    assert not [p for p in paths if p.startswith("/private/")]
    assert any(k == "private" for k in kinds.values())
    # URLs are recorded under the demo's stable base, not the random port
    assert all(u.startswith(DEMO_BASE_URL) for u in urls)
    reasons = {(s, r) for s, r in q(wd, "SELECT DISTINCT stage, rule FROM rejected_documents")}
    # what the crawl did not store is in crawl_log with its outcome
    outcome = dict(q(wd, "SELECT regexp_replace(url, '^https?://[^/]+', ''), outcome FROM crawl_log"))
    binaries = [p for p, k in kinds.items() if k == "binary"]
    assert binaries and all(outcome[p] == "not_html" for p in binaries)  # the PDF / PNG links
    assert [outcome[p] for p, k in kinds.items() if k == "missing"] == ["failed:http_404"]  # the broken link
    private = [p for p, k in kinds.items() if k == "private"]
    assert private and [outcome.get(p) for p in private] == ["robots_disallowed"] * len(private)
    assert q(wd, "SELECT count(*) FROM crawl_log WHERE outcome = 'fetched'")[0][0] == len(urls)
    assert ("dedup", "exact_duplicate") in reasons  # /mirror/ pages
    # short pages and spam (rule names of contracts/rules.py)
    assert {("clean", "gopher_quality.word_count"), ("clean", "gopher_repetition.top_2gram_char_frac")} <= reasons
    # the mirror copies were dropped in favour of the originals
    mirrors = {u for (u,) in q(wd, "SELECT url FROM rejected_documents WHERE rule = 'exact_duplicate'")}
    assert mirrors and all("/mirror/" in u for u in mirrors)
    # near-duplicates (one sentence changed) are clustered with their originals, one kept per cluster
    dup_of = {p["path"]: p["duplicate_of"] for p in manifest["pages"] if p["kind"] == "near_duplicate"}
    near = q(wd, "SELECT regexp_replace(d.url, '^https?://[^/]+', ''), regexp_replace(k.url, '^https?://[^/]+', ''), "
                 "c.similarity FROM duplicate_clusters c JOIN cleaned_documents d ON d.id = c.doc_id "
                 "JOIN cleaned_documents k ON k.id = c.keeper_id WHERE c.kind = 'near'")
    assert near and len(near) >= 0.8 * len(dup_of)
    for doc, keeper, sim in near:  # each pair is a page and its planted original, either way round
        assert dup_of.get(doc) == keeper or dup_of.get(keeper) == doc, (doc, keeper)
        assert 0.7 <= sim <= 1
    # spam pages never reach the release
    spam = {p for p, k in kinds.items() if k == "spam"}
    released_paths = {re.sub(r"^https?://[^/]+", "", u) for (u,) in q(wd, "SELECT url FROM dataset_release")}
    assert not spam & released_paths
    # both languages, topics with their source, and all three splits
    langs = dict(q(wd, "SELECT lang, count(*) FROM dataset_release GROUP BY 1"))
    assert langs.get("en", 0) > 50 and langs.get("zh", 0) > 20
    assert q(wd, "SELECT count(*) FROM dataset_release WHERE topic IS NULL OR topic_source IS NULL")[0][0] == 0
    assert {s for (s,) in q(wd, "SELECT DISTINCT split FROM dataset_release")} == {"train", "validation", "test"}


def test_topic_labels_agree_with_the_demo_topics(demo_run):
    wd, _, _ = demo_run
    manifest = json.loads((wd.demo_site / "manifest.json").read_text())
    gold = {p["path"]: p["topic"] for p in manifest["pages"] if p["kind"] in ("article", "pii") and p["topic"]}
    rows = q(wd, "SELECT url, topic FROM dataset_release")
    pairs = [(gold[p], t) for u, t in rows if (p := re.sub(r"^https?://[^/]+", "", u)) in gold]
    assert len(pairs) > 100
    accuracy = sum(g == t for g, t in pairs) / len(pairs)
    assert accuracy >= 0.9, accuracy


def test_no_structured_pii_in_the_release(demo_run):
    wd, _, _ = demo_run
    from dataset_platform.stages.clean.pii import count_pii

    texts = [t for (t,) in q(wd, "SELECT text FROM dataset_release")]
    assert texts and count_pii(texts) == 0
    assert q(wd, "SELECT count(*) FROM dataset_release WHERE text LIKE '%<EMAIL>%'")[0][0] >= 1
    assert q(wd, "SELECT count(*) FROM dataset_release WHERE text LIKE '%<PHONE>%'")[0][0] >= 1


def test_release_files_readable_and_manifest_true(demo_run):
    wd, _, _ = demo_run
    cfg = load_config(demo_config_path())
    release = current_release(cfg, wd)
    manifest = json.loads((release / "manifest.json").read_text())
    from dataset_platform.release.publish import sha256_file

    total = 0
    for rel, meta in manifest["files"].items():
        t = pq.read_table(release / rel)
        assert t.num_rows == meta["rows"] and sha256_file(release / rel) == meta["sha256"]
        total += t.num_rows
    assert total == manifest["total_rows"] == q(wd, "SELECT count(*) FROM dataset_release")[0][0]
    assert manifest["config_sha256"] == cfg.fingerprint()
    card = (release / "README.md").read_text()
    assert card.startswith("---\n") and f"# {cfg.dataset.name} ({manifest['version']})" in card


def test_every_suite_check_links_its_gx_data_docs(demo_run):
    wd, result, _ = demo_run
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == "gx_suite"]
    assert {e.asset_key.to_user_string() for e in evaluations} >= {"raw_pages", "labelled_documents", "dataset_release"}
    for e in evaluations:
        assert "data_docs" in e.metadata, (e.asset_key, dict(e.metadata))
        page = Path(e.metadata["data_docs"].value)
        assert page.is_file() and page.is_relative_to(wd.data_docs), page
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))
        assert f"Expectation Suite: {e.asset_key.to_user_string()}" in text and "Status: Succeeded" in text
    index = (wd.data_docs / "site" / "index.html").read_text()
    assert all(f"validations/{e.asset_key.to_user_string()}/" in index for e in evaluations)


def test_release_diversity_and_balance_is_measured(demo_run):
    _, result, _ = demo_run
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "diversity_and_balance"]
    md = ev.metadata
    assert ev.passed and md["failed"].value == 0
    assert md["languages"].value == 2 and md["sources"].value >= 1 and md["domains"].value >= 1
    assert md["topic_values"].value >= 5 and 0 < md["topic_largest_share"].value <= 0.5
    assert "| measure | value | bound | ok | largest |" in md["findings"].value


def test_materialization_metadata_is_useful(demo_run):
    _, result, _ = demo_run
    md = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert md["raw_pages"]["dagster/row_count"].value > 200
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents"):
        assert {"input_rows", "kept_rows", "rejected_rows", "drop_reasons", "docs_per_s"} <= set(md[layer])
    assert md["dataset_release"]["version"].value.startswith("v")
    # what a data engineer looks for on every document layer: counts, time, speed, and small charts
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
                  "decontaminated_documents", "dataset_release"):
        m = md[layer]
        assert {"dagster/row_count", "duration_s", "length_histogram", "length_median_chars", "language_shares",
                "source_shares", "languages", "sources"} <= set(m), layer
        assert "| characters | documents | share |" in m["length_histogram"].value and "█" in m["length_histogram"].value
        assert "| en |" in m["language_shares"].value and "| zh |" in m["language_shares"].value
        assert m["languages"].value >= 2 and m["length_median_chars"].value > 0
        if layer != "dataset_release":
            assert m["docs_per_s"].value > 0
    clusters = md["duplicate_clusters"]
    sources = [x.name for x in load_config(demo_config_path()).sources]
    assert all(f"| {name} |" in clusters["duplicate_rate_by_source"].value for name in sources)
    assert "| documents in cluster | clusters |" in clusters["cluster_sizes"].value
    assert clusters["near_duplicates"].value > 0 and clusters["exact_duplicates"].value > 0


def test_a_dedup_refresh_reuses_the_minhash_index_and_writes_the_same_bytes(demo_run):
    wd, _, _ = demo_run
    cfg = load_config(demo_config_path())
    index = wd.stage_state("deduplicated_documents", "minhash_index")
    assert (index / "index.json").exists()
    parts = wd.layer_files("deduplicated_documents")
    assert len(parts) == 1  # one crawl: one part
    before = {p: p.read_bytes() for p in (*parts, wd.layer("duplicate_clusters"))}
    logs: list[str] = []
    runner.materialise("dedup", cfg, wd, log=logs.append)
    assert [m for m in logs if "verified pairs reused from the index" in m]
    assert not [m for m in logs if m.startswith("dedup: signatures for")]  # nothing new: nothing signed
    assert [m for m in logs if "0 part(s) computed" in m and "1 unchanged" in m]  # and no part written
    assert wd.layer_files("deduplicated_documents") == parts
    assert {p: p.read_bytes() for p in before} == before


def test_definitions_load_without_deprecation_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs = build_definitions(demo_config_path(), tmp_path)
        dg.Definitions.validate_loadable(defs)
    ours = [w for w in caught if "dataset_platform" in str(w.filename)]
    assert ours == [], [str(w.message) for w in ours]
    assert defs.resolve_job_def("dataset_pipeline") is not None
    assert defs.resolve_schedule_def("refresh_demo").default_status == dg.DefaultScheduleStatus.RUNNING
    for name in ("automation_sensor", "run_failure_alert", "inbox_sensor", "annotation_sensor"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING, name
    assert defs.resolve_sensor_def("config_change_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def test_workspace_yaml_points_at_the_code_location():
    text = (Path(__file__).resolve().parents[1] / "workspace.yaml").read_text()
    assert "module_name: dataset_platform.definitions" in text


def test_dagster_cli_loads_the_workspace(tmp_path):
    """What `dagster dev -w workspace.yaml` loads: the code location validates through Dagster's own CLI."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "DATASET_PLATFORM_WORKDIR": str(tmp_path / "wd")}
    (tmp_path / "home").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "All code locations passed validation" in r.stdout + r.stderr
