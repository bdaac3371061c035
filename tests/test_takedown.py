"""Takedown requests (stages/takedown.py): a URL, a domain and a text pattern requested after a
release; after the refresh no layer and no release holds them or their near-duplicates, the
request ids are in rejected_documents and in the card, and only the parts holding them were
rewritten. Real graph (graphkit: every layer as library code), real DuckDB."""

from __future__ import annotations

import hashlib
import random

import duckdb
import pytest
from graphkit import config, crawl_record, document, land_crawl, near_copy, page, parts, refresh, write_jsonl

from dataset_platform import runner
from dataset_platform.stages import takedown
from dataset_platform.workdir import Workdir

LAYERS = ("extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
          "decontaminated_documents")


def doc_id(source: str, url: str) -> str:
    return hashlib.md5(f"{source} {url}".encode()).hexdigest()[:16]


def release_rows(path) -> list[dict]:
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM read_parquet('{path}/data/*.parquet')").to_arrow_table().to_pylist()
    finally:
        con.close()


def release_rows_file(path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_takedown_validation_errors(tmp_path):
    f = tmp_path / "takedowns.yaml"
    f.write_text("requests:\n"
                 "  - {id: A, date: 2026-11-30, url: 'https://x.test/a', domain: x.test}\n"
                 "  - {id: B, date: 30/11/2026, url: 'https://x.test/b'}\n"
                 "  - {id: C, date: 2026-11-30}\n", encoding="utf-8")
    with pytest.raises(takedown.TakedownError) as e:
        takedown.parse_file(f)
    msg = str(e.value)
    assert "requests[0] (id 'A')" in msg and "exactly one target" in msg and "got url, domain" in msg
    assert "requests[1] (id 'B')" in msg and "YYYY-MM-DD" in msg
    assert "requests[2] (id 'C')" in msg and "got none" in msg
    f.write_text("requests:\n  - {id: A, date: 2026-11-30, url: 'https://x.test/a'}\n", encoding="utf-8")
    box = takedown.inbox(tmp_path / "wd")
    box.mkdir(parents=True)
    (box / "more.yaml").write_text("- {id: A, date: 2026-12-01, domain: y.test}\n", encoding="utf-8")
    cfg = config(tmp_path)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"takedowns": str(f)})})
    with pytest.raises(takedown.TakedownError, match="'A' is used twice"):
        takedown.load(cfg, tmp_path / "wd")


