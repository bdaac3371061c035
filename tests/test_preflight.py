"""Pre-flight (dataset_platform/preflight.py) through the command itself: each mistake a newcomer
makes in sources.yaml or in the files it points to is reported (file, field, what is wrong, what
to do) with exit code 2 within 2 seconds, before the work folder is touched (no crawl, no raw
folder, no crawl_log)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from dataset_platform import cli
from dataset_platform.config import load_config
from dataset_platform.preflight import problems

GOOD_DUMP = {"text": "A paragraph of plain text about the harbour and its ferries.", "url": "https://x.test/1"}


def _setup(tmp_path: Path, yaml_text: str, files: dict[str, str] | None = None) -> Path:
    for rel, text in (files or {}).items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml_text, encoding="utf-8")
    return cfg


def _run(capsys, *argv: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc = cli.main(list(argv))
    took = time.monotonic() - t0
    return rc, capsys.readouterr().err, took


def _jsonl(*objs: dict) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


DUMP = "sources:\n  - name: notes\n    kind: jsonl\n    paths: [{paths}]\n"
LABELS = ("pipeline:\n  labels:\n    gold: {gold}\n"
          "    sets: [{{name: topic, values: [garden, harbour], default: garden}}]\n")


CASES = {
    "glob matching no file": (
        DUMP.format(paths="dumps/*.jsonl.gz"), {"dumps/readme.txt": "not a dump"},
        [r"sources\.yaml: sources\[0\]\.paths\[0\]: 'dumps/\*\.jsonl\.gz' matches no file \(looked in .*dumps\); "
         r"put the files there or fix the pattern, or remove it and drop the files into <workdir>/inbox/notes/"]),
    "missing dump file": (
        DUMP.format(paths="exports/forum.jsonl"), {},
        [r"sources\[0\]\.paths\[0\]: 'exports/forum\.jsonl': file not found \(.*exports/forum\.jsonl\); fix the path"]),
    "folder given as a dump file": (
        DUMP.format(paths="dumps"), {"dumps/a.jsonl": _jsonl(GOOD_DUMP)},
        [r"sources\[0\]\.paths\[0\]: 'dumps' is a folder; give the files in it, e.g. 'dumps/\*\.jsonl'"]),
    "typo'd gold path": (
        DUMP.format(paths="a.jsonl") + LABELS.format(gold="glod.jsonl"), {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"pipeline\.labels\.gold: 'glod\.jsonl': file not found \(.*glod\.jsonl\); create it \(JSONL: id, text and "
         r"one field per label set\) or fix the path"]),
    "gold file without text": (
        DUMP.format(paths="a.jsonl") + LABELS.format(gold="gold.jsonl"),
        {"a.jsonl": _jsonl(GOOD_DUMP), "gold.jsonl": _jsonl({"id": "g1", "text": "fine", "topic": "garden"},
                                                            {"id": "g2", "body": "no text field", "topic": "harbour"})},
        [r"pipeline\.labels\.gold: .*gold\.jsonl:2: 'text' must be a non-empty string; fix the file"]),
    "gold value not allowed": (
        DUMP.format(paths="a.jsonl") + LABELS.format(gold="gold.jsonl"),
        {"a.jsonl": _jsonl(GOOD_DUMP), "gold.jsonl": _jsonl({"id": "g1", "text": "fine", "topic": "sports"})},
        [r"pipeline\.labels\.gold: .*gold\.jsonl:1: topic = 'sports' is not one of the allowed values "
         r"\['garden', 'harbour'\]"]),
    "missing benchmark file": (
        DUMP.format(paths="a.jsonl") + "pipeline:\n  decontamination:\n    benchmarks: [{path: evals/mmlu.jsonl}]\n",
        {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"pipeline\.decontamination\.benchmarks\[0\]\.path: 'evals/mmlu\.jsonl': file not found"]),
    "benchmark field absent": (
        DUMP.format(paths="a.jsonl")
        + "pipeline:\n  decontamination:\n    benchmarks: [{path: mmlu.jsonl, fields: [question, choices]}]\n",
        {"a.jsonl": _jsonl(GOOD_DUMP), "mmlu.jsonl": _jsonl({"id": 1, "question": "What is the tide?"})},
        [r"pipeline\.decontamination\.benchmarks\[0\]\.fields: benchmark 'mmlu': no item of .*mmlu\.jsonl has the "
         r"field\(s\) 'choices'; fix the file or the `fields`"]),
    "unknown language code": (
        DUMP.format(paths="a.jsonl") + "pipeline:\n  clean: {languages: [english]}\n", {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"sources\.yaml: pipeline\.clean\.languages: 'english' is not a language code: did you mean 'en'\?"]),
    "unknown language of an override": (
        DUMP.format(paths="a.jsonl") + "pipeline:\n  clean:\n    languages_overrides: {german: {c4: {enabled: false}}}\n",
        {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"pipeline\.clean\.languages_overrides: german: 'german' is not a language code: did you mean 'de'\?"]),
    "source names that meet in Dagster": (
        "sources:\n  - {name: my-blog, kind: jsonl, paths: [a.jsonl]}\n  - {name: my_blog, kind: jsonl, paths: [a.jsonl]}\n",
        {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"sources: source names 'my-blog' \(sources\[0\]\) and 'my_blog' \(sources\[1\]\) both become 'my_blog' in "
         r"Dagster's names .*rename one of them"]),
    "blocklist folder missing": (
        DUMP.format(paths="a.jsonl") + "pipeline:\n  extract:\n    blocklist: {lists: [blacklists/adult]}\n",
        {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"pipeline\.extract\.blocklist\.lists: .*blacklists/adult"]),
    "synonyms file missing": (
        DUMP.format(paths="a.jsonl") + "pipeline:\n  augmentation: {enabled: true, synonyms: syn.json}\n",
        {"a.jsonl": _jsonl(GOOD_DUMP)},
        [r"pipeline\.augmentation\.synonyms: .*syn\.json is not a readable JSON object of word -> \[words\]"]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["run", "ui"])
def test_each_mistake_is_reported_in_under_2s_before_any_work(tmp_path, capsys, case, command):
    yaml_text, files, expected = CASES[case]
    cfg = _setup(tmp_path, yaml_text, files)
    wd = tmp_path / "wd"
    argv = [command, "--config", str(cfg), "--workdir", str(wd)]
    if command == "ui":
        argv += ["--port", "1"]  # (never reached: nothing may start)
    rc, err, took = _run(capsys, *argv)
    assert rc == cli.EXIT_USAGE, err
    assert took < 2.0, f"{case}: reported after {took:.2f}s"
    assert err.startswith("error: ")
    for pattern in expected:
        assert any(re.search(pattern, line) for line in err.splitlines()), (pattern, err)
    assert not wd.exists(), "the work folder was touched: work started before the mistake was reported"


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    cfg = _setup(tmp_path,
                 "sources:\n  - name: cc-sample\n    kind: warc\n    paths: [dumps/*.warc.gz]\n"
                 "  - name: forum\n    kind: jsonl\n    paths: [exports/forum-*.jsonl.gz]\n"
                 "pipeline:\n  labels:\n    gold: gold.jsonl\n    sets: [{name: topic, values: [a, b], default: a}]\n"
                 "  decontamination:\n    benchmarks: [{path: mmlu.jsonl}, {path: other/mmlu.jsonl}]\n",
                 {"mmlu.jsonl": _jsonl({"q": "one"}), "other/mmlu.jsonl": _jsonl({"q": "two"})})
    rc, err, took = _run(capsys, "run", "--config", str(cfg), "--workdir", str(tmp_path / "wd"))
    assert rc == 2 and took < 2.0
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert "sources[0].paths[0]: 'dumps/*.warc.gz' matches no file" in lines[0]
    assert "sources[1].paths[0]: 'exports/forum-*.jsonl.gz' matches no file" in lines[1]
    assert "pipeline.labels.gold: 'gold.jsonl': file not found" in lines[2]
    assert ("pipeline.decontamination.benchmarks[1]: two benchmarks are named 'mmlu' (benchmarks[0] and [1]); "
            "give one of them another `name`") in lines[3]
    assert all(line.startswith(("error: " + str(cfg) + ": ", str(cfg) + ": ")) for line in lines)


def test_a_good_config_has_no_problem(tmp_path):
    cfg = _setup(tmp_path,
                 "sources:\n  - name: my-blog\n    kind: jsonl\n    paths: [dumps/*.jsonl, one.jsonl]\n"
                 "pipeline:\n  clean: {languages: [en, und]}\n  labels:\n    gold: gold.jsonl\n"
                 "    sets: [{name: topic, values: [a, b], default: a}]\n"
                 "  decontamination:\n    benchmarks: [{path: mmlu.jsonl, fields: [q, choices]}]\n"
                 "  augmentation: {enabled: true, synonyms: syn.json}\n",
                 {"dumps/x.jsonl": _jsonl(GOOD_DUMP), "one.jsonl": _jsonl(GOOD_DUMP),
                  "gold.jsonl": _jsonl({"id": 1, "text": "t", "topic": "b"}),
                  "mmlu.jsonl": _jsonl({"q": "one", "choices": ["x", "y"]}), "syn.json": '{"big": ["large"]}'})
    assert problems(load_config(cfg), cfg) == []


def test_the_demo_passes_preflight(tmp_path, capsys):
    from dataset_platform.config import demo_config_path

    assert problems(load_config(demo_config_path()), demo_config_path()) == []
