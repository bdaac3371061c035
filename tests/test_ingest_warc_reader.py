"""The fast WARC reader (dataset_platform/ingest/readers/warc.py) lands what warcio lands.

Every file here goes through ``ingest_warc`` (the fast reader, then warcio from wherever it
stopped) and through ``_ingest_warcio`` (warcio alone, the reference); the landed batches, the
skipped counts and the errors must be the same. Files: the shared corpus WARCs, WARCs written here
with the quirks the fast reader leaves to warcio, and damaged copies (cut at many places, bytes
flipped). Regular files must not need warcio at all.
"""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_CORPUS, shared_corpus

from dataset_platform.ingest.batchfile import BatchWriter
from dataset_platform.ingest.files import IngestSummary
from dataset_platform.ingest.readers import warc

_WARC_DIR = SHARED_CORPUS / "warc"
CORPUS = sorted(p.name for p in _WARC_DIR.glob("*.w*") if ".warc" in p.name) if _WARC_DIR.is_dir() else ["(absent)"]
MAX_BODY = 4096  # small, so that too_large is exercised too


def land(path: Path, reader, out: Path) -> tuple[list[dict], tuple]:
    s = IngestSummary(path=str(path), kind="warc")
    w = BatchWriter(out, s, lambda _m: None, "t", path.name)
    reader(path, w, s, MAX_BODY)
    w.commit()
    return pq.read_table(out).to_pylist(), (s.records, s.outcomes, s.skipped, s.errors)


def assert_same(path: Path, tmp_path: Path) -> tuple:
    fast = land(path, warc.ingest_warc, tmp_path / "fast.parquet")
    slow = land(path, warc._ingest_warcio, tmp_path / "slow.parquet")
    assert fast == slow, path.name
    return fast


def fast_stops_at(path: Path, tmp_path: Path) -> int | None:
    s = IngestSummary(path=str(path), kind="warc")
    w = BatchWriter(tmp_path / "probe.parquet", s, lambda _m: None, "t", path.name)
    try:
        return warc._ingest_fast(path, w, s, MAX_BODY)
    finally:
        w.abort()


# ----------------------------------------------------------------------------- files written here


def http_block(status: str, headers: list[tuple[str, str]], body: bytes, eol: bytes = b"\r\n") -> bytes:
    lines = [f"HTTP/1.1 {status}".encode(), *(f"{k}: {v}".encode() for k, v in headers)]
    return eol.join(lines) + eol + eol + body


def record(rtype: str, uri: str | None, block: bytes, *, version: str = "WARC/1.0",
           extra: list[bytes] = (), date: str = "2026-01-02T03:04:05Z") -> bytes:
    head = [version.encode(), f"WARC-Type: {rtype}".encode()]
    if uri is not None:
        head.append(f"WARC-Target-URI: {uri}".encode())
    head += [f"WARC-Date: {date}".encode(), *extra, f"Content-Length: {len(block)}".encode()]
    return b"\r\n".join(head) + b"\r\n\r\n" + block + b"\r\n\r\n"


PAGE = "<html><head><title>Café</title></head><body><p>Grüße aus dem Garten.</p></body></html>".encode()


