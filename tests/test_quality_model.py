"""The quality model stage (stages/quality_model.py): off without training data, trained from a
gold file, from reference sources (the DCLM recipe) and from human labels coming back from Label
Studio, retrained only when its training data changes, drop and annotate modes, the review export
near the threshold, the stage CLI, and its separation of good and low-quality text on the shared
corpus (ROC AUC >= 0.95, bench/quality_eval.py's items)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import shared_corpus
from graphkit import FILLER, STOP, crawl_record, document, land_crawl, page, refresh, write_jsonl

from dataset_platform import runner
from dataset_platform.config import parse_config
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.stages import quality_model as qm
from dataset_platform.stages.registry import BY_NAME
from dataset_platform.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]
SHOP = "buy cheap discount offer price deal sale shipping order coupon bonus casino win".split()


def spam(rng: random.Random) -> str:
    """Shop-speak that passes the quality rules (sentences, stop words, no repetition beyond them)."""
    def sentence():
        words = [rng.choice(STOP) if rng.random() < 0.35 else rng.choice(SHOP) if rng.random() < 0.7
                 else rng.choice(FILLER) for _ in range(rng.randint(9, 15))]
        return " ".join(words).capitalize() + "!"
    return "\n".join(" ".join(sentence() for _ in range(rng.randint(2, 3))) for _ in range(3))


def _config(root: Path, **quality) -> object:
    data = {"dataset": {"name": "quality-test"},
            "sources": [{"name": "news", "kind": "jsonl", "paths": []},
                        {"name": "site", "kind": "crawl", "start_urls": ["http://127.0.0.2/"],
                         "allowed_domains": ["127.0.0.2"]}],
            "pipeline": {"part_rows": 100, "clean": {"rules": {"gopher_quality.word_count": {"min": 20}}},
                         "quality_model": quality}}
    return parse_config(data, origin=str(root / "sources.yaml"))


def _land(wd: Workdir, rng: random.Random, n_good=12, n_bad=12, stamp="20261101T100000") -> dict[str, str]:
    """A crawl batch of good and spam pages; returns url -> kind."""
    kinds, recs = {}, []
    for i in range(n_good + n_bad):
        kind = "good" if i < n_good else "bad"
        url = f"http://127.0.0.2/{kind}/{stamp}/{i}"
        text = document(rng, rng.choice(["garden", "harbour", "school"])) if kind == "good" else spam(rng)
        recs.append(crawl_record(url, html=page(f"Page {i}", text)))
        kinds[url] = kind
    land_crawl(wd, "site", stamp, recs)
    return kinds


def _gold(path: Path, rng: random.Random, n=20) -> Path:
    rows = [{"text": document(rng, rng.choice(["garden", "harbour", "school"])), "quality": "good"} for _ in range(n)]
    rows += [{"text": spam(rng), "quality": 0} for _ in range(n)]
    return write_jsonl(path, rows)


def _run(cfg, wd: Workdir, *, raw=True):
    if raw:
        landed = [s for s in ("site", "news") if any(wd.raw_batches(s).glob("*")) or
                  (wd.inbox(s).is_dir() and any(wd.inbox(s).iterdir()))]
        materialise_raw(cfg, wd, sources=landed, crawl=False)
        for name in ("extract", "clean"):
            runner.materialise(BY_NAME[name], cfg, wd)
    return runner.materialise(BY_NAME[qm.NAME], cfg, wd)


def _rows(wd: Workdir, file="data.parquet") -> list[dict]:
    files = wd.layer_files(qm.OUTPUT, file)
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_features_and_training_basics():
    f = qm.features("Home\nNews\nSport! Buy NOW")
    assert f.startswith("home _nl_ news _nl_ sport ! buy now ")
    assert "_lines2" in f  # three lines: log2(4) = 2
    rng = random.Random(1)
    texts = [document(rng, "garden") for _ in range(10)] + [spam(rng) for _ in range(10)]
    assert "needs >= 2 good and >= 2 bad" in qm.train(texts[:11], [1] * 10 + [0])
    model = qm.train(texts, [1] * 10 + [0] * 10, version="v")
    held = [document(rng, "school"), spam(rng)]
    good, bad = model.score(held)
    assert 0 <= bad < 0.5 < good <= 1
    again = qm.train(texts, [1] * 10 + [0] * 10, version="v").score(held)
    assert np.array_equal(again, model.score(held))  # deterministic


def test_gold_file_errors_say_where_and_what(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"text": "fine", "quality": "good"}\n{"text": "x", "quality": "meh"}\n')
    with pytest.raises(qm.QualityGoldError, match=r"g.jsonl:2.*good / bad.*'meh'"):
        qm.read_gold(p)
    p.write_text('{"quality": "bad"}\n')
    with pytest.raises(qm.QualityGoldError, match=r"g.jsonl:1.*'text'"):
        qm.read_gold(p)
    p.write_text('{"id": "a", "text": "t", "quality": 1}\n{"id": "a", "text": "u", "quality": "false"}\n')
    with pytest.raises(qm.QualityGoldError, match="repeats"):
        qm.read_gold(p)


def test_off_without_training_data_passes_every_document_unscored(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    cfg = _config(tmp_path)
    _land(wd, random.Random(2))
    res = _run(cfg, wd)
    rows = _rows(wd)
    cleaned = [r for f in wd.layer_files("cleaned_documents") for r in pq.read_table(f).to_pylist()]
    assert len(rows) == len(cleaned) == res.rows > 0
    assert all(r["quality_score"] is None for r in rows)
    assert pq.read_schema(wd.layer_files(qm.OUTPUT)[0]).names[-1] == "quality_score"
    assert res.stage.rejected_rows == 0 and res.counters["prepared"]["model_version"] is None
    assert not qm.models_dir(wd).exists() or not any(qm.models_dir(wd).iterdir())
    again = _run(cfg, wd, raw=False)
    assert again.counters["parts_computed"] == 0 and again.counters["parts_reused"] >= 1


def test_gold_model_drops_below_threshold_and_retrains_only_when_its_data_changes(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    gold = _gold(tmp_path / "gold.jsonl", random.Random(3))
    cfg = _config(tmp_path, gold=str(gold), threshold=0.5)
    kinds = _land(wd, random.Random(4))
    logs: list[str] = []
    materialise_raw(cfg, wd, sources=["site"], crawl=False)
    for name in ("extract", "clean"):
        runner.materialise(BY_NAME[name], cfg, wd)
    res = runner.materialise(BY_NAME[qm.NAME], cfg, wd, log=logs.append)
    version = res.counters["prepared"]["model_version"]
    assert version and (qm.models_dir(wd) / f"{version}.pkl").is_file()
    assert any(f"model {version} trained on 40 documents" in m for m in logs)
    kept = {r["url"]: r for r in _rows(wd)}
    rejected = _rows(wd, "rejected.parquet")
    assert set(kept) == {u for u, k in kinds.items() if k == "good"}
    assert all(r["quality_score"] >= 0.5 for r in kept.values())
    assert {r["url"] for r in rejected} == {u for u, k in kinds.items() if k == "bad"}
    assert {(r["stage"], r["rule"]) for r in rejected} == {(qm.NAME, qm.RULE)}
    assert all(0 <= float(r["value"]) < 0.5 for r in rejected)
    # the rejects reach rejected_documents, and the stage's accounting balances
    reasons = runner.materialise_rejected(cfg, wd).counters["reasons"]
    assert [qm.NAME, qm.RULE, len(rejected)] in reasons
    # the review export: documents nearest the threshold first, pre-filled with the model's verdict
    tasks = json.loads((qm.review_export_dir(wd) / "tasks.json").read_text())
    dist = [abs(t["data"]["quality_score"] - 0.5) for t in tasks]
    assert len(tasks) == len(kept) + len(rejected) and dist == sorted(dist)
    assert {t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks} == {"good", "bad"}
    assert '<Choices name="quality"' in (qm.review_export_dir(wd) / "labeling_config.xml").read_text()
    # same data and settings: the stored model is reused, nothing is recomputed
    logs.clear()
    again = runner.materialise(BY_NAME[qm.NAME], cfg, wd, log=logs.append)
    assert again.counters["prepared"]["model_version"] == version
    assert any(f"model {version} reused" in m for m in logs) and again.counters["parts_computed"] == 0
    # a new threshold: the same model, every part rescored
    cfg2 = _config(tmp_path, gold=str(gold), threshold=0.01, mode="annotate")
    third = runner.materialise(BY_NAME[qm.NAME], cfg2, wd)
    assert third.counters["prepared"]["model_version"] == version and third.counters["parts_computed"] >= 1
    assert len(_rows(wd)) == len(kinds) and not _rows(wd, "rejected.parquet")
    marked = {r["url"] for r in _rows(wd) if qm.RULE in r["annotations"]}
    assert marked == {r["url"] for r in _rows(wd) if r["quality_score"] < 0.01}
    # changed gold data: a new model version
    with open(gold, "a") as f:
        f.write(json.dumps({"text": spam(random.Random(9)), "quality": "bad"}) + "\n")
    fourth = runner.materialise(BY_NAME[qm.NAME], cfg, wd)
    assert fourth.counters["prepared"]["model_version"] not in (None, version)
    # a pinned model: the stored one, whatever the training data says
    logs.clear()
    pinned = runner.materialise(BY_NAME[qm.NAME], _config(tmp_path, gold=str(gold), use_model=version), wd,
                                log=logs.append)
    assert pinned.counters["prepared"]["model_version"] == version and pinned.counters["prepared"]["pinned"]
    assert any(f"pinned model {version}" in m for m in logs)
    assert {r["url"] for r in _rows(wd)} == {u for u, k in kinds.items() if k == "good"}
    with pytest.raises(ValueError, match=r"use_model: no stored model 0123456789abcdef in .*stored: .*" + version):
        runner.materialise(BY_NAME[qm.NAME], _config(tmp_path, use_model="0123456789abcdef"), wd)


def test_reference_sources_train_against_crawl_and_rule_rejected_documents(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    rng = random.Random(5)
    refs = [{"url": f"https://ref.example/{i}", "title": f"Ref {i}", "text": document(rng, "garden")} for i in range(8)]
    write_jsonl(wd.inbox("news") / "ref.jsonl", refs)
    short = [crawl_record(f"http://127.0.0.2/short/{i}", html=page("S", "Too short to pass.")) for i in range(3)]
    land_crawl(wd, "site", "20261101T100000", short + [crawl_record(f"http://127.0.0.2/bad/{i}", html=page(
        f"Page {i}", spam(rng))) for i in range(10)])
    cfg = _config(tmp_path, reference_sources=["news"], max_per_kind=5)
    res = _run(cfg, wd)
    counts = res.counters["prepared"]["train_rows"]
    assert counts == {"reference": 5, "crawl": 5, "rule_rejected": 3}
    version = res.counters["prepared"]["model_version"]
    same = runner.materialise(BY_NAME[qm.NAME], cfg, wd)
    assert same.counters["prepared"]["model_version"] == version and same.counters["parts_computed"] == 0
    bigger = runner.materialise(BY_NAME[qm.NAME], _config(tmp_path, reference_sources=["news"], max_per_kind=6), wd)
    assert bigger.counters["prepared"]["train_rows"] == {"reference": 6, "crawl": 6, "rule_rejected": 3}
    assert bigger.counters["prepared"]["model_version"] != version
    res = runner.materialise(BY_NAME[qm.NAME], cfg, wd)
    by_source = {}
    for r in _rows(wd):
        by_source.setdefault(r["source"], []).append(r["quality_score"])
    assert min(by_source["news"]) >= 0.5  # reference documents are what good looks like
    assert all(s < 0.5 for s in [float(r["value"]) for r in _rows(wd, "rejected.parquet")])
    bad = _config(tmp_path, reference_sources=["nosuch"])
    with pytest.raises(ValueError, match=r"\['nosuch'\] are not sources of this config"):
        runner.materialise(BY_NAME[qm.NAME], bad, wd)


def _export(path: Path, labels: dict[str, str]) -> Path:
    """A Label Studio JSON export (the format its Export > JSON writes) of one annotator's choices."""
    tasks = [{"id": i + 1, "data": {"doc_id": doc_id},
              "annotations": [{"id": 100 + i, "completed_by": 1, "was_cancelled": False,
                               "updated_at": "2026-11-02T10:00:00Z", "created_at": "2026-11-02T10:00:00Z",
                               "result": [{"from_name": "quality", "to_name": "text", "type": "choices",
                                           "value": {"choices": [value]}}]}]}
             for i, (doc_id, value) in enumerate(sorted(labels.items()))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def test_an_annotation_round_changes_the_model(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    gold = _gold(tmp_path / "gold.jsonl", random.Random(6), n=4)
    cfg = _config(tmp_path, gold=str(gold), mode="annotate")
    _land(wd, random.Random(7), n_good=10, n_bad=10)
    first = _run(cfg, wd)
    v1 = first.counters["prepared"]["model_version"]
    before = {r["id"]: r for r in _rows(wd)}
    tasks = json.loads((qm.review_export_dir(wd) / "tasks.json").read_text())
    # people label the review queue: spam is bad, prose is good (the truth of each page's url)
    truth = {t["data"]["doc_id"]: ("bad" if "/bad/" in before[t["data"]["doc_id"]]["url"] else "good")
             for t in tasks[:12]}
    assert set(truth.values()) == {"good", "bad"}
    _export(wd.annotations_inbox / "round-1.json", truth)
    second = runner.materialise(BY_NAME[qm.NAME], cfg, wd)
    v2 = second.counters["prepared"]["model_version"]
    assert v2 != v1 and second.counters["prepared"]["train_rows"] == {"gold": 8, "human": 12}
    after = {r["id"]: r for r in _rows(wd)}
    moved = [after[i]["quality_score"] - before[i]["quality_score"] for i in truth]
    assert any(abs(m) > 1e-3 for m in moved)
    # each labelled document moved towards its label
    assert all((m > 0) == (truth[i] == "good") for i, m in zip(truth, moved) if abs(m) > 1e-3)
    # and is not queued for review again
    queued = {t["data"]["doc_id"] for t in json.loads((qm.review_export_dir(wd) / "tasks.json").read_text())}
    assert not queued & set(truth)


def test_stage_cli_scores_a_file_with_a_gold_file(tmp_path):
    rng = random.Random(8)
    gold = _gold(tmp_path / "gold.jsonl", rng)
    docs = [{"id": "g1", "text": document(rng, "school")}, {"id": "s1", "text": spam(rng)}]
    inp = write_jsonl(tmp_path / "docs.jsonl", docs)
    out, rej = tmp_path / "out.parquet", tmp_path / "rej.parquet"
    proc = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "stage", qm.NAME, "--input", str(inp),
                           "--output", str(out), "--rejected", str(rej), "--gold", str(gold)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    kept = pq.read_table(out).to_pylist()
    assert [r["id"] for r in kept] == ["g1"] and kept[0]["quality_score"] >= 0.5
    assert set(kept[0]) == {"id", "text", "quality_score"}
    assert [(r["id"], r["rule"]) for r in pq.read_table(rej).to_pylist()] == [("s1", qm.RULE)]
    untrained = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "stage", qm.NAME, "--input", str(inp),
                                "--output", str(out)], capture_output=True, text=True, cwd=REPO)
    assert untrained.returncode != 0 and "pass --gold FILE" in untrained.stderr