@pytest.mark.slow
def test_a_takedown_reaches_every_layer_and_release(tmp_path):
    rng = random.Random(21)
    wd = Workdir(tmp_path / "wd")
    requests_file = tmp_path / "takedowns.yaml"
    cfg = config(tmp_path)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"takedowns": str(requests_file)})})

    victim_text = document(rng, "harbour")
    news = [{"url": f"https://news.test/{i}", "title": f"Story {i}", "text": document(rng, ["garden", "school"][i % 2])}
            for i in range(40)]
    news.append({"url": "https://news.test/victim", "title": "Victim", "text": victim_text})
    news.append({"url": "https://news.test/victim-copy", "title": "Copy", "text": near_copy(rng, victim_text)})
    news.append({"url": "https://spam.test/a", "title": "Spam A", "text": document(rng, "garden")})
    news.append({"url": "https://www.spam.test/b", "title": "Spam B", "text": document(rng, "school")})
    news.append({"url": "https://notspam.test/c", "title": "Not spam", "text": document(rng, "school")})
    person = document(rng, "school") + "\nThe headmaster Jane Q. Example said the exam week went well for every pupil."
    news.append({"url": "https://news.test/jane", "title": "Jane", "text": person})
    write_jsonl(wd.inbox("news") / "drop-1.jsonl", news)
    jane_page = document(rng, "garden") + "\nOur neighbour JANE Q. EXAMPLE grows the best tomato in the village."
    land_crawl(wd, "site", "20270101T000001", [
        crawl_record("http://127.0.0.2/", html=page("Home", document(rng, "garden"))),
        crawl_record("http://127.0.0.2/jane", html=page("Jane", jane_page)),
    ])
    first = refresh(cfg, wd)
    v1 = first["dataset_release"]
    ids = {"url": doc_id("news", "https://news.test/victim"), "copy": doc_id("news", "https://news.test/victim-copy"),
           "spam_a": doc_id("news", "https://spam.test/a"), "spam_b": doc_id("news", "https://www.spam.test/b"),
           "jane_news": doc_id("news", "https://news.test/jane"), "jane_site": doc_id("site", "http://127.0.0.2/jane")}
    in_v1 = {r["id"] for r in release_rows(v1.path)}
    # the copy is a near-duplicate of the victim: dedup kept one of them
    assert {ids["spam_a"], ids["spam_b"], ids["jane_news"], ids["jane_site"]} <= in_v1
    assert len({ids["url"], ids["copy"]} & in_v1) == 1
    control = doc_id("news", "https://notspam.test/c")
    assert control in in_v1

    # the requests, and in the same refresh a late near-copy of the removed text
    requests_file.write_text(
        "requests:\n"
        "  - {id: TD-URL, date: 2026-12-01, url: 'https://news.test/victim'}\n"
        "  - {id: TD-DOM, date: 2026-12-01, domain: spam.test}\n"
        "  - {id: TD-TXT, date: 2026-12-02, text: 'jane q. example', reason: a person asked}\n", encoding="utf-8")
    late = {"url": "https://news.test/late-copy", "title": "Late", "text": near_copy(rng, near_copy(rng, victim_text))}
    write_jsonl(wd.inbox("news") / "drop-2.jsonl", [late, {"url": "https://news.test/new", "title": "New",
                                                          "text": document(rng, "garden")}])
    ids["late"] = doc_id("news", late["url"])
    second = refresh(cfg, wd)
    gone = set(ids.values())

    # cost: extraction ran on the new batch only; the takedown rewrote the parts holding a match
    ex = second["extracted_documents"].counters
    assert ex["parts_computed"] == 1 and ex["parts_reused"] >= 1, ex
    assert ex["takedown"]["parts_rewritten"] >= 2 and ex["takedown"]["removed"] == len(gone), ex["takedown"]

    for layer in LAYERS:
        held = {r["id"] for rows in parts(wd, layer).values() for r in rows}
        assert not held & gone, (layer, held & gone)
        assert control in held or layer != "extracted_documents"
    # the raw layer keeps the rows (the crawl log accounts for them) without their content
    raw = {r["id"]: r for rows in parts(wd, "raw_pages").values() for r in rows}
    assert gone <= set(raw)
    assert all(raw[i]["html"] is None and raw[i]["text"] is None and raw[i]["title"] is None for i in gone)
    assert raw[control]["text"] is not None
    released = {r["id"] for r in release_rows(second["dataset_release"].path)}
    assert not released & gone and control in released
    assert second["dataset_release"].version != v1.version

    con = duckdb.connect()
    rejected = {r[0]: r[1:] for r in con.sql(
        f"SELECT id, stage, rule, value FROM {runner.rejected_sql(wd)} WHERE stage = 'takedown'").fetchall()}
    con.close()
    assert rejected[ids["url"]] == ("takedown", "takedown.url", "TD-URL")
    assert rejected[ids["spam_a"]] == rejected[ids["spam_b"]] == ("takedown", "takedown.domain", "TD-DOM")
    assert rejected[ids["jane_news"]] == rejected[ids["jane_site"]] == ("takedown", "takedown.text", "TD-TXT")
    assert rejected[ids["copy"]] == ("takedown", "takedown.near_duplicate", "TD-URL")
    assert rejected[ids["late"]] == ("takedown", "takedown.near_duplicate", "TD-URL")
    assert set(rejected) == gone

    # the accounting of every stage and the release's reconciliation with the crawl still hold
    from dataset_platform.checks import invariants
    from dataset_platform.stages.registry import STAGES

    for st in STAGES:
        assert invariants.accounting_outcome(wd, st).passed, st.name
    rec = invariants.release_reconciles_with_crawl(wd, second["dataset_release"].path)
    assert rec.passed, rec.metadata
    assert invariants.raw_reconciles_with_crawl_log(wd).passed

    card = (second["dataset_release"].path / "README.md").read_text(encoding="utf-8")
    assert "Takedown requests honoured" in card
    for rid, n in (("TD-URL", 3), ("TD-DOM", 2), ("TD-TXT", 2)):
        assert f"| {rid} | " in card and f" | {n} |" in card.split(f"| {rid} | ", 1)[1].split("\n", 1)[0]
    assert "jane q. example" not in card.lower()  # the card does not repeat a text pattern

    # the version published before the requests, revised through the command
    import json

    import yaml

    from dataset_platform import cli

    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    v1_rows = release_rows(v1.path)
    assert cli.main(["takedown", "check", "--config", str(sources), "--workdir", str(wd.root)]) == 0
    assert cli.main(["takedown", "revise", "--release", v1.version, "--release", second["dataset_release"].version,
                     "--config", str(sources), "--workdir", str(wd.root)]) == 0
    old = json.loads((v1.path / "manifest.json").read_text(encoding="utf-8"))
    new_version = old["superseded_by"]
    revised = v1.path.parent / new_version
    assert new_version not in (v1.version, second["dataset_release"].version) and revised.is_dir()
    assert not (v1.path / "data").exists(), "the superseded version's data files are deleted"
    assert f"**Superseded by {new_version}.**" in (v1.path / "README.md").read_text(encoding="utf-8")
    kept = release_rows(revised)
    assert not {r["id"] for r in kept} & gone
    assert sorted(r["id"] for r in kept) == sorted(r["id"] for r in v1_rows if r["id"] not in gone)
    man = json.loads((revised / "manifest.json").read_text(encoding="utf-8"))
    assert man["revision_of"] == v1.version and man["total_rows"] == len(kept)
    assert man["shards"]["written"] >= 1
    for rel, meta in man["files"].items():  # the manifest describes the files it lists
        assert meta["rows"] == len(release_rows_file(revised / rel))
    card_v1 = (revised / "README.md").read_text(encoding="utf-8")
    assert all(f"| {rid} | " in card_v1 for rid in ("TD-URL", "TD-DOM", "TD-TXT")) and "## Revision" in card_v1
    # the current release holds none of them: it is left as it is, still the newest
    assert json.loads((second["dataset_release"].path / "manifest.json").read_text()).get("superseded_by") is None
    assert (v1.path.parent / "LATEST").read_text().strip() == second["dataset_release"].version

    # a page crawled again later stays out, and a refresh with nothing new rewrites nothing
    land_crawl(wd, "site", "20270101T000002", [
        crawl_record("http://127.0.0.2/", "not_modified"),
        crawl_record("http://127.0.0.2/jane", html=page("Jane", jane_page + " Updated.")),
    ])
    third = refresh(cfg, wd)
    held = {r["id"] for rows in parts(wd, "decontaminated_documents").values() for r in rows}
    assert not held & gone
    assert third["extracted_documents"].counters["takedown"]["removed"] == 1
    fourth = refresh(cfg, wd)
    assert fourth["extracted_documents"].counters["takedown"] == {"parts_scanned": 0, "removed": 0}
    assert fourth["dataset_release"].version == third["dataset_release"].version

    # extraction recomputed (a setting changed): the emptied raw pages are rejected as takedowns again
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={
        "extract": cfg.pipeline.extract.model_copy(update={"min_chars": 2})})})
    fifth = refresh(cfg, wd)
    assert fifth["extracted_documents"].counters["parts_computed"] >= 3
    assert fifth["extracted_documents"].counters["takedown"]["rejects_relabelled"] == len(gone)
    con = duckdb.connect()
    again = {r[0]: r[1:] for r in con.sql(
        f"SELECT id, stage, rule, value FROM {runner.rejected_sql(wd)} WHERE id IN ({', '.join(map(repr, gone))})"
    ).fetchall()}
    con.close()
    assert again == rejected
    for st in STAGES:
        assert invariants.accounting_outcome(wd, st).passed, st.name
    assert not {r["id"] for r in release_rows(fifth["dataset_release"].path)} & gone