def regular_records() -> list[bytes]:
    ok = http_block("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Set-Cookie", "a=b"),
                               ("ETag", '"e1"')], PAGE)
    chunked = http_block("200 OK", [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")],
                         b"%x\r\n" % len(PAGE) + PAGE + b"\r\n0\r\n\r\n")
    return [
        record("warcinfo", None, b"software: test\r\n"),
        record("response", "http://w.test/ok", ok),
        record("request", "http://w.test/ok", b"GET /ok HTTP/1.1\r\nHost: w.test\r\n\r\n"),
        record("response", "http://w.test/gz", http_block(
            "200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], gzip.compress(PAGE, mtime=0))),
        record("response", "http://w.test/chunked", chunked),
        record("response", "http://w.test/big", http_block("200 OK", [("Content-Type", "text/html")], b"x" * 5000)),
        record("response", "http://w.test/moved", http_block("301 Moved", [("Location", "/new")], b"")),
        record("response", "http://w.test/no-status", b"HTTP/1.1\r\n\r\n"),
        record("revisit", "http://w.test/ok", b"",
               extra=[b"WARC-Profile: http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"]),
        record("revisit", "http://w.test/ok2", http_block("304 Not Modified", [("ETag", '"e2"')], b"")),
        record("resource", "http://w.test/res", PAGE, extra=[b"Content-Type: text/html"]),
        record("resource", "dns:w.test", b"w.test. 300 IN A 10.0.0.1", extra=[b"Content-Type: text/dns"]),
        record("metadata", "http://w.test/ok", b"via: x\r\n"),
        record("response", "http://w.test/folded", http_block(
            "200 OK", [("Content-Type", "text/html"), ("X-Long", "a")], PAGE).replace(
                b"X-Long: a\r\n", b"X-Long: a\r\n   b\r\n\tc\r\n")),
        record("response", "http://w.test/latin1", http_block("200 OK", [("Content-Type", "text/html")], PAGE).replace(
            b"Content-Type", b"X-Name: caf\xe9\r\nContent-Type")),
        record("response", "http://w.test/lf", http_block("200 OK", [("Content-Type", "text/html")], PAGE, eol=b"\n")),
        record("response", "http://w.test/bad-date", http_block("200 OK", [("Content-Type", "text/html"),
                                                                           ("Date", "Tue, 15 Nov 1994 08:12:31 GMT")],
                                                                PAGE), date="yesterday"),
    ]


def write(path: Path, records: list[bytes], *, gz: bool, members: str = "each") -> Path:
    if not gz:
        path.write_bytes(b"".join(records))
    elif members == "each":
        path.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in records))
    else:  # one gzip member holding every record
        path.write_bytes(gzip.compress(b"".join(records), mtime=0))
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_regular_files_are_read_by_the_fast_reader_alone(tmp_path, gz):
    path = write(tmp_path / ("r.warc.gz" if gz else "r.warc"), regular_records(), gz=gz)
    assert fast_stops_at(path, tmp_path) is None
    recs, (_, _, skipped, errors) = assert_same(path, tmp_path)
    assert not errors and skipped == {"warcinfo": 1, "request": 1, "metadata": 1, "resource:non_http_uri": 1}
    got = {r["url"]: r for r in recs}
    assert got["http://w.test/chunked"]["html"] == PAGE.decode() and got["http://w.test/gz"]["html"] == PAGE.decode()
    assert got["http://w.test/big"]["outcome"] == "too_large"
    assert got["http://w.test/folded"]["headers"].count("a   b\\tc") == 1  # continuation lines appended as they are
    assert '"x-name": "café"' in got["http://w.test/latin1"]["headers"]  # not UTF-8: Latin-1, as warcio
    assert got["http://w.test/lf"]["outcome"] == "fetched" and got["http://w.test/lf"]["html"] == PAGE.decode()
    assert got["http://w.test/bad-date"]["fetched_at"] == "1994-11-15T08:12:31Z"
    assert got["http://w.test/no-status"]["outcome"] == "failed:bad_record"


QUIRKS = {
    # what warcio reads in its own way: the fast reader hands the file over at that record, or
    # reads it as warcio does ("read fast")
    "bracketed uri with a space (read fast)": record("response", "<http://w.test/a b>", http_block("200 OK", [], PAGE)),
    "two target uris, one fixed": record("response", "http://w.test/x y", http_block("200 OK", [], PAGE),
                                         extra=[b"WARC-Target-URI: http://w.test/other"]),
    "version with a trailing space": record("response", "http://w.test/v", http_block("200 OK", [], PAGE),
                                            version="WARC/1.0 "),
    "warc header continued (read fast)": record("response", "http://w.test/c", http_block("200 OK", [], PAGE),
                                    extra=[b"X-Note: one", b" two"]),
    "blank-looking warc header line": record("response", "http://w.test/b", http_block("200 OK", [], PAGE),
                                             extra=[b"   "]),
    "bare LF in warc headers": record("response", "http://w.test/lf", http_block("200 OK", [], PAGE),
                                      extra=[b"X-A: 1\nX-B: 2"]),
    "content length not digits": record("response", "http://w.test/n", http_block("200 OK", [], PAGE)).replace(
        b"Content-Length: ", b"Content-Length: +"),
    "no target uri": record("response", None, http_block("200 OK", [], PAGE)),
    "no crlf after the block": record("response", "http://w.test/t", http_block("200 OK", [], PAGE))[:-4],
    "extra blank lines": record("response", "http://w.test/e", http_block("200 OK", [], PAGE)) + b"\r\n\r\n",
    "arc-like garbage": b"filedesc://x.arc 0.0.0.0 20260101000000 text/plain 10\r\n1 0 test\r\n\r\n",
    "warc 0.18 (read fast)": record("response", "http://w.test/old", http_block("200 OK", [], PAGE),
                                    version="WARC/0.18"),
}


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
@pytest.mark.parametrize("layout", ["members", "plain", "one member"])
def test_quirks_are_handed_to_warcio_at_their_record(tmp_path, quirk, layout):
    records = [*regular_records()[:3], QUIRKS[quirk], *regular_records()[3:6]]
    path = write(tmp_path / ("q.warc" if layout == "plain" else "q.warc.gz"), records, gz=layout != "plain",
                 members="one" if layout == "one member" else "each")
    stop = fast_stops_at(path, tmp_path)
    if quirk.endswith("(read fast)") or (quirk, layout) == ("extra blank lines", "plain"):
        assert stop is None  # (uncompressed, warcio skips blank lines between records: so does the reader)
    elif layout == "one member":
        assert stop == 0
    else:  # the fast reader took the records before it
        data = path.read_bytes()
        before = (b"".join(gzip.compress(r, mtime=0) for r in records[:3]) if layout == "members"
                  else b"".join(records[:3]))
        assert stop == len(before) and data.startswith(before)
    assert_same(path, tmp_path)


def test_a_member_too_large_to_hold_goes_to_warcio(tmp_path, monkeypatch):
    monkeypatch.setattr(warc, "_FAST_MAX_UNIT", 4000)  # a bound, not a behaviour: small for the test
    records = regular_records()
    path = write(tmp_path / "big.warc.gz", records, gz=True)
    stop = fast_stops_at(path, tmp_path)
    big = next(i for i, r in enumerate(records) if b"w.test/big" in r)
    assert stop == len(b"".join(gzip.compress(r, mtime=0) for r in records[:big]))
    assert_same(path, tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_damaged_copies_land_as_warcio_lands_them(tmp_path, gz):
    """Cut at many places, single bits flipped, bytes inserted: the same batch and errors."""
    data = write(tmp_path / "src", regular_records(), gz=gz).read_bytes()
    rng = random.Random(11)
    cases = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 60))]
    for _ in range(40):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        cases.append(bytes(flipped))
    for _ in range(15):
        at = rng.randrange(len(data))
        cases.append(data[:at] + bytes([rng.choice(b"\r\n :<>\x00\xff")]) + data[at:])
    path = tmp_path / ("d.warc.gz" if gz else "d.warc")
    damaged = 0
    for case in cases:
        path.write_bytes(case)
        _, (_, _, _, errors) = assert_same(path, tmp_path)
        damaged += bool(errors)
    assert damaged > len(cases) // 2  # most copies are damaged (the test tests the damaged path)


