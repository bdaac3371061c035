from pathlib import Path

import pytest

from dataset_platform.config import ConfigError, demo_config_path, load_config, parse_config


def test_demo_config_loads():
    cfg = load_config(demo_config_path())
    assert cfg.sources[0].demo_site is True
    assert abs(cfg.pipeline.splits.train + cfg.pipeline.splits.validation + cfg.pipeline.splits.test - 1) < 1e-9
    assert len(cfg.fingerprint()) == 64


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml(tmp_path):
    p = tmp_path / "sources.yaml"
    p.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def _jsonl(pipeline: dict) -> dict:
    return {"sources": [{"name": "d", "kind": "jsonl", "paths": []}], "pipeline": pipeline}


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://example.org/"],
                       "allowed_domains": ["example.org"], "max_pages": "many"}]},
         r"sources\[0\]\.max_pages: .*integer.*'many'"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["ftp://example.org/"],
                       "allowed_domains": ["example.org"]}]},
         r"sources\[0\]\.start_urls: .*must be http"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://example.org/"]}]},
         r"sources\[0\]: .*allowed_domains is required"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "max_page": 3}]},
         r"sources\[0\]\.max_page: unknown field"),
        ({"sources": []}, r"sources: .*at least 1"),
        ({"sources": [{"name": "s", "kind": "ftp", "start_urls": ["http://e.org/"]}]},
         r"sources\[0\]: kind: expected one of \['crawl', 'jsonl', 'parquet', 'warc'\], got 'ftp'"),
        ({"sources": [{"name": "d", "kind": "jsonl", "fields": {"body": "content"}}]},
         r"sources\[0\]\.fields: unknown landed field\(s\) \['body'\]"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "deny_url_patterns": ["(unclosed"]}]},
         r"sources\[0\]\.deny_url_patterns: '\(unclosed' is not a valid regular expression"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "allow_private_addresses": ["intranet"]}]},
         r"sources\[0\]\.allow_private_addresses: 'intranet' is not an IP address or CIDR network"),
        ({"sources": [{"name": "s", "start_urls": ["http://e.org/"]}]},
         r"sources\[0\]: kind: required field is missing"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"]}],
          "pipeline": {"splits": {"train": 0.9, "validation": 0.2, "test": 0.1}}},
         r"pipeline\.splits: .*must be 1\.0"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"]},
                      {"name": "s", "kind": "crawl", "start_urls": ["http://f.org/"], "allowed_domains": ["f.org"]}]},
         r"appears twice"),
        (["not", "a", "mapping"], r"expected a mapping"),
        # settings that validated and then broke the run (issue 19, probe 8)
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "download_delay": float("inf")}]},
         r"sources\[0\]\.download_delay: input should be a finite number, got inf"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "download_timeout_s": float("inf")}]},
         r"sources\[0\]\.download_timeout_s: input should be a finite number"),
        (_jsonl({"extract": {"timeout_s": float("inf")}}), r"pipeline\.extract\.timeout_s: .*finite number"),
        # finite but absurd: a crawl that would never end, a page that could hang an hour
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "download_delay": 1e9}]},
         r"sources\[0\]\.download_delay: input should be less than or equal to 3600"),
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "timeout_s": 1e12}]},
         r"sources\[0\]\.timeout_s: input should be less than or equal to 2592000"),
        (_jsonl({"extract": {"timeout_s": 1e7}}), r"pipeline\.extract\.timeout_s: input should be less than or equal to 3600"),
        ({"sources": [{"name": "takedowns", "kind": "jsonl", "paths": []}]},
         r"source name 'takedowns' is reserved: inbox/takedowns/ receives takedown requests"),
        (_jsonl({"extract": {"workers": 1000}}), r"pipeline\.extract\.workers: 1000 workers on a machine of \d+ CPU"),
        (_jsonl({"dedup": {"seed": -1}}), r"pipeline\.dedup\.seed: input should be greater than or equal to 0"),
        (_jsonl({"memory_limit": "999999TB"}), r"pipeline\.memory_limit: '999999TB' is not a usable memory size"),
        (_jsonl({"dedup": {"memory_limit": "0MB"}}), r"pipeline\.dedup\.memory_limit: '0MB' is not a usable memory"),
    ],
)
def test_invalid_configs_name_file_and_field(data, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        parse_config(data, origin="sources.yaml")
    assert str(e.value).startswith("sources.yaml: ")


@pytest.mark.parametrize("levels", [40, 5000])
def test_a_deeply_nested_file_is_a_config_error_not_a_traceback(tmp_path, levels):
    p = tmp_path / "sources.yaml"
    p.write_text("sources:\n  - name: x\n    kind: jsonl\n    paths: " + "[" * levels + "]" * levels + "\n")
    with pytest.raises(ConfigError, match=r"sources\.yaml: nested"):
        load_config(p)


def test_user_config_round_trip(tmp_path: Path):
    p = tmp_path / "sources.yaml"
    p.write_text(
        "dataset: {name: my-set, license: cc-by-4.0}\n"
        "sources:\n  - name: blog\n    kind: crawl\n    start_urls: [https://blog.example.org/]\n"
        "    allowed_domains: [blog.example.org]\n    max_pages: 50\n"
        "pipeline:\n  clean: {rules: {gopher_quality.word_count: {min: 20}}}\n  schedule: '0 4 * * 1'\n"
    )
    cfg = load_config(p)
    assert cfg.dataset.name == "my-set" and cfg.sources[0].max_pages == 50
    assert cfg.pipeline.clean.rules["gopher_quality.word_count"].min == 20 and cfg.pipeline.schedule == "0 4 * * 1"
    assert cfg.sources[0].obey_robots is True  # polite by default


def test_dump_source_paths_are_relative_to_the_config_file(tmp_path: Path):
    p = tmp_path / "cfg" / "sources.yaml"
    p.parent.mkdir()
    p.write_text("sources:\n  - name: cc\n    kind: warc\n    paths: [dumps/*.warc.gz, /abs/x.warc]\n"
                 "  - name: notes\n    kind: jsonl\n    fields: {text: body, url: link}\n")
    cfg = load_config(p)
    assert cfg.sources[0].paths == [str(p.parent / "dumps/*.warc.gz"), "/abs/x.warc"]
    assert cfg.sources[1].fields == {"text": "body", "url": "link"}


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"sources": [{"name": "s", "kind": "crawl", "start_urls": ["http://e.org/"], "allowed_domains": ["e.org"],
                       "max_pgaes": 3}]},
         "sources.yaml: sources[0].max_pgaes: unknown field: did you mean 'max_pages'? (docs/CONFIG.md lists every field)"),
        ({"sources": [{"name": "d", "kind": "jsonl", "pathz": ["a.jsonl"]}]},
         "sources.yaml: sources[0].pathz: unknown field: did you mean 'paths'?"),
        (_jsonl({"clean": {"languages_overrides": {"de": {"c4": {"enabeld": False}}}}}),
         "pipeline.clean.languages_overrides.de.c4.enabeld: unknown field: did you mean 'enabled'?"),
        (_jsonl({"labels": {"sets": [{"name": "t", "values": ["a", "b"], "default": "a",
                                      "rules": [{"value": "a", "keyword": ["x"]}]}]}}),
         "pipeline.labels.sets[0].rules[0].keyword: unknown field: did you mean 'keywords'?"),
        ({**_jsonl({}), "pipelin": {}}, "sources.yaml: pipelin: unknown field: did you mean 'pipeline'?"),
        ({**_jsonl({}), "dataset": {"zzz": 1}},
         "dataset.zzz: unknown field; the fields here are name, description, license, language (docs/CONFIG.md"),
    ],
)
def test_an_unknown_field_suggests_the_closest_one(data, expected):
    with pytest.raises(ConfigError) as e:
        parse_config(data, origin="sources.yaml")
    assert expected in str(e.value)


