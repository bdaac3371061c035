"""The inbox under hostile or unlucky files (issue 19, probes 2 and 3): links, special files,
unknown kinds and files with the wrong schema are refused one by one into ``rejected/`` with their
reason; every other file lands, in this run and the next."""

from __future__ import annotations

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.config import parse_config
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.storage import Workdir, read_layer, sql_str


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
    # crawl_log says what became of every file the source was given
    con = duckdb.connect()
    try:
        log = dict(con.sql(f"SELECT url, outcome FROM {read_layer(wd, 'crawl_log')} WHERE url LIKE 'inbox://%'").fetchall())
    finally:
        con.close()
    assert log == {"inbox://notes.txt": "failed:refused_file", "inbox://a-no-text.parquet": "failed:refused_file"}
    # the next run: the bad files are out of the way, a new good file lands, nothing fails
    _jsonl(inbox / "c-more.jsonl", "https://good.test/3")
    again = materialise_raw(cfg, wd)
    assert _urls(wd) == ["https://good.test/1", "https://good.test/2", "https://good.test/3"]
    assert again.counters["sources"]["d"]["refused_files"] == []


BOUNDED = """
import json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from dataset_platform.ingest.files import ingest_file
s = ingest_file(Path({path!r}), source="d", kind={kind!r}, output_path=Path({out!r}))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({{"records": s.records, "errors": s.errors, "hwm_mb": int(hwm) / 1024}}))
"""


def _land_in_child(path, out, kind: str = "jsonl") -> dict:
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-c", BOUNDED.format(repo=repo, path=str(path), out=str(out), kind=kind)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _outcomes(batch) -> list[tuple[str, str]]:
    return [(r["url"], r["outcome"]) for r in pq.read_table(batch, columns=["url", "outcome"]).to_pylist()]


def test_a_gzip_bomb_is_cut_off_with_flat_memory_and_the_lines_before_it_land(tmp_path):
    """Issue 19, probe 1: 10 MB of gzip (10 GiB of zeros, no newline) took 4 GB in 61 s, on every run.
    Here 1 GiB of zeros after a good line: the reader stops at the compression-ratio bound."""
    import gzip
    import zlib

    bomb = tmp_path / "bomb.jsonl.gz"
    with open(bomb, "wb") as f:
        f.write(gzip.compress((json.dumps({"url": "https://good.test/1", "text": "Fine."}) + "\n").encode()))
        z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # (a second gzip member)
        block = bytes(1 << 20)
        for _ in range(1024):
            f.write(z.compress(block))
        f.write(z.flush())
    assert bomb.stat().st_size < 8 * 2**20
    got = _land_in_child(bomb, tmp_path / "batch.parquet")
    assert got["hwm_mb"] < 400  # the line of zeros was never held: 64 MB at most, then skipped
    assert any("decompression bomb" in e for e in got["errors"])
    outcomes = _outcomes(tmp_path / "batch.parquet")
    assert outcomes[0] == ("https://good.test/1", "fetched") and outcomes[-1][1] == "failed:corrupt_file"


