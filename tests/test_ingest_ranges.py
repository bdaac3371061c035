"""A plain JSON Lines file larger than ``files.RANGE_BYTES`` lands in byte ranges, each a task of
its own (``ingest/refresh.ingest_source_files``): the batch it gives is the batch the file landed
whole gives, record for record and line number for line number, and the raw layer built from it is
the same bytes."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import duckdb
import pytest

from dataset_platform.cluster import runners
from dataset_platform.config import DumpSource
from dataset_platform.ingest import files as landing
from dataset_platform.ingest import refresh
from dataset_platform.ingest.files import batch_id_for, ingest_file, jsonl_ranges, quarantine_path_for
from dataset_platform.ingest.load import Batch, batch_sql, landed_batch
from dataset_platform.storage import memory_connection
from dataset_platform.workdir import Workdir


def _awkward_dump(path: Path, n: int = 300, seed: int = 3) -> Path:
    """JSON Lines with everything a cut could break: a byte-order mark, blank lines, lines that are
    not JSON, records without an http(s) URL, non-UTF-8 bytes, a line far longer than a range,
    CRLF endings, a URL seen twice, and no line break after the last line."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        r = rng.random()
        if r < 0.04:
            lines.append(b"")
        elif r < 0.08:
            lines.append(b'{"url": "https://x.test/broken", "text": ')
        elif r < 0.11:
            lines.append(json.dumps({"url": f"ftp://x.test/{i}", "text": f"Not on the web {i}."}).encode())
        elif r < 0.13:
            lines.append(b'{"url": "https://x.test/latin", "text": "caf\xe9"}')
        elif r < 0.15:
            lines.append(json.dumps({"url": "https://x.test/twice", "text": f"Version {i}."}).encode() + b"\r")
        else:
            words = " ".join(rng.choice(["harbour", "garden", "school", "river"]) for _ in range(rng.randint(3, 40)))
            lines.append(json.dumps({"url": f"https://x.test/{i}", "text": f"{words} {i}."}).encode())
    lines[7] = json.dumps({"url": "https://x.test/long", "text": "long " * 2000}).encode()
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))  # (no line break at the end)
    return path


def _rows(path: Path, source: str = "d") -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM ({batch_sql(Batch(source, 'b', path))}) ORDER BY seq").fetchall()
    finally:
        con.close()


def test_the_ranges_of_a_file_cut_after_line_breaks_and_number_lines_as_the_file(tmp_path):
    rng = random.Random(1)
    data = b"".join(b"x" * rng.choice([0, 1, 10, 1000, 300_000, 5_000_000]) + b"\n" for _ in range(120)) + b"tail"
    path = tmp_path / "a.jsonl"
    path.write_bytes(data)
    for range_bytes in (1, 1000, 1 << 20, 7 << 20):
        ranges = jsonl_ranges(path, range_bytes)
        assert len(ranges) > 1 and ranges[0][0] == 0 and ranges[-1][1] is None
        for (start, end, first), nxt in zip(ranges, [*ranges[1:], None], strict=True):
            assert first == data[:start].count(b"\n") + 1  # the number of its first line in the file
            if nxt is not None:
                assert end == nxt[0] and data[end - 1:end] == b"\n" and end - start >= range_bytes
    assert jsonl_ranges(path, len(data)) == [(0, None, 1)]  # small enough: whole
    packed = tmp_path / "a.jsonl.gz"
    packed.write_bytes(gzip.compress(data))
    assert jsonl_ranges(packed, 1000) == [(0, None, 1)]  # a gzip stream is not cut


@pytest.mark.parametrize("pool", [False, True], ids=["here", "worker-processes"])
def test_a_file_landed_in_ranges_is_the_batch_of_the_file_landed_whole(tmp_path, monkeypatch, pool):
    dump = _awkward_dump(tmp_path / "dump.jsonl")
    whole = tmp_path / "whole" / "batch.parquet"
    summary = ingest_file(dump, source="d", kind="jsonl", output_path=whole)
    assert summary.quarantined >= 5 and summary.records > 250

    monkeypatch.setattr(landing, "RANGE_BYTES", 2000)
    if pool:  # (land through spawned worker processes, as a large local landing does)
        from dataset_platform.stages.base import available_cpus

        if available_cpus() < 2:
            pytest.skip("needs 2 CPUs: worker processes land only beside another")
        monkeypatch.setattr(runners, "POOL_BYTES", 0)
    wd = Workdir.at(tmp_path / "wd").ensure()
    lines: list[str] = []
    source = DumpSource(name="d", kind="jsonl", paths=[str(dump)])
    batch_id = batch_id_for(dump, "d")
    assert refresh.ingest_source_files(source, wd, lines.append) == [batch_id]
    assert any(" worker processes" in m for m in lines) == pool  # (where the ranges landed)
    batch = landed_batch(wd, "d", batch_id)
    assert batch is not None and batch.name.endswith(".ranges") and batch.is_dir()
    assert len(list(batch.glob("*.parquet"))) == len(jsonl_ranges(dump, 2000)) > 10
    assert not list(wd.raw_batches("d").glob(".*.tmp"))  # the staging folder was renamed into place
    assert _rows(batch) == _rows(whole)  # every record, in order, with its line number in the file
    assert quarantine_path_for(batch.with_suffix(".parquet")).read_bytes() == quarantine_path_for(whole).read_bytes()
    assert not list(batch.glob("*.quarantine.jsonl"))
    assert any(f"landed dump.jsonl as {batch_id}: {summary.records} records" in m for m in lines)
    assert any(summary.line().split(" quarantined in ")[0] in m for m in lines)  # the whole file's counts
    assert refresh.ingest_source_files(source, wd, lines.append) == []  # landed before: not again