@pytest.mark.parametrize("value, guess", [("english", "en"), ("EN", "en"), ("zh-CN", "zh"), ("eng", "en"),
                                          ("chinese", "zh"), ("german", "de")])
def test_a_language_that_is_no_code_is_refused_with_the_code_meant(value, guess):
    with pytest.raises(ConfigError) as e:
        parse_config(_jsonl({"clean": {"languages": ["en", value]}}), origin="sources.yaml")
    assert f"sources.yaml: pipeline.clean.languages: {value!r} is not a language code: did you mean {guess!r}?" in str(e.value)


def test_language_codes_are_those_documents_can_have():
    cfg = parse_config(_jsonl({"clean": {"languages": ["en", "zh", "ja", "he", "und"],
                                         "languages_overrides": {"de": {"c4": {"enabled": False}}}}}))
    assert cfg.pipeline.clean.languages == ["en", "zh", "ja", "he", "und"]
    with pytest.raises(ConfigError, match=r"languages_overrides: iw: 'iw' is not a language code"):
        parse_config(_jsonl({"clean": {"languages_overrides": {"iw": {}}}}))  # CLD2's old code: extraction says he


def test_source_names_that_meet_in_dagster_are_refused_naming_both():
    data = {"sources": [{"name": "cc-sample", "kind": "warc"}, {"name": "notes", "kind": "jsonl"},
                        {"name": "cc_sample", "kind": "jsonl"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(data, origin="sources.yaml")
    assert str(e.value) == (
        "sources.yaml: sources: source names 'cc-sample' (sources[0]) and 'cc_sample' (sources[2]) both become "
        "'cc_sample' in Dagster's names (schedule refresh_cc_sample; Dagster allows only letters, digits and _, "
        "so - becomes _): rename one of them")
    assert [s.name for s in parse_config({"sources": data["sources"][:2]}).sources] == ["cc-sample", "notes"]


REPO = Path(__file__).resolve().parents[1]


def test_the_committed_config_reference_is_what_the_models_generate():
    from dataset_platform.config_reference import render

    for name, text in render().items():
        committed = REPO / "docs" / name
        assert committed.read_text(encoding="utf-8") == text, (
            f"docs/{name} is out of date: run python -m dataset_platform.config_reference")


def test_every_field_has_a_description_and_a_row_in_the_reference():
    from dataset_platform.config_reference import markdown, models

    found = models()
    assert {"PlatformConfig", "CrawlSource", "DumpSource", "RuleSettings", "LabelRule", "BenchmarkSet", "RaySettings"} <= set(found)
    page = markdown()
    undescribed = [f"{m.__name__}.{n}" for m in found.values() for n, f in m.model_fields.items()
                   if not (f.description or "").strip()]
    assert undescribed == []
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert len(rows) >= sum(len(m.model_fields) for m in found.values())
    assert all(not line.endswith("|  |") and line.count(" | ") >= 3 for line in rows)
    for path in ("pipeline.labels.gold", "pipeline.labels.review.max_tasks", "pipeline.splits.group_by",
                 "pipeline.splits.tolerance", "pipeline.decontamination.benchmarks[].fields", "pipeline.release.max_shard_bytes",
                 "pipeline.quality.max_label_share", "pipeline.batch_size", "sources[].max_pages", "sources[].paths",
                 "pipeline.clean.rules.<rule>.min"):
        assert f"| `{path}` |" in page, path


def test_the_json_schema_accepts_the_demo_and_refuses_a_typo():
    import jsonschema
    import yaml

    from dataset_platform.config_reference import json_schema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(demo_config_path().read_text()))) == []
    dump = {"sources": [{"name": "cc-sample", "kind": "warc", "paths": ["dumps/*.warc.gz"]}],
            "pipeline": {"splits": {"group_by": ["cluster"]}, "labels": {"gold": "gold.jsonl"}}}
    assert list(validator.iter_errors(dump)) == []
    assert list(validator.iter_errors({"sources": [{**dump["sources"][0], "max_pgaes": 3}]}))
    assert schema["$defs"]["SplitSettings"]["properties"]["group_by"]["default"] == ["cluster", "url"]


def test_the_language_codes_are_those_extraction_records():
    from dataset_platform.contracts.languages import CLD2_CODE_FIX, language_codes
    from dataset_platform.stages.extract import _LANG_FIX, detect_language

    assert _LANG_FIX == CLD2_CODE_FIX  # (extraction codes CLD2's answers with this map)
    texts = ["The harbour ferry leaves at dawn and the fishermen return before noon with their catch.",
             "今天的天气很好，我们一起去公园散步，然后在湖边吃午饭。",
             "Der Hafen ist im Winter ruhig, aber im Sommer kommen viele Touristen mit dem Schiff.",
             "הנמל שקט בחורף, אבל בקיץ מגיעים תיירים רבים באונייה לעיר העתיקה.", "   "]
    langs = [detect_language(t)[0] for t in texts]
    assert langs == ["en", "zh", "de", "he", "und"]
    assert set(langs) <= set(language_codes())


def test_the_same_config_in_another_folder_has_the_same_fingerprint(tmp_path):
    """The release's config hash must not depend on where sources.yaml lives (the default takedowns file is
    resolved beside it): the same settings give the same release version anywhere."""
    text = "sources:\n  - {name: notes, kind: jsonl, paths: []}\npipeline:\n  dedup: {threshold: 0.8}\n"
    a, b = tmp_path / "a" / "sources.yaml", tmp_path / "b" / "sources.yaml"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(text, encoding="utf-8")
    ca, cb = load_config(a), load_config(b)
    assert ca.pipeline.takedowns != cb.pipeline.takedowns  # resolved beside each file
    assert ca.fingerprint() == cb.fingerprint()
