"""WARC ingestion benchmark: a generated WARC through ``dataset_platform.ingest.files.ingest_file``.

    python bench/ingest.py --records 20000          # generate a gzip WARC in a temp dir and time ingest

Writes ``--records`` HTTP response records of synthetic HTML pages (generated here from a fixed
seed: pseudo-words, nothing copied) with warcio's writer, one gzip member per record as crawlers
write them, into a temporary directory. The mix: about 1 in 10 pages with a gzip Content-Encoding,
1 in 20 a 404, 1 in 25 a redirect, 1 in 50 an image. Then ``ingest_file`` runs in a child process
(the same call the pipeline makes), so the peak memory printed is the ingest's alone (the child's
max RSS, from the OS). Prints one Markdown row for BENCHMARKS.md; MB/s is compressed input MB
(10^6 bytes) per second.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import machine, page  # bench/common.py (the script folder is on sys.path)



def generate(path: Path, n: int) -> dict[str, int]:
    """A gzip WARC of ``n`` response records at ``path``; returns the expected outcome counts."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(7)
    expected: dict[str, int] = {}
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i in range(n):
            url = f"http://bench.localhost/p/{i}"
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Server", "bench")]
            if i % 50 == 49:
                status, outcome = "200 OK", "not_html"
                headers = [("Content-Type", "image/png")]
                body = bytes(rng.getrandbits(8) for _ in range(2048))
            elif i % 25 == 24:
                status, outcome = "301 Moved Permanently", "redirected"
                headers = [("Location", f"/p/{i}/")]
                body = b""
            elif i % 20 == 19:
                status, outcome = "404 Not Found", "failed:http_404"
                body = b"<html><body><p>Not found.</p></body></html>"
            else:
                status, outcome = "200 OK", "fetched"
                body = page(rng, i, charset_meta=True).encode("utf-8")
                if i % 10 == 3:
                    body = gzip.compress(body, mtime=0)
                    headers.append(("Content-Encoding", "gzip"))
            headers.append(("Content-Length", str(len(body))))
            expected[outcome] = expected.get(outcome, 0) + 1
            rec = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body),
                http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
                warc_headers_dict={
                    "WARC-Date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_767_225_600 + i)),
                    "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>",
                },
            )
            writer.write_record(rec)
    return expected


def _child(warc: str, out: str) -> None:
    """Ingest one WARC (in this process) and print its figures as JSON."""
    from dataset_platform.ingest.files import ingest_file

    t0 = time.perf_counter()
    s = ingest_file(warc, source="bench", kind="warc", output_path=out)
    seconds = time.perf_counter() - t0
    print(json.dumps({"records": s.records, "outcomes": s.outcomes, "bytes": s.bytes_read, "seconds": seconds,
                      "errors": s.errors}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20000, help="response records to generate (default 20000)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(*args._child)
        return 0

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        warc = Path(tmp) / f"bench-{args.records}.warc.gz"
        print(f"generating {args.records} response records ...", file=sys.stderr)
        expected = generate(warc, args.records)
        size = warc.stat().st_size
        print(f"{warc.name}: {size / 1e6:.1f} MB; machine: {machine()}", file=sys.stderr)
        out = Path(tmp) / "batch.jsonl.gz"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(warc), str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: this child's own max RSS
        if os.waitstatus_to_exitcode(status) != 0:
            print("ingest failed", file=sys.stderr)
            return 1
        fig = json.loads(stdout.strip().splitlines()[-1])
        if fig["outcomes"] != expected or fig["errors"]:
            print(f"unexpected result: {fig['outcomes']} (expected {expected}), errors {fig['errors']}",
                  file=sys.stderr)
            return 1
        rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
        secs = fig["seconds"]
        print(f"batch: {out.stat().st_size / 1e6:.1f} MB, outcomes {fig['outcomes']}", file=sys.stderr)
        print("| what | command | input | seconds | records/s | MB/s | peak RSS MB |")
        print("|---|---|---|---:|---:|---:|---:|")
        print(f"| WARC -> raw batch (warcio, charset detection, gzip JSONL) | `python bench/ingest.py --records "
              f"{args.records}` | {fig['records']} response records, {size / 1e6:.1f} MB gzip WARC | {secs:.2f} "
              f"| {fig['records'] / secs:.0f} | {size / 1e6 / secs:.2f} | {rss_mb:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
