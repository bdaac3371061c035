"""`dataset-platform sql`, `status` and `trace` on a work folder built by a real run of the graph:
the demo site crawled over HTTP on 127.0.0.1, with an evaluation set made of one demo article's
paragraph, so that the run holds a released document, planted near-duplicates, rule drops, a
decontaminated document and a crawled URL that failed (the demo's broken link, a 404)."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataset_platform.cli import main
from dataset_platform.config import demo_config_path
from dataset_platform.demo.site import MISSING_PATH, generate_site
from dataset_platform.ingest.refresh import DEMO_BASE_URL
from dataset_platform.inspect.table import fmt_float
from dataset_platform.inspect.trace import doc_id
from dataset_platform.storage import warehouse_connection
from dataset_platform.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]


def _planted_paragraph(site_dir: Path) -> tuple[str, str]:
    """(path, paragraph): the longest paragraph of the first English article that has no planted
    copy (so dedup keeps it and it reaches decontamination)."""
    manifest = generate_site(site_dir)
    copied = {p["duplicate_of"] for p in manifest["pages"] if p["duplicate_of"]}
    page = next(p for p in manifest["pages"] if p["kind"] == "article" and p["lang"] == "en" and p["path"] not in copied)
    body = (site_dir / "site" / page["path"].lstrip("/")).read_text(encoding="utf-8")
    paragraphs = [html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in re.findall(r"<p>(.*?)</p>", body, re.S)]
    return page["path"], max(paragraphs, key=len)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One `dataset-platform run` of the demo config plus an evaluation set (a real subprocess,
    recording its run in <workdir>/dagster_home as a user's run does)."""
    root = tmp_path_factory.mktemp("inspect")
    planted_path, paragraph = _planted_paragraph(root / "site")
    evals = root / "evals.jsonl"
    evals.write_text(json.dumps({"id": "planted-1", "question": paragraph}) + "\n", encoding="utf-8")
    cfg = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    cfg["pipeline"]["decontamination"]["benchmarks"] = [{"path": str(evals), "fields": ["question"]}]
    config = root / "sources.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    wd = root / "work"
    # two annotators label one Chinese article with a topic it does not have: human labels win
    site = json.loads((root / "site" / "manifest.json").read_text(encoding="utf-8"))
    copied = {p["duplicate_of"] for p in site["pages"] if p["duplicate_of"]}
    zh = next(p for p in site["pages"] if p["kind"] == "article" and p["lang"] == "zh" and p["path"] not in copied)
    human = "culture" if zh["topic"] != "culture" else "science"
    annotated = doc_id("demo", DEMO_BASE_URL + zh["path"])
    (wd / "inbox" / "annotations").mkdir(parents=True)
    (wd / "inbox" / "annotations" / "export.json").write_text(json.dumps([{"id": 7, "data": {"doc_id": annotated},
        "annotations": [{"id": 70 + who, "completed_by": who, "was_cancelled": False,
                         "updated_at": f"2026-11-23T10:00:0{who}Z", "created_at": f"2026-11-23T10:00:0{who}Z",
                         "result": [{"from_name": "topic", "to_name": "text", "type": "choices",
                                     "value": {"choices": [human]}}]} for who in (1, 2)]}]), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DATASET_PLATFORM_WORKDIR")}
    run_ids = []
    for _ in range(2):  # a first crawl, then a refresh (a second batch: pages not modified)
        proc = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "run", "--config", str(config),
                               "--workdir", str(wd)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run_ids.append(re.search(r"^run (\S+): succeeded", proc.stdout, re.M).group(1))
    return {"wd": wd, "run_ids": run_ids, "planted_url": DEMO_BASE_URL + planted_path, "paragraph": paragraph,
            "annotated": annotated, "human": human,
            "site": json.loads((wd / "demo_site" / "manifest.json").read_text(encoding="utf-8"))}


@pytest.fixture(autouse=True)
def _own_dagster_home(monkeypatch):
    """`status` reads $DAGSTER_HOME when set (as the CLI records runs there): not another test's."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def q(wd: Path, sql: str) -> list[tuple]:
    con = warehouse_connection(Workdir.at(wd))  # (views read paths relative to the work folder)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def run(capsys, *args) -> tuple[int, str, str]:
    """The real `dataset-platform` parser and dispatch, in this process."""
    rc = main(list(args))
    got = capsys.readouterr()
    return rc, got.out, got.err


def trace_json(capsys, wd: Path, what: str) -> dict:
    rc, out, err = run(capsys, "trace", what, "--workdir", str(wd), "--json")
    assert rc == 0, err
    return json.loads(out)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ without a run


def test_floats_are_rounded_for_people():
    assert fmt_float(0.033333333333333326) == "0.0333"
    assert fmt_float(2.0) == "2" and fmt_float(1234.56789) == "1234.5679" and fmt_float(-0.5) == "-0.5"
    assert fmt_float(0.00001234) == "1.234e-05" and fmt_float(0.0) == "0"


@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["status"], ["trace", "0123456789abcdef"]])
def test_a_missing_work_folder_is_a_usage_error_that_says_what_to_do(capsys, tmp_path, command):
    rc, out, err = run(capsys, *command, "--workdir", str(tmp_path / "nowhere"))
    assert rc == 2 and out == ""
    assert f"work folder {tmp_path / 'nowhere'} does not exist" in err and "dataset-platform demo" in err


def test_trace_of_an_id_the_work_folder_does_not_know(capsys, tmp_path):
    (tmp_path / "w" / "layers").mkdir(parents=True)
    rc, out, _ = run(capsys, "trace", "0123456789ABCDEF", "--workdir", str(tmp_path / "w"))
    assert rc == 1
    assert out.strip() == ("no document found for '0123456789ABCDEF': give a document id (16 hex digits), a URL as "
                           "crawled, or a text snippet")


# ------------------------------------------------------------------ trace


@pytest.mark.slow
def test_trace_a_released_document_by_url_and_by_id(built, capsys):
    wd = built["wd"]
    latest = (wd / "releases" / "demo-web-text" / "LATEST").read_text().strip()
    url, did, split, topic, source = q(wd, "SELECT url, id, split, topic, topic_source FROM dataset_release "
                                           "WHERE lang = 'en' ORDER BY id LIMIT 1")[0]
    assert did == doc_id("demo", url)
    rc, out, _ = run(capsys, "trace", url, "--workdir", str(wd))
    assert rc == 0
    assert f"=> released: demo-web-text {latest} (the current release), split {split}" in out
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
                  "decontaminated_documents"):
        assert re.search(rf"^  {layer} +reached", out, re.M), layer
    assert f"label topic = {topic} (source {source}, confidence" in out
    assert f"split {split} (group" in out
    # both batches considered it, in landing order; its stored page is the first crawl's
    batches = [b for (b,) in q(wd, f"SELECT crawl_id FROM crawl_log WHERE id = '{did}' ORDER BY crawl_id")]
    assert len(batches) == 2
    assert re.findall(r"^    demo/(\S+), #\d+, outcome (\w+)", out, re.M) == [(batches[0], "fetched"),
                                                                             (batches[1], "not_modified")]
    assert f"raw_pages: part demo/{batches[0]}, batch {batches[0]}" in out
    j = trace_json(capsys, wd, did)
    assert j["kind"] == "id" and [d["id"] for d in j["documents"]] == [did]
    doc = j["documents"][0]
    assert doc["dropped"] is None and doc["raw_pages"]["url"] == url
    assert [(r["version"], r["latest"], r["split"]) for r in doc["releases"]] == [(latest, True, split)]
    shard = doc["releases"][0]["shard"]
    assert q(wd, f"SELECT count(*) FROM read_parquet('{wd}/releases/demo-web-text/{latest}/{shard}') "
                 f"WHERE id = '{did}'")[0][0] == 1  # the shard named holds it
    assert [(x["label_set"], x["value"], x["source"]) for x in doc["labels"]] == [("topic", topic, source)]


@pytest.mark.slow
def test_trace_a_near_duplicate_names_its_keeper_and_similarity(built, capsys):
    wd = built["wd"]
    planted = {DEMO_BASE_URL + p["path"]: DEMO_BASE_URL + p["duplicate_of"] for p in built["site"]["pages"]
               if p["kind"] == "near_duplicate"}
    rows = q(wd, "SELECT d.url, k.url, c.similarity, c.keeper_id FROM duplicate_clusters c "
                 "JOIN cleaned_documents d ON d.id = c.doc_id JOIN cleaned_documents k ON k.id = c.keeper_id "
                 "WHERE c.kind = 'near' ORDER BY d.url")
    dup_url, keeper_url, sim, keeper_id = next(r for r in rows if r[0] in planted or r[1] in planted)
    assert planted.get(dup_url) == keeper_url or planted.get(keeper_url) == dup_url
    rc, out, _ = run(capsys, "trace", dup_url, "--workdir", str(wd))
    assert rc == 0
    assert f"=> dropped by stage dedup: near_duplicate = {keeper_id} (near duplicate of {keeper_id}, " \
           f"similarity {fmt_float(sim)})" in out
    assert f"duplicate (near) of keeper {keeper_id} {keeper_url}, similarity {fmt_float(sim)}" in out
    assert re.search(r"^  cleaned_documents +reached", out, re.M)
    assert "deduplicated_documents     DROPPED by dedup: rule near_duplicate" in out
    # the keeper's own trace lists it among its duplicates
    keeper = trace_json(capsys, wd, keeper_id)["documents"][0]
    assert doc_id("demo", dup_url) in [d["doc_id"] for d in keeper["duplicates"]]
    assert keeper["verdict"].startswith("released:")


@pytest.mark.slow
def test_trace_a_document_dropped_by_a_quality_rule(built, capsys):
    wd = built["wd"]
    spam = {DEMO_BASE_URL + p["path"] for p in built["site"]["pages"] if p["kind"] == "spam"}
    rows = q(wd, "SELECT url, rule, value FROM rejected_documents WHERE stage = 'clean' ORDER BY url")
    url, rule, value = next(r for r in rows if r[0] in spam)
    rc, out, _ = run(capsys, "trace", url, "--workdir", str(wd))
    assert rc == 0
    assert f"=> dropped by stage clean: {rule} = {value}" in out
    assert f"cleaned_documents          DROPPED by clean: rule {rule}, value {value}" in out
    assert re.search(r"^  extracted_documents +reached", out, re.M)
    assert "deduplicated_documents" not in out and "release " not in out


@pytest.mark.slow
def test_trace_a_decontaminated_document(built, capsys):
    wd = built["wd"]
    doc = trace_json(capsys, wd, built["planted_url"])["documents"][0]
    assert doc["dropped"] == {"layer": "decontaminated_documents", "stage": "decontaminate",
                              "rule": "benchmark_overlap", "value": "evals:planted-1:question"}
    assert [x["layer"] for x in doc["layers"]] == ["extracted_documents", "cleaned_documents", "scored_documents",
                                                   "deduplicated_documents", "labelled_documents"]
    assert doc["labels"] and doc["releases"] == [] and doc["split"] is None
    assert doc["verdict"] == "dropped by stage decontaminate: benchmark_overlap = evals:planted-1:question"


@pytest.mark.slow
def test_trace_a_crawled_url_that_failed(built, capsys):
    wd = built["wd"]
    url = DEMO_BASE_URL + MISSING_PATH
    rc, out, _ = run(capsys, "trace", url, "--workdir", str(wd))
    assert rc == 0
    assert f"document {doc_id('demo', url)}  {url}" in out
    assert "=> never stored: the newest batch's crawl outcome is failed:http_404" in out
    assert "outcome failed:http_404, HTTP 404" in out
    doc = trace_json(capsys, wd, url)["documents"][0]
    assert doc["raw_pages"] is None and doc["layers"] == [] and doc["crawl_log"][0]["status"] == 404


@pytest.mark.slow
def test_trace_a_text_snippet_and_one_that_matches_nothing(built, capsys):
    wd = built["wd"]
    words = built["paragraph"].split()
    j = trace_json(capsys, wd, " ".join(words[3:12]))
    assert j["kind"] == "text" and j["searched"] == ["extracted_documents"]
    assert doc_id("demo", built["planted_url"]) in [m["id"] for m in j["matches"]]
    rc, out, _ = run(capsys, "trace", "no page of the demo says this, zqxj", "--workdir", str(wd))
    assert rc == 1
    assert "no document's text contains 'no page of the demo says this, zqxj' (searched extracted_documents then " \
           "cleaned_documents" in out


@pytest.mark.slow
def test_trace_a_snippet_matching_several_lists_them_and_traces_the_first(built, capsys):
    wd = built["wd"]
    (n,) = q(wd, "SELECT count(*) FROM extracted_documents WHERE contains(text, 'the')")[0]
    assert n > 10
    rc, out, _ = run(capsys, "trace", "the", "--workdir", str(wd))
    assert rc == 0
    assert out.startswith("10+ documents contain 'the'") and "to narrow down" in out
    assert len(re.findall(r"^document [0-9a-f]{16}", out, re.M)) == 3


@pytest.mark.slow
def test_trace_shows_human_annotations_and_the_label_they_gave(built, capsys):
    wd, did, human = built["wd"], built["annotated"], built["human"]
    assert q(wd, f"SELECT topic, topic_source FROM dataset_release WHERE id = '{did}'") == [(human, "human")]
    rc, out, _ = run(capsys, "trace", did, "--workdir", str(wd))
    assert rc == 0
    assert f"label topic = {human} (source human, confidence" in out
    assert re.findall(r"^  human annotation: topic = (\S+) by (\S+)", out, re.M) == [(human, "1"), (human, "2")]


@pytest.mark.slow
def test_trace_document_job_shows_the_journey_in_dagster(built, capsys, monkeypatch):
    import dagster as dg

    from dataset_platform.defs.inspect import trace_document_job

    wd = built["wd"]
    monkeypatch.setenv("DATASET_PLATFORM_WORKDIR", str(wd))  # (as `dataset-platform ui` sets it)
    with dg.instance_for_test() as instance:
        result = trace_document_job.execute_in_process(
            instance=instance, run_config={"ops": {"trace_document": {"config": {"what": built["planted_url"]}}}})
    assert result.success
    (output,) = [e for e in result.all_events if e.is_successful_output]
    meta = output.event_specific_data.metadata
    did = doc_id("demo", built["planted_url"])
    assert meta["verdict"].value == f"- `{did}`: dropped by stage decontaminate: benchmark_overlap = " \
                                    "evals:planted-1:question"
    assert "DROPPED by decontaminate: rule benchmark_overlap" in meta["trace"].value
    cli = trace_json(capsys, wd, built["planted_url"])
    assert meta["journey"].value["documents"] == json.loads(json.dumps(cli["documents"]))


# ------------------------------------------------------------------ sql


@pytest.mark.slow
def test_sql_prints_a_table_csv_and_json_lines(built, capsys):
    wd = built["wd"]
    query = "SELECT stage, rule, count(*) AS n, avg(length(url)) AS avg_url FROM rejected_documents GROUP BY ALL ORDER BY ALL"
    expected = q(wd, query)
    rc, out, _ = run(capsys, "sql", query, "--workdir", str(wd))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["stage", "rule", "n", "avg_url"]
    assert lines[-1] == f"{len(expected)} rows"
    first = lines[2].split()
    assert first[:3] == [expected[0][0], expected[0][1], str(expected[0][2])] and first[3] == fmt_float(expected[0][3])
    rc, out, _ = run(capsys, "sql", query, "--workdir", str(wd), "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["stage", "rule", "n", "avg_url"]
    assert [(s, r, int(n), float(a)) for s, r, n, a in rows[1:]] == [tuple(x) for x in expected]
    rc, out, _ = run(capsys, "sql", query, "--workdir", str(wd), "--json", "--max-rows", "2")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"stage": s, "rule": r, "n": n, "avg_url": a} for s, r, n, a in expected[:2]]
    rc, out, _ = run(capsys, "sql", "SELECT id FROM raw_pages ORDER BY id", "--workdir", str(wd), "--max-rows", "3")
    (pages,) = q(wd, "SELECT count(*) FROM raw_pages")[0]
    assert out.splitlines()[-1] == f"{pages} rows (3 shown; --max-rows N shows more, --csv/--json all)"


@pytest.mark.slow
def test_sql_is_read_only_and_explains_errors(built, capsys, tmp_path):
    wd = built["wd"]
    before = _tree(wd)
    for stmt, kind in (("DROP VIEW raw_pages", "DROP"), ("CREATE TABLE t AS SELECT 1", "CREATE"),
                       (f"COPY (SELECT * FROM raw_pages) TO '{tmp_path / 'x.csv'}'", "COPY"),
                       ("SELECT 1; INSERT INTO raw_pages SELECT * FROM raw_pages", "INSERT")):
        rc, out, err = run(capsys, "sql", stmt, "--workdir", str(wd))
        assert rc == 2 and out == "" and f"only reads: a {kind} statement is refused" in err, err
    assert not (tmp_path / "x.csv").exists()
    rc, _, err = run(capsys, "sql", "SELEC id FROM raw_pages", "--workdir", str(wd))
    assert rc == 2 and "error: the query does not parse: Parser Error" in err
    rc, _, err = run(capsys, "sql", "SELECT * FROM raw_page", "--workdir", str(wd))
    assert rc == 2 and "Catalog Error" in err and "Tables of the warehouse: cleaned_documents, crawl_log" in err
    rc, _, err = run(capsys, "sql", "SELECT nope FROM raw_pages", "--workdir", str(wd))
    assert rc == 2 and "the query failed: Binder Error" in err
    # nothing in the work folder changed, and the views are all there
    for what in (["status"], ["trace", built["planted_url"]], ["sql", "SELECT count(*) FROM dataset_release"]):
        assert run(capsys, *what, "--workdir", str(wd))[0] == 0
    assert _tree(wd) == before
    assert q(wd, "SELECT count(*) FROM raw_pages")[0][0] > 0


# ------------------------------------------------------------------ status


@pytest.mark.slow
def test_status_shows_the_run_layers_checks_and_release(built, capsys):
    wd = built["wd"]
    rc, out, err = run(capsys, "status", "--workdir", str(wd), "--json")
    assert rc == 0, err
    s = json.loads(out)
    assert [(r["run_id"], r["status"], r["job"]) for r in s["runs"]] == [
        (run_id, "SUCCESS", "dataset_pipeline") for run_id in reversed(built["run_ids"])]  # newest first
    assert all(r["seconds"] > 0 and r["partitions"] == "demo" for r in s["runs"])
    layers = {x["layer"]: x["rows"] for x in s["layers"]}
    for layer in ("crawl_log", "raw_pages", "extracted_documents", "cleaned_documents", "deduplicated_documents",
                  "duplicate_clusters", "labelled_documents", "decontaminated_documents"):
        assert layers[layer] == q(wd, f"SELECT count(*) FROM {layer}")[0][0], layer
    checks = {(c["asset"], c["check"]): c["result"] for c in s["checks"]}
    assert checks[("decontaminated_documents", "accounting")] == "pass"
    assert ("dataset_release", "gx_suite") in checks and "FAIL" not in checks.values()
    latest = (wd / "releases" / "demo-web-text" / "LATEST").read_text().strip()
    (rel,) = s["releases"]
    assert (rel["dataset"], rel["version"]) == ("demo-web-text", latest)
    assert rel["rows"] == dict(q(wd, "SELECT split, count(*) FROM dataset_release GROUP BY 1"))
    rc, out, _ = run(capsys, "status", "--workdir", str(wd))
    assert all(run_id in out for run_id in built["run_ids"]) and "SUCCESS" in out
    (dropped,) = q(wd, "SELECT count(*) FROM rejected_documents WHERE stage = 'decontaminate'")[0]
    assert dropped >= 1
    assert re.search(rf"^  decontaminated_documents +{layers['decontaminated_documents']}  in "
                     rf"{layers['labelled_documents']}, rejected {dropped} \(benchmark_overlap {dropped}\)", out, re.M)
    assert f"release demo-web-text {latest} (1 version(s)): {sum(rel['rows'].values())} rows" in out
    assert "checks (latest result of each): " in out and " 0 FAIL" in out


def test_status_of_a_work_folder_without_runs(capsys, tmp_path):
    (tmp_path / "w" / "layers").mkdir(parents=True)
    rc, out, _ = run(capsys, "status", "--workdir", str(tmp_path / "w"))
    assert rc == 0
    assert "no run recorded in" in out and "no layer materialised yet" in out and "release: none yet" in out
    assert not (tmp_path / "w" / "dagster_home").exists()  # nothing created


def test_the_code_location_offers_the_trace_job():
    """`dataset-platform ui` shows the trace job in the Launchpad: it is in the code location's definitions."""
    from dataset_platform.definitions import build_definitions

    job = build_definitions().resolve_job_def("trace_document_job")
    assert [n.name for n in job.graph.nodes] == ["trace_document"]