def _warc_with_bomb(path, filler: bytes) -> None:
    """One good gzip-member WARC response record, then a gzip member of 1 GiB of ``filler``."""
    import io
    import zlib

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    html = b"<html><head><title>Good</title></head><body><p>Fine page.</p></body></html>"
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
    w = WARCWriter(buf, gzip=True)
    w.write_record(w.create_warc_record("https://good.test/1", "response", payload=io.BytesIO(html),
                                        http_headers=http))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
        z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = filler * ((1 << 20) // len(filler))
        for _ in range(1024):
            f.write(z.compress(block))
        f.write(z.flush())


@pytest.mark.parametrize("filler, why", [(b"\0", "header line longer than"), (b"\r\n", "decompression bomb")])
def test_a_warc_gzip_bomb_is_cut_off_with_flat_memory_and_the_record_before_it_lands(tmp_path, filler, why):
    """Issue 19, probe 1, for WARC: a member of zeros is a header line without end, a member of empty
    lines a stream that inflates 1000x; both stop in bounded memory, the good record before them lands."""
    bomb = tmp_path / "bomb.warc.gz"
    _warc_with_bomb(bomb, filler)
    assert bomb.stat().st_size < 16 * 2**20
    got = _land_in_child(bomb, tmp_path / "batch.parquet", kind="warc")
    assert got["hwm_mb"] < 500, got
    assert any(why in e for e in got["errors"]), got["errors"]
    outcomes = _outcomes(tmp_path / "batch.parquet")
    assert outcomes[0] == ("https://good.test/1", "fetched") and outcomes[-1][1] == "failed:corrupt_file"


def test_a_line_over_the_bound_lands_as_too_large_and_the_others_land(tmp_path):
    from dataset_platform.ingest.readers.dumps import MAX_LINE_BYTES

    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"url": "https://good.test/1", "text": "Before."}) + "\n")
        f.write('{"url": "https://big.test/", "text": "' + "x" * (MAX_LINE_BYTES + 10) + '"}\n')
        f.write(json.dumps({"url": "https://good.test/2", "text": "After."}) + "\n")
    got = _land_in_child(path, tmp_path / "batch.parquet")
    assert got["hwm_mb"] < 400
    outcomes = _outcomes(tmp_path / "batch.parquet")
    assert [o for _u, o in outcomes] == ["fetched", "too_large", "fetched"]
    assert outcomes[1][0].endswith("line=2")


def test_refused_files_warn_on_raw_pages_until_someone_deals_with_them(tmp_path):
    """The raw asset's metadata lists the files refused by one run; the WARN check keeps saying so for as
    long as they wait in rejected/ (run for real through Dagster, after a real refresh refused them)."""
    import dagster as dg

    from dataset_platform.defs.quality import check_definition
    from dataset_platform.defs.resources import PlatformResource

    cfg, wd, inbox = _setup(tmp_path)
    (inbox / "notes.txt").write_text("what is this?\n")
    _jsonl(inbox / "good.jsonl", "https://good.test/1")
    materialise_raw(cfg, wd)
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n  - {name: d, kind: jsonl, paths: []}\n", encoding="utf-8")

    @dg.asset(name="raw_pages")
    def raw_pages() -> None:  # (the refresh above is the real one; the check reads what it left)
        return None

    def evaluate():
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [raw_pages, check_definition("raw_pages", "no_refused_inbox_files")],
                resources={"platform": PlatformResource(config_path=str(config), workdir=str(wd.root))},
                instance=instance)
            (ev,) = result.get_asset_check_evaluations()
        return ev

    ev = evaluate()
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
    assert "1 inbox file(s) refused" in ev.description and "d/notes.txt (notes.txt: cannot tell the file kind" in ev.description
    assert ev.metadata["files_waiting"].value == 1
    # dealt with (deleted with its reason): the warning clears
    for p in (inbox / "rejected").iterdir():
        p.unlink()
    ev = evaluate()
    assert ev.passed and ev.metadata["files_waiting"].value == 0