def test_the_raw_layer_of_a_file_landed_in_ranges_is_the_same_bytes(tmp_path, monkeypatch):
    from graphkit import config

    dump = _awkward_dump(tmp_path / "news.jsonl", n=600)
    cfg = config(tmp_path, sources=["news"])
    built = {}
    for name, range_bytes in (("whole", 10**9), ("ranges", 3000)):
        monkeypatch.setattr(landing, "RANGE_BYTES", range_bytes)
        wd = Workdir.at(tmp_path / name).ensure()
        wd.inbox("news").mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, wd.inbox("news") / "news.jsonl")
        refresh.materialise_raw(cfg, wd)
        built[name] = wd
    assert landed_batch(built["ranges"], "news", batch_id_for(dump, "news")).name.endswith(".ranges")
    for layer in ("raw_pages", "crawl_log"):
        files = {w: {p.relative_to(built[w].layer_dir(layer)): p.read_bytes()
                     for p in sorted(built[w].layer_dir(layer).rglob("*.parquet"))} for w in built}
        assert files["whole"] and files["whole"] == files["ranges"], layer
    con = memory_connection()
    try:
        n = con.sql(f"SELECT count(*) FROM read_parquet('{built['ranges'].layer_dir('crawl_log')}/*/*.parquet')").fetchall()
    finally:
        con.close()
    assert n[0][0] > 500


def test_files_landing_at_once_are_merged_in_the_order_of_the_files(tmp_path, monkeypatch):
    """Landing tasks finish in any order; a later file's record of a URL still replaces an
    earlier file's (the batches are stamped in file order)."""
    from dataset_platform.ingest.load import ingest_pending
    from dataset_platform.stages.base import available_cpus
    from dataset_platform.storage import read_layer

    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs: the two files must land at the same time")
    rows = [{"url": f"https://x.test/{i}", "text": f"Filler text number {i}. " * 20} for i in range(30_000)]
    big, small = tmp_path / "a-big.jsonl", tmp_path / "b-small.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in
                           [{"url": "https://x.test/same", "text": "From the first file."}, *rows]))
    small.write_text(json.dumps({"url": "https://x.test/same", "text": "From the second file."}) + "\n")
    monkeypatch.setattr(runners, "POOL_BYTES", 0)  # both at once, on worker processes
    wd = Workdir.at(tmp_path / "wd").ensure()
    lines: list[str] = []
    source = DumpSource(name="d", kind="jsonl", paths=[str(tmp_path / "*.jsonl")])
    assert refresh.ingest_source_files(source, wd, lines.append) == [batch_id_for(big, "d"), batch_id_for(small, "d")]
    assert any("on 2 worker processes" in m for m in lines)
    con = memory_connection()
    try:
        assert ingest_pending(con, wd, "d")["batches"] == [batch_id_for(big, "d"), batch_id_for(small, "d")]
        text = con.sql(f"SELECT text FROM {read_layer(wd, 'raw_pages')} WHERE url = 'https://x.test/same'").fetchall()
    finally:
        con.close()
    assert text == [("From the second file.",)]


def test_one_read_gives_the_files_batch_id_and_its_ranges(tmp_path, monkeypatch):
    from dataset_platform.ingest.files import batch_id_and_ranges

    dump = _awkward_dump(tmp_path / "dump.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for path, range_bytes in ((dump, 2000), (dump, 10**9), (empty, 2000)):
        landing_ranges = jsonl_ranges(path, range_bytes)
        monkeypatch.setattr(landing, "RANGE_BYTES", range_bytes)
        assert batch_id_and_ranges(path, "d", "jsonl") == (batch_id_for(path, "d"), landing_ranges)
        assert batch_id_and_ranges(path, "d", "jsonl", "d-known") == ("d-known", landing_ranges)
    assert batch_id_for(empty, "d") != batch_id_for(tmp_path / "dump.jsonl", "d")
    assert len(jsonl_ranges(dump, 2000)) > 10