@pytest.mark.slow
def test_a_takedown_file_in_the_inbox_triggers_a_refresh_and_a_release(tmp_path):
    """The takedown sensor, evaluated against a real Dagster instance; the run it requests executed
    in process (the whole graph with its checks)."""
    import dagster as dg

    from dataset_platform.definitions import build_definitions
    from dataset_platform.release.publish import latest_release

    rng = random.Random(5)
    sources = tmp_path / "sources.yaml"
    sources.write_text("dataset: {name: td}\nsources:\n  - name: notes\n    kind: jsonl\n    paths: []\n", encoding="utf-8")
    wd = Workdir.at(tmp_path / "w").ensure()
    records = [{"url": f"https://notes.test/{i}", "title": f"Note {i}", "text": document(rng, "garden")}
               for i in range(12)]
    write_jsonl(wd.inbox("notes") / "a.jsonl", records)
    victim = doc_id("notes", "https://notes.test/3")
    defs = build_definitions(sources, wd.root)
    sensor = defs.resolve_sensor_def("takedown_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    job = defs.resolve_job_def("dataset_pipeline")
    with dg.instance_for_test() as instance:
        def tick():
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))

        assert job.execute_in_process(partition_key="notes", instance=instance).success
        first = latest_release(wd.releases, "td")
        assert victim in {r["id"] for r in release_rows(first)}
        assert tick().run_requests == []  # no takedown file waiting

        box = takedown.inbox(wd.root)
        box.mkdir(parents=True)
        (box / "bad.yaml").write_text("- {id: X, date: yesterday, url: 'https://notes.test/3'}\n", encoding="utf-8")
        bad = tick()
        assert bad.run_requests == [] and "bad.yaml" in bad.skip_message and "YYYY-MM-DD" in bad.skip_message
        (box / "bad.yaml").unlink()
        (box / "req-1.yaml").write_text("requests:\n  - {id: REQ-1, date: 2026-12-02, url: 'https://notes.test/3'}\n",
                                        encoding="utf-8")
        (req,) = tick().run_requests
        assert req.tags["dataset_platform/trigger"] == "inbox"
        assert [r.run_key for r in tick().run_requests] == [req.run_key]  # the same file: Dagster runs it once
        assert job.execute_in_process(tags=req.tags, instance=instance).success

        second = latest_release(wd.releases, "td")
        assert second != first
        assert victim not in {r["id"] for r in release_rows(second)}
        assert len(release_rows(second)) == len(release_rows(first)) - 1
        assert "| REQ-1 | 2026-12-02 | url | https://notes.test/3 | 1 |" in (second / "README.md").read_text()
        con = duckdb.connect()
        rej = con.sql(f"SELECT stage, rule, value FROM {runner.rejected_sql(wd)} WHERE id = '{victim}'").fetchall()
        con.close()
        assert rej == [("takedown", "takedown.url", "REQ-1")]