def test_a_quarantined_line_that_is_not_utf8_keeps_its_exact_bytes(tmp_path):
    """Issue 19: quarantine files replaced invalid bytes, so the line could not be recovered."""
    import base64

    from dataset_platform.ingest.files import ingest_file

    raw_line = b'{"url": "https://latin.test/1", "text": "cr\xe8me br\xfbl\xe9e"}'  # Latin-1, not UTF-8
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(json.dumps({"url": "https://good.test/1", "text": "Fine."}).encode() + b"\n" + raw_line + b"\n")
    summary = ingest_file(path, source="d", kind="jsonl", output_path=tmp_path / "batch.parquet")
    (q,) = [json.loads(line) for line in open(summary.quarantine_path, encoding="utf-8")]
    assert q["line"] == 2 and "\ufffd" in q["raw"]
    assert base64.b64decode(q["raw_base64"]) == raw_line
    assert _outcomes(tmp_path / "batch.parquet") == [("https://good.test/1", "fetched"),
                                                     (f"jsonl://{path.name}#line=2", "failed:bad_json")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jsonl", "warc"])
def test_a_bomb_in_the_inbox_the_whole_run_stays_small_and_releases_the_good_file(tmp_path, kind):
    """Issue 19, done-when: a gzip (JSONL) or WARC bomb beside a good file; `dataset-platform run` peaks under
    1 GB (every process of the run), says why the bomb stopped, and releases the good file's documents."""
    import random
    import subprocess
    import sys
    import zlib

    from graphkit import document

    wd = Workdir.at(tmp_path / "wd")
    inbox = wd.inbox("news")
    inbox.mkdir(parents=True)
    rng = random.Random(3)
    good = [{"url": f"https://news.test/{i}", "text": document(rng, "garden")} for i in range(20)]
    (inbox / "a-good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    if kind == "warc":
        _warc_with_bomb(inbox / "b-bomb.warc.gz", b"\0")
    else:
        with open(inbox / "b-bomb.jsonl.gz", "wb") as f:
            z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            for _ in range(1024):
                f.write(z.compress(bytes(1 << 20)))
            f.write(z.flush())
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("dataset: {name: bomb-test}\nsources:\n  - {name: news, kind: jsonl, paths: []}\n", encoding="utf-8")
    # in a process of its own, so that the peak is this run's: RUSAGE_CHILDREN is the largest of its descendants
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(r.stdout); print(r.stderr[-3000:], file=sys.stderr); "
             "print('PEAK_MB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "dataset_platform.cli", "run", "--config",
                        str(cfg), "--workdir", str(wd.root)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    peak = int(r.stdout.rsplit("PEAK_MB", 1)[1].split()[0])
    print(f"{kind} bomb: the run peaked at {peak} MB")
    assert peak < 1024, f"the run peaked at {peak} MB"
    con = duckdb.connect()
    try:
        shards = sql_str(str(wd.root / "releases" / "*" / "*" / "data" / "*.parquet"))
        released = con.sql(f"SELECT count(*) FROM read_parquet({shards}) "
                           "WHERE url LIKE 'https://news.test/%'").fetchall()[0][0]
        rows = con.sql(f"SELECT detail FROM {read_layer(wd, 'crawl_log')} "
                       "WHERE outcome = 'failed:corrupt_file'").fetchall()
        detail = rows[0][0] if rows else None
    finally:
        con.close()
    assert released == 20
    assert detail and ("decompression bomb" in detail or "header line longer" in detail), detail


def test_empty_files_of_different_kinds_each_get_their_own_outcome(tmp_path):
    """Issue 19: empty files all hashed alike, so the second one was taken for the first (already landed)."""
    cfg, wd, inbox = _setup(tmp_path)
    (inbox / "a-empty.jsonl").write_bytes(b"")
    (inbox / "b-empty.parquet").write_bytes(b"")
    _jsonl(inbox / "c-good.jsonl", "https://good.test/1")
    logs: list[str] = []
    result = materialise_raw(cfg, wd, logs.append)
    assert _urls(wd) == ["https://good.test/1"]
    assert result.counters["sources"]["d"]["refused_files"] == []
    # each lands under an id of its own: the JSONL with no record, the "Parquet" file as corrupt
    assert {p.name for p in (inbox / "processed").iterdir()} == {"a-empty.jsonl", "b-empty.parquet", "c-good.jsonl"}
    con = duckdb.connect()
    try:
        log = con.sql(f"SELECT url, outcome FROM {read_layer(wd, 'crawl_log')} ORDER BY url").fetchall()
    finally:
        con.close()
    assert log == [("https://good.test/1", "fetched"), ("parquet://b-empty.parquet", "failed:corrupt_file")]


def test_a_file_name_with_a_newline_stays_on_one_log_line(tmp_path):
    cfg, wd, inbox = _setup(tmp_path)
    _jsonl(inbox / "two\nlines.jsonl", "https://good.test/1")
    logs: list[str] = []
    materialise_raw(cfg, wd, logs.append)
    assert _urls(wd) == ["https://good.test/1"]
    assert all("\n" not in m for m in logs), [m for m in logs if "\n" in m]
