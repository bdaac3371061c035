"""Blocklists at extraction (stages/blocklist.py): a UT1 category folder and a plain file written
here, banned words over a threshold, through the stage CLI and through the runner (the rejected
rows and their values, and the extract fingerprint following the lists' content)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from graphkit import crawl_record, document, land_crawl, page, parts

from dataset_platform import runner
from dataset_platform.config import BlocklistSettings, ConfigError, load_config
from dataset_platform.contracts.rules import BLOCKLIST_RULES
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.stages import blocklist as bl
from dataset_platform.stages.extract import STAGE as EXTRACT
from dataset_platform.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]

SPAM = ("Watch free porn videos every day on the best site. Hot milf clips and xxx movies, updated hourly.\n"
        "Horny girls are waiting for you, the best porn of the week is here.")
SPAM_ZH = "免费看片，最新成人视频在线观看。一夜情交友，同城约炮，真人裸聊，每天更新。"
INCIDENTAL = "The council also debated a proposal to filter porn on the library computers, and voted it down."


def _lists(root: Path) -> None:
    """A UT1 category folder (domains + urls) and a plain file of domains and URLs."""
    cat = root / "blacklists" / "adult"
    cat.mkdir(parents=True)
    (cat / "domains").write_text("# UT1-style list written for this test\nadult.test\n\n.cams.test\n")
    (cat / "urls").write_text("mixed.test/videos\nwww.mixed.test/private/\n")
    (cat / "expressions").write_text("(porn|sex)\n")  # not a list of entries: not read
    (root / "plain.txt").write_text("# our own\nplain-blocked.test\nhttps://forum.test/nsfw-board\n")


def _pages(rng: random.Random) -> dict[str, tuple[str, str]]:
    """url -> (title, text); the first word of each key names what should happen to it."""
    doc = lambda: document(rng, "garden")
    return {
        "http://adult.test/home": ("Home", doc()),
        "https://www.shop.adult.test/item/1": ("Item", doc()),
        "http://live.cams.test/": ("Live", doc()),
        "http://mixed.test/videos/42": ("Video", doc()),
        "http://mixed.test/videos?page=2": ("Videos", doc()),
        "http://mixed.test/videos-of-gardens": ("Gardens", doc()),  # not at a path boundary: kept
        "http://mixed.test/private/a": ("Private", doc()),
        "http://mixed.test/about": ("About", doc()),  # same host, other path: kept
        "http://plain-blocked.test:8080/x": ("Plain", doc()),
        "https://forum.test/nsfw-board/thread/7": ("Thread", doc()),
        "https://forum.test/gardening": ("Forum", doc()),  # kept
        "http://ok.test/spam": ("Best free videos", doc().split("\n")[0] + "\n" + SPAM),
        "http://ok.test/spam-zh": ("视频", SPAM_ZH),
        "http://ok.test/incidental": ("Council news", doc() + "\n" + INCIDENTAL),
        "http://notadult.test/": ("Not adult", doc()),  # a different domain ending in adult.test's letters
    }


EXPECTED = {
    "http://adult.test/home": ("blocklist.domain", "adult.test"),
    "https://www.shop.adult.test/item/1": ("blocklist.domain", "adult.test"),
    "http://live.cams.test/": ("blocklist.domain", "cams.test"),
    "http://mixed.test/videos/42": ("blocklist.url", "mixed.test/videos"),
    "http://mixed.test/videos?page=2": ("blocklist.url", "mixed.test/videos"),
    "http://mixed.test/private/a": ("blocklist.url", "mixed.test/private/"),
    "http://plain-blocked.test:8080/x": ("blocklist.domain", "plain-blocked.test"),
    "https://forum.test/nsfw-board/thread/7": ("blocklist.url", "forum.test/nsfw-board"),
}
KEPT = {"http://mixed.test/videos-of-gardens", "http://mixed.test/about", "https://forum.test/gardening",
        "http://ok.test/incidental", "http://notadult.test/"}


def _check_rejected(rows: dict[str, tuple[str, str]]) -> None:
    """rows: url -> (rule, value) of what extraction rejected."""
    addresses = {u: rv for u, rv in rows.items() if rv[0] != "blocklist.words"}
    assert addresses == EXPECTED
    words = {u: v for u, (r, v) in rows.items() if r == "blocklist.words"}
    assert set(words) == {"http://ok.test/spam", "http://ok.test/spam-zh"}
    assert words["http://ok.test/spam"].endswith("horny, milf, porn, xxx")
    assert words["http://ok.test/spam"].startswith("5 hits ("), words  # porn x2, xxx, milf, horny
    assert words["http://ok.test/spam-zh"].startswith("5 hits (")
    assert words["http://ok.test/spam-zh"].endswith(": 一夜情, 免费看片, 成人视频, 约炮, 裸聊")
    assert {r for r, _ in rows.values()} <= set(BLOCKLIST_RULES)


def test_stage_cli_drops_blocked_domains_urls_and_spam(tmp_path):
    _lists(tmp_path)
    pages = _pages(random.Random(7))
    inp = tmp_path / "pages.jsonl"
    inp.write_text("".join(json.dumps({"id": f"p{i:02d}", "url": u, "html": page(t, x)}) + "\n"
                           for i, (u, (t, x)) in enumerate(pages.items())))
    cfg = tmp_path / "sources.yaml"  # the list paths are relative to it
    cfg.write_text("sources: [{name: pages, kind: jsonl}]\n"
                   "pipeline:\n  extract:\n    workers: 1\n"
                   "    blocklist: {lists: [blacklists/adult, plain.txt]}\n")
    out, rej = tmp_path / "docs.parquet", tmp_path / "rejected.jsonl"
    r = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "stage", "extract", "--config", str(cfg),
                        "--input", str(inp), "--output", str(out), "--rejected", str(rej)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    url_of = {f"p{i:02d}": u for i, u in enumerate(pages)}
    rows = {url_of[x["id"]]: (x["rule"], x["value"]) for x in map(json.loads, rej.read_text().splitlines())}
    _check_rejected(rows)
    kept = {url_of[i] for i in pq.read_table(out).column("id").to_pylist()}
    assert kept == KEPT
    assert "blocklist.domain=3" not in r.stderr and "blocklist.domain=4" in r.stderr  # the summary line


def _config(root: Path, lists: list[str], **blocklist) -> Path:
    (root / "sources.yaml").write_text(json.dumps({
        "sources": [{"name": "site", "kind": "crawl", "start_urls": ["http://127.0.0.2/"],
                     "allowed_domains": ["127.0.0.2"]}],
        "pipeline": {"part_rows": 100, "extract": {"workers": 1, "blocklist": {"lists": lists, **blocklist}}},
    }))
    return root / "sources.yaml"


def _rejected_by_url(wd: Workdir) -> dict[str, tuple[str, str]]:
    return {r["url"]: (r["rule"], r["value"]) for rows in parts(wd, "extracted_documents", "rejected.parquet").values()
            for r in rows}


def test_runner_drops_them_and_a_changed_list_recomputes_extraction_and_below(tmp_path):
    _lists(tmp_path)
    wd = Workdir(tmp_path / "wd")
    pages = _pages(random.Random(11))
    pages["http://late.test/a"] = ("Late", document(random.Random(3), "harbour"))
    land_crawl(wd, "site", "20270101T000001", [crawl_record(u, html=page(t, x)) for u, (t, x) in pages.items()])
    cfg = load_config(_config(tmp_path, ["blacklists/adult", "plain.txt"]))
    assert cfg.pipeline.extract.blocklist.lists[0] == str(tmp_path / "blacklists" / "adult")  # resolved
    materialise_raw(cfg, wd, sources=["site"], crawl=False)

    first = runner.materialise("extract", cfg, wd)
    assert first.counters["parts_computed"] == 1
    assert first.counters["prepared"] == {"domains": 3, "url_prefixes": 3,
                                          "words": len(set(bl.DEFAULT_WORDS_EN + bl.DEFAULT_WORDS_ZH))}
    rows = _rejected_by_url(wd)
    _check_rejected(rows)
    assert runner.materialise("clean", cfg, wd).counters["parts_computed"] == 1
    kept = {r["url"] for rows in parts(wd, "extracted_documents").values() for r in rows}
    assert kept == KEPT | {"http://late.test/a"}

    # the same entries, reordered and commented: nothing is recomputed
    domains = tmp_path / "blacklists" / "adult" / "domains"
    domains.write_text("cams.test\n# reordered\nadult.test   # the same entry\n")
    again = runner.materialise("extract", cfg, wd)
    assert (again.counters["parts_computed"], again.counters["parts_reused"]) == (0, 1)

    # a new entry in the file (same path): extraction and the layers below are recomputed
    domains.write_text(domains.read_text() + "late.test\n")
    changed = runner.materialise("extract", cfg, wd)
    assert changed.counters["parts_computed"] == 1
    assert _rejected_by_url(wd)["http://late.test/a"] == ("blocklist.domain", "late.test")
    assert runner.materialise("clean", cfg, wd).counters["parts_computed"] == 1

    # the words' threshold is a setting: one hit is enough when asked, so the incidental page goes
    strict = load_config(_config(tmp_path, ["blacklists/adult", "plain.txt"], min_word_hits=1,
                                 min_distinct_words=1, min_hits_per_1000_chars=0))
    assert runner.materialise("extract", strict, wd).counters["parts_computed"] == 1
    rule, value = _rejected_by_url(wd)["http://ok.test/incidental"]
    assert rule == "blocklist.words" and value.startswith("1 hits (") and value.endswith("): porn")


def test_prepared_fingerprint_follows_content_and_words(tmp_path):
    _lists(tmp_path)
    con = duckdb.connect()
    s = BlocklistSettings(lists=[str(tmp_path / "blacklists" / "adult"), str(tmp_path / "plain.txt")])
    base = bl.load(con, s).fingerprint
    assert bl.load(con, s).fingerprint == base  # deterministic
    assert bl.load(con, s.model_copy(update={"words": ["spamword"]})).fingerprint != base
    assert bl.load(con, s.model_copy(update={"default_words": False})).fingerprint != base
    (tmp_path / "plain.txt").write_text("# our own\nplain-blocked.test\nhttps://forum.test/nsfw-board/other\n")
    assert bl.load(con, s).fingerprint != base
    e = EXTRACT.settings(load_config(_config(tmp_path, [])).pipeline)
    assert EXTRACT.fingerprint(e, "a") != EXTRACT.fingerprint(e, "b")


def test_word_files_and_patterns(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# one per line\nSpam Word\nc++\n色情网站\n")
    s = BlocklistSettings(default_words=False, word_lists=[str(words)], words=["Alpha"], min_word_hits=2,
                          min_distinct_words=2, min_hits_per_1000_chars=0)
    con = duckdb.connect()
    lists = bl.load(con, s)
    assert bl.read_words(s) == ["alpha", "c++", "spam word", "色情网站"]
    con.sql("CREATE TABLE d AS SELECT * FROM (VALUES "
            "('a', NULL, 'alphas and SPAM   WORDS here'), "  # plural, case, whitespace in a phrase
            "('b', 'Alpha', '这个色情网站'), "  # the title counts; CJK as a substring
            "('c', NULL, 'alphabet spam wordy'), "  # no whole word
            "('d', NULL, 'alpha alpha alpha')) t(id, title, text)")  # one entry only: kept
    got = {i: v for i, _r, v in bl.word_hits(con, lists, "SELECT * FROM d").fetchall()}
    assert got == {"a": "2 hits (71.43 per 1000 chars): alpha, spam word",
                   "b": "2 hits (166.67 per 1000 chars): alpha, 色情网站"}


def test_missing_lists_say_what_to_do(tmp_path):
    con = duckdb.connect()
    with pytest.raises(bl.BlocklistError, match=r"nowhere: blocklist not found; name a UT1 category folder"):
        bl.load(con, BlocklistSettings(lists=[str(tmp_path / "nowhere")]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(bl.BlocklistError, match=r"a folder without a 'domains' or 'urls' file"):
        bl.load(con, BlocklistSettings(lists=[str(tmp_path / "empty")]))
    assert [f for f, _m in bl.check(BlocklistSettings(word_lists=[str(tmp_path / "w.txt")]))] == [
        "pipeline.extract.blocklist.word_lists"]
    with pytest.raises(ConfigError, match=r"min_word_hits"):
        load_config(_config(tmp_path, [], min_word_hits=0))
