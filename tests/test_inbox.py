"""The inbox under hostile or unlucky files (issue 19, probes 2 and 3): links, special files,
unknown kinds and files with the wrong schema are refused one by one into ``rejected/`` with their
reason; every other file lands, in this run and the next."""

from __future__ import annotations

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_platform.config import parse_config
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.storage import Workdir, read_layer


def _setup(tmp_path):
    cfg = parse_config({"sources": [{"name": "d", "kind": "jsonl", "paths": []}]})
    wd = Workdir.at(tmp_path / "wd").ensure()
    inbox = wd.inbox("d")
    inbox.mkdir(parents=True)
    return cfg, wd, inbox


def _jsonl(path, *urls):
    path.write_text("".join(json.dumps({"url": u, "text": f"Text of {u}."}) + "\n" for u in urls), encoding="utf-8")
    return path


def _urls(wd) -> list[str]:
    con = duckdb.connect()
    try:
        return sorted(r[0] for r in con.sql(f"SELECT url FROM {read_layer(wd, 'raw_pages')}").fetchall())
    finally:
        con.close()


def test_links_and_special_files_in_the_inbox_are_refused_not_followed(tmp_path):
    cfg, wd, inbox = _setup(tmp_path)
    outside = _jsonl(tmp_path / "secret.jsonl", "https://outside.test/private")
    (inbox / "link.jsonl").symlink_to(outside)  # a document from outside the work folder
    (inbox / "passwd.jsonl").symlink_to("/etc/passwd")
    os.mkfifo(inbox / "pipe.jsonl")  # (reading it would block the run for good)
    (inbox / "folder.jsonl").mkdir()
    _jsonl(inbox / "good.jsonl", "https://good.test/1")
    logs: list[str] = []
    result = materialise_raw(cfg, wd, logs.append)
    assert _urls(wd) == ["https://good.test/1"]
    refused = {r["file"]: r["reason"] for r in result.counters["sources"]["d"]["refused_files"]}
    assert set(refused) == {"link.jsonl", "passwd.jsonl", "pipe.jsonl", "folder.jsonl"}
    assert "symbolic link" in refused["link.jsonl"] and "FIFO" in refused["pipe.jsonl"]
    rejected = inbox / "rejected"
    assert (rejected / "link.jsonl").is_symlink() and outside.read_text().startswith('{"url"')  # moved, not followed
    assert "symbolic link" in (rejected / "link.jsonl.reason.txt").read_text()
    assert not any(wd.root.rglob("*passwd*.parquet"))  # nothing of /etc/passwd copied anywhere
    assert sorted(p.name for p in inbox.iterdir()) == ["processed", "rejected"]
    assert any("refused and moved to" in m and "pipe.jsonl" in m for m in logs)


def test_a_file_of_unknown_kind_or_wrong_schema_does_not_stop_the_others(tmp_path):
    cfg, wd, inbox = _setup(tmp_path)
    (inbox / "notes.txt").write_text("what is this?\n")
    pq.write_table(pa.table({"title": ["no text column here"]}), inbox / "a-no-text.parquet")
    _jsonl(inbox / "b-good.jsonl", "https://good.test/1", "https://good.test/2")
    result = materialise_raw(cfg, wd)
    assert _urls(wd) == ["https://good.test/1", "https://good.test/2"]  # the file sorted after the bad ones
    refused = {r["file"]: r["reason"] for r in result.counters["sources"]["d"]["refused_files"]}
    assert set(refused) == {"notes.txt", "a-no-text.parquet"}
    assert "cannot tell the file kind" in refused["notes.txt"]
    assert refused["a-no-text.parquet"].startswith("cannot be landed:")
    assert (inbox / "rejected" / "a-no-text.parquet.reason.txt").read_text().startswith("cannot be landed:")
    # the next run: the bad files are out of the way, a new good file lands, nothing fails
    _jsonl(inbox / "c-more.jsonl", "https://good.test/3")
    again = materialise_raw(cfg, wd)
    assert _urls(wd) == ["https://good.test/1", "https://good.test/2", "https://good.test/3"]
    assert again.counters["sources"]["d"]["refused_files"] == []
