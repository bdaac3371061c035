"""The blocking `no_structured_pii` check on cleaned_documents, run for real through Dagster."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.config import demo_config_path
from dataset_platform.defs.quality import check_definition
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.storage.batched import BatchedLayer, PartInfo
from dataset_platform.workdir import Workdir


def _materialize(tmp_path, texts: list[str | None]):
    """A stand-in cleaned_documents asset writes the given texts (in several row groups), then
    the real check runs on that layer in the same run; a downstream asset shows the blocking."""
    wd = Workdir.at(tmp_path / "wd").ensure()

    @dg.asset(name="cleaned_documents")
    def cleaned_documents(platform: PlatformResource) -> None:
        ids = [f"doc{i:05d}" for i in range(len(texts))]
        titles = [("Reach us at +44 20 7946 0958" if t == "TITLE" else f"Title {i}") for i, t in enumerate(texts)]
        urls = [("https://shop.test/order?mail=kim%40example.com&id=7" if t == "URL" else f"https://news.test/{i}")
                for i, t in enumerate(texts)]
        with BatchedLayer(platform.wd.layer_dir("cleaned_documents"), "cleaned_documents").locked() as layer:
            staging = layer.stage("src/batch")  # one part, as the clean stage writes it
            dates = [("call +44 20 7946 0958" if t == "DATE" else f"2024-03-{1 + i % 28:02d}") for i, t in enumerate(texts)]
            pq.write_table(pa.table({"id": ids, "url": urls, "title": titles, "date": dates,
                                     "text": pa.array(texts, pa.string())}),
                           staging / "data.parquet", row_group_size=1000)
            layer.staged(PartInfo("src/batch", rows=len(texts)))
            layer.commit()

    @dg.asset(deps=[cleaned_documents])
    def downstream() -> None:
        return None

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [cleaned_documents, downstream, check_definition("cleaned_documents", "no_structured_pii")],
            resources={"platform": PlatformResource(config_path=str(demo_config_path()), workdir=str(wd.root))},
            instance=instance,
            raise_on_error=False,
        )
        evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_structured_pii"]
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert len(evaluations) == 1
    return evaluations[0], done


def _clean_texts(n: int) -> list[str | None]:
    return [None if i % 97 == 0 else f"Document {i}: redacted <EMAIL> and <PHONE>, dated 2024-03-{1 + i % 28:02d}, "
            f"version 2.{i % 7}.1, price $1,{i % 1000:03d}.50." for i in range(n)]


def test_a_clean_layer_passes(tmp_path):
    ev, done = _materialize(tmp_path, _clean_texts(2500))
    assert ev.passed
    md = ev.metadata
    assert md["rows_scanned"].value == 2500 and md["pii_found"].value == 0
    assert done == {"cleaned_documents", "downstream"}


def test_an_unredacted_email_fails_with_error_and_blocks_downstream(tmp_path):
    texts = _clean_texts(2500)
    texts[1234] = "Forgot to redact: kim.park@example.com wrote this."
    texts[2100] = "身份证号 11010519491231002X 没有打码。"
    ev, done = _materialize(tmp_path, texts)
    assert not ev.passed
    assert ev.severity == dg.AssetCheckSeverity.ERROR
    md = ev.metadata
    assert md["pii_found"].value == 2 and md["documents_with_pii"].value == 2
    assert md["pii_email"].value == 1 and md["pii_cn_id"].value == 1 and md["pii_phone"].value == 0
    assert md["example_ids"].value == "doc01234 (email), doc02100 (cn_id)"
    assert "downstream" not in done  # blocking: the ERROR stops the downstream asset


def test_a_phone_number_left_in_a_title_fails(tmp_path):
    texts = _clean_texts(300)
    texts[42] = "TITLE"
    ev, _ = _materialize(tmp_path, texts)
    assert not ev.passed and ev.metadata["pii_phone"].value == 1
    assert ev.metadata["example_ids"].value == "doc00042 (phone)"


def test_an_email_in_a_url_or_hidden_by_full_width_forms_fails(tmp_path):
    """Issue 19, probe 4: the check scanned neither URLs nor e-mails written with a full-width @."""
    texts = _clean_texts(300)
    texts[7] = "URL"
    texts[8] = "Mail ｋｉｍ＠ｅｘａｍｐｌｅ．ｃｏｍ or kim\u200b@example.com today."
    ev, _ = _materialize(tmp_path, texts)
    assert not ev.passed and ev.metadata["pii_email"].value == 3
    assert ev.metadata["example_ids"].value == "doc00007 (email), doc00008 (email)"


def test_pii_in_any_other_string_column_fails(tmp_path):
    """Issue 19: every string column published with the text is scanned, not only text, title and URL."""
    texts = _clean_texts(300)
    texts[11] = "DATE"
    ev, _ = _materialize(tmp_path, texts)
    assert not ev.passed and ev.metadata["pii_phone"].value == 1
    assert ev.metadata["example_ids"].value == "doc00011 (phone)"


def test_an_empty_layer_passes(tmp_path):
    ev, _ = _materialize(tmp_path, [])
    assert ev.passed and ev.metadata["rows_scanned"].value == 0


def test_only_parts_not_scanned_clean_are_scanned_and_a_failure_keeps_failing(tmp_path):
    """Refreshes: a part scanned clean is not scanned again; a part with PII fails the check and
    is scanned again by every later check until it is fixed (the ERROR keeps blocking)."""
    wd = Workdir.at(tmp_path / "wd").ensure()
    plan: list[tuple[str, list[str]]] = []

    @dg.asset(name="cleaned_documents")
    def cleaned_documents(platform: PlatformResource) -> None:
        with BatchedLayer(platform.wd.layer_dir("cleaned_documents"), "cleaned_documents").locked() as layer:
            for key, texts in plan:
                staging = layer.stage(key)
                ids = [f"{key.split('/')[1]}{i:05d}" for i in range(len(texts))]
                pq.write_table(pa.table({"id": ids, "title": [f"Title {i}" for i in range(len(texts))],
                                         "text": pa.array(texts, pa.string())}), staging / "data.parquet")
                layer.staged(PartInfo(key, rows=len(texts)))
            layer.commit()

    @dg.asset(deps=[cleaned_documents])
    def downstream() -> None:
        return None

    def run(*parts):
        plan[:] = list(parts)
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [cleaned_documents, downstream, check_definition("cleaned_documents", "no_structured_pii")],
                instance=instance, raise_on_error=False,
                resources={"platform": PlatformResource(config_path=str(demo_config_path()), workdir=str(wd.root))})
            (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_structured_pii"]
            done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        return ev, done

    ev, done = run(("src/a", _clean_texts(300)))
    assert ev.passed and ev.metadata["rows_scanned"].value == 300 and done == {"cleaned_documents", "downstream"}
    leaky = _clean_texts(200)
    leaky[50] = "Write to kim.park@example.com for details."
    ev, done = run(("src/b", leaky))
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ev.metadata["rows_scanned"].value == 200 and ev.metadata["layer_rows"].value == 500
    assert done == {"cleaned_documents"}
    ev, done = run(("src/c", _clean_texts(100)))  # b was not scanned clean: scanned again, still failing
    assert not ev.passed and ev.metadata["rows_scanned"].value == 300 and ev.metadata["parts_scanned"].value == 2
    assert done == {"cleaned_documents"}
    ev, done = run(("src/b", _clean_texts(200)))  # fixed
    assert ev.passed and ev.metadata["rows_scanned"].value == 300 and done == {"cleaned_documents", "downstream"}
    ev, _ = run()
    assert ev.passed and ev.metadata["rows_scanned"].value == 0 and ev.metadata["layer_rows"].value == 600


def test_no_structured_pii_in_any_column_of_any_released_file(tmp_path):
    """Issue 19, done-when: a corpus that plants e-mails, phones, cards, IBANs and IPs in URLs, titles and
    text, also in full-width and zero-width forms, through the whole graph (library code, real DuckDB);
    then every string column of every released Parquet file is scanned."""
    import json
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from graphkit import config, document, refresh

    from dataset_platform.stages.clean.pii import find_pii_batch, redact_urls

    planted = ["Write to kim.park@example.com today.", "Call +44 20 7946 0958 after six.",
               "Card 4111 1111 1111 1111 was used.", "IBAN GB82 WEST 1234 5698 7654 32 on file.",
               "Server 192.168.10.24 answered.", "Mail ｋｉｍ＠ｅｘａｍｐｌｅ．ｃｏｍ or kim\u200b@example.com now."]
    rng = random.Random(5)
    rows = []
    for i in range(60):
        text = document(rng, ("garden", "harbour", "school")[i % 3]).replace(".", ". " + planted[i % 6], 1)
        url = (f"https://shop.test/order?mail=kim{i}%40example.com&id={i}" if i % 4 == 0
               else f"https://news.test/u/{i}/+44-20-7946-0958" if i % 4 == 1 else f"https://news.test/{i}")
        title = f"Story {i}" + (" - call +44 20 7946 0958" if i % 5 == 0 else "")
        rows.append({"url": url, "title": title, "text": text})
    cfg = config(tmp_path, sources=("news",))
    wd = Workdir.at(tmp_path / "wd").ensure()
    wd.inbox("news").mkdir(parents=True, exist_ok=True)
    (wd.inbox("news") / "dump.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    refresh(cfg, wd)
    files = sorted((wd.root / "releases").glob("*/*/data/*.parquet"))
    assert files and sum(pq.read_metadata(f).num_rows for f in files) >= 30
    found = []
    for f in files:
        t = pq.read_table(f)
        for name in t.column_names:
            col = t.column(name)
            if not pa.types.is_string(col.type):
                continue
            spans = [s for _, s in find_pii_batch(col)] + (list(redact_urls(col)[1]) if name == "url" else [])
            found += [(f.name, name, s) for s in spans if s]
    assert not found, found[:5]
    released = pa.concat_tables([pq.read_table(f, columns=["url", "title", "text"]) for f in files]).to_pylist()
    # the planted values were redacted, not dropped with their documents
    assert sum("<EMAIL>" in r["text"] for r in released) >= 10 and any("<PHONE>" in r["text"] for r in released)
    assert any("<CARD>" in r["text"] for r in released) and any("<IBAN>" in r["text"] for r in released)
    assert any("<PHONE>" in (r["title"] or "") for r in released)
    assert sum("kim" not in r["url"] and "shop.test" in r["url"] for r in released) >= 3  # URL PII replaced


def test_the_parts_scanned_in_parallel_give_the_same_verdict_as_one_after_another(tmp_path, monkeypatch):
    """Several parts are scanned by a worker process each (``scan_runner``): the counts, the
    example ids (in part order) and the verdict are those of one scan after another."""
    from dataset_platform.checks import invariants as inv

    files = []
    for k, texts in enumerate([["clean text", "mail kim@example.com now"] * 30,
                               ["nothing here"] * 50,
                               ["call +44 20 7946 0958 today", "an IP 203.0.113.9 in logs", "fine"] * 20]):
        path = tmp_path / f"part{k}.parquet"
        pq.write_table(pa.table({"id": [f"p{k}-{i:03d}" for i in range(len(texts))], "url": [f"https://n.test/{k}/{i}" for i in range(len(texts))],
                                 "title": ["t"] * len(texts), "text": texts}), path)
        files.append(path)
    from dataset_platform.stages.base import available_cpus

    if available_cpus() < 2:
        pytest.skip("one CPU: the scan starts no worker processes")
    serial = inv.no_structured_pii(files)
    monkeypatch.setattr(inv, "PARALLEL_SCAN_ROWS", 0)
    with inv.scan_runner(None, files) as (run, where):
        parallel = inv.no_structured_pii(files, run=run)
    assert where == f"local, {min(available_cpus(), 3)} processes" and where.workers == min(available_cpus(), 3)
    assert not serial.passed and serial.metadata == parallel.metadata
    assert serial.metadata["documents_with_pii"] == 30 + 40 and serial.metadata["pii_email"] == 30
    assert serial.metadata["example_ids"].startswith("p0-001 (email)")