def test_a_corrupt_member_mid_file_keeps_warcio_s_error(tmp_path):
    records = regular_records()
    path = write(tmp_path / "c.warc.gz", records, gz=True)
    members = [gzip.compress(r, mtime=0) for r in records]
    at = len(b"".join(members[:4]))
    data = bytearray(path.read_bytes())
    data[at + len(members[4]) - 6] ^= 0x01  # the member's CRC
    path.write_bytes(bytes(data))
    assert fast_stops_at(path, tmp_path) == at
    recs, (_, _, _, errors) = assert_same(path, tmp_path)
    assert recs[-1]["outcome"] == "failed:corrupt_file" and recs[-1]["url"].endswith(f"#offset={at}")
    assert "incorrect data check" in errors[0]
    zlib.decompress(bytes(data[:at]), wbits=31)  # the members before it are whole


def test_warcio_taking_over_mid_file_reads_as_a_pass_from_the_start(tmp_path):
    """warcio reads 16 KiB blocks: a member whose checksum is wrong fails in the read that reaches its
    end. Taking over at that member, warcio must read the same blocks as from the start, or the error
    (and so the landed detail) comes at another point of the record."""
    rng = random.Random(5)
    records = [record("response", f"http://w.test/{i}", http_block("200 OK", [("Content-Type", "image/png")],
                                                                   rng.randbytes(6000))) for i in range(8)]
    members = [gzip.compress(r, mtime=0) for r in records]
    starts = [len(b"".join(members[:i])) for i in range(len(members) + 1)]
    k = next(i for i in range(1, len(members)) if starts[i] // 16384 != (starts[i + 1] - 1) // 16384)
    data = bytearray(b"".join(members))
    data[starts[k + 1] - 6] ^= 0x01  # the CRC of a member that a 16 KiB boundary cuts
    path = tmp_path / "span.warc.gz"
    path.write_bytes(bytes(data))
    assert fast_stops_at(path, tmp_path) == starts[k]
    recs, (_, _, _, errors) = assert_same(path, tmp_path)
    assert recs[-1]["url"].endswith(f"#offset={starts[k]}") and f"http://w.test/{k}" in errors[0]


# ----------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_warcs_land_as_warcio_lands_them(name, tmp_path):
    path = shared_corpus("warc") / name
    assert_same(path, tmp_path)
    stop = fast_stops_at(path, tmp_path)
    if name.startswith("clipped"):  # cut inside its only gzip member
        assert stop == 0
    else:
        assert stop is None, f"{name}: the fast reader should read it whole"