def test_held_out_separation_on_the_shared_corpus():
    corpus = shared_corpus("neardup/bbc_news").parents[1]
    shared_corpus("webextract")
    sys.path.insert(0, str(REPO / "bench"))
    import quality_eval

    items = quality_eval.build_items(corpus, seed=0)
    train = [i for i in items if not i["held_out"]]
    test = [i for i in items if i["held_out"]]
    assert {i["group"] for i in train}.isdisjoint({i["group"] for i in test})
    model = qm.train([i["text"] for i in train], [i["label"] for i in train])
    res = quality_eval.evaluate(items, model.score([i["text"] for i in test]))
    assert res["held_out"] > 200 and res["auc"] >= 0.95, res


def test_the_release_card_names_the_model_version_and_threshold(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    gold = _gold(tmp_path / "gold.jsonl", random.Random(10))
    cfg = _config(tmp_path, gold=str(gold), threshold=0.4)
    _land(wd, random.Random(11), n_good=20, n_bad=6)
    out = refresh(cfg, wd)
    version = out[qm.OUTPUT].counters["prepared"]["model_version"]
    card = (out["dataset_release"].path / "README.md").read_text()
    assert f"quality model `{version}`" in card and "below the threshold 0.4 a document was dropped" in card
    assert "Training documents: gold 40." in card
    assert "| quality_model | quality_model | 6 |" in card


def test_score_drift_rule():
    from dataset_platform.checks.drift import score_distribution_shift

    base = [10, 10, 20, 40, 60, 100, 150, 200, 250, 160]
    assert score_distribution_shift(None, base, 0.15).ok
    same_shape = score_distribution_shift(base, [2 * b for b in base], 0.15)
    assert same_shape.comparable and same_shape.ok and same_shape.distance == pytest.approx(0.0)
    # a quarter of the documents moved from the top bins to the bottom ones
    moved = [260, 10, 20, 40, 60, 100, 150, 200, 100, 60]
    shift = score_distribution_shift(base, moved, 0.15)
    assert not shift.ok and shift.distance == pytest.approx(0.25) and "beyond the allowed 15%" in shift.reason
    assert not score_distribution_shift(base, [5, 5] + [0] * 8, 0.15).comparable  # too few documents


def test_score_histogram_in_metadata_and_its_drift_check_over_dagster_materialisations(tmp_path):
    from dataset_platform.config import demo_config_path
    from dataset_platform.defs.metadata import STAGE_METADATA, round_floats
    from dataset_platform.defs.quality import check_definition
    from dataset_platform.defs.resources import PlatformResource

    wd = Workdir.at(tmp_path / "wd").ensure()
    gold = _gold(tmp_path / "gold.jsonl", random.Random(12))
    cfg = _config(tmp_path, gold=str(gold))
    _land(wd, random.Random(13), n_good=15, n_bad=9)
    res = _run(cfg, wd)
    md = STAGE_METADATA[qm.NAME](res, cfg)[qm.OUTPUT]
    bins = md["quality_score_bins"].value
    assert sum(bins) == 24 and len(bins) == qm.SCORE_BINS and sum(bins[5:]) == res.rows == 15
    assert md["model_version"] == res.counters["prepared"]["model_version"] and md["quality_threshold"] == 0.5
    assert "| 0.9-1.0 |" in md["quality_score_histogram"].value and md["below_threshold_share"] == 9 / 24

    def run(instance, metadata):
        @dg.asset(name=qm.OUTPUT)
        def scored() -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata=round_floats(dict(metadata)))

        result = dg.materialize([scored, check_definition(qm.OUTPUT, "score_distribution_stable")],
                                instance=instance,
                                resources={"platform": PlatformResource(config_path=str(demo_config_path()),
                                                                        workdir=str(tmp_path / "w"))})
        (ev,) = result.get_asset_check_evaluations()
        return ev

    base = [10, 10, 20, 40, 60, 100, 150, 200, 250, 160]
    with dg.instance_for_test() as instance:
        first = run(instance, md)
        assert first.passed and "first materialisation" in first.description
        small = run(instance, {"quality_score_bins": dg.MetadataValue.json(base)})
        assert small.passed and "not compared" in small.description  # the real run scored only 24
        steady = run(instance, {"quality_score_bins": dg.MetadataValue.json([b + 1 for b in base])})
        assert steady.passed and steady.metadata["distance"].value < 0.15
        jump = run(instance, {"quality_score_bins": dg.MetadataValue.json([260, 10, 20, 40, 60, 100, 150, 200, 100, 60])})
        assert not jump.passed and jump.severity == dg.AssetCheckSeverity.WARN
        moved = 0.5 * sum(abs(a / 1000 - (b + 1) / 1010)
                          for a, b in zip([260, 10, 20, 40, 60, 100, 150, 200, 100, 60], base))
        assert jump.metadata["distance"].value == pytest.approx(moved, rel=1e-3) and moved > 0.24


def test_two_builds_write_the_same_bytes(tmp_path):
    gold = _gold(tmp_path / "gold.jsonl", random.Random(14))
    out = []
    for name in ("a", "b"):
        wd = Workdir.at(tmp_path / name).ensure()
        _land(wd, random.Random(15))
        res = _run(_config(tmp_path, gold=str(gold)), wd)
        version = res.counters["prepared"]["model_version"]
        files = sorted(wd.layer_dir(qm.OUTPUT).glob("*/*/*.parquet")) + [qm.models_dir(wd) / f"{version}.pkl"]
        out.append({f.relative_to(wd.root).as_posix(): f.read_bytes() for f in files})
    assert len(out[0]) >= 3 and out[0] == out[1]