def test_every_target_kind_matches_what_it_names_and_nothing_else(tmp_path):
    f = tmp_path / "t.yaml"
    text = "Hello   World\nsecond line"
    f.write_text(
        "requests:\n"
        "  - {id: K1, date: 2026-12-01, url: 'https://a.test/x'}\n"
        "  - {id: K2, date: 2026-12-01, url_prefix: 'https://b.test/private/'}\n"
        "  - {id: K3, date: 2026-12-01, domain: c.test}\n"
        "  - {id: K4, date: 2026-12-01, doc_id: 00000000000000d4}\n"
        f"  - {{id: K5, date: 2026-12-01, content_hash: {hashlib.md5(b'hello world second line').hexdigest()}}}\n"
        "  - {id: K6, date: 2026-12-01, text: 'Needle.In'}\n"
        "  - {id: K7, date: 2026-12-01, regex: 'pat+ern [0-9]{3}'}\n", encoding="utf-8")
    reqs = takedown.Takedowns(tuple(takedown.parse_file(f)))
    rows = [  # (id, url, title, text, expected request)
        ("00000000000000a1", "https://a.test/x", "t", "x", "K1"),
        ("00000000000000a2", "https://a.test/x?y=1", "t", "x", None),
        ("00000000000000b1", "https://b.test/private/p", "t", "x", "K2"),
        ("00000000000000b2", "https://b.test/privateer", "t", "x", None),
        ("00000000000000c1", "https://c.test/", "t", "x", "K3"),
        ("00000000000000c2", "http://www.C.test:8080/p", "t", "x", "K3"),
        ("00000000000000c3", "https://notc.test/", "t", "x", None),
        ("00000000000000c4", "https://c.test.evil/", "t", "x", None),
        ("00000000000000d4", "https://d.test/", "t", "x", "K4"),
        ("00000000000000e5", "https://e.test/", "t", text, "K5"),
        ("00000000000000f6", "https://f.test/", "t", "a needle.in the haystack", "K6"),
        ("00000000000000f7", "https://f.test/2", "t", "needleXin", None),  # literal: '.' is a dot
        ("00000000000000f8", "https://f.test/3", "The Needle.In title", "x", "K6"),
        ("00000000000000a7", "https://g.test/", "t", "PATTTERN 123", "K7"),
        ("00000000000000a8", "https://g.test/2", "t", "pattern 12", None),
    ]
    con = duckdb.connect()
    con.sql("CREATE TABLE docs (id VARCHAR, url VARCHAR, title VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", [r[:4] for r in rows])
    got = {i: v for i, _rule, v in con.sql(takedown.match_sql(reqs, "docs", {"id", "url", "title", "text"})).fetchall()}
    con.close()
    assert got == {r[0]: r[4] for r in rows if r[4]}
