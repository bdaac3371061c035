"""Ingest benchmark: JSONL, Parquet and WARC dumps landed as a raw batch, then loaded.

    python bench/ingest.py --docs 200000                      # every kind, this checkout
    python bench/ingest.py --docs 200000 --baseline 85beaa2   # and the code of a commit, same files

Generates, from a fixed seed, news-sized documents out of the shared corpus's real text (the BBC
articles of neardup/bbc_news and the English texts of webextract, as ``bench/clean.py``: each
document a run of paragraphs of one source text; the corpus is found through
``DATASET_PLATFORM_CORPUS`` or ``../shared/corpus`` beside the repo), and writes them as

* ``jsonl``: a JSON Lines dump (url, title, text, date; the date mapped to ``fetched_at``), with
  one line in 5000 that is not JSON and one in 5000 without text (quarantined: the slow path);
* ``parquet``: the same records in a Parquet file (zstd, row groups of 20 000 rows);
* ``warc``: a gzip WARC (one gzip member per record, as crawlers write) of HTML pages built
  from the same texts; about 1 in 10 with a gzip Content-Encoding, 1 in 20 a 404, 1 in 25 a
  redirect, 1 in 50 an image.

Each step runs in a child process (the calls the pipeline makes), so its figures are its own:
**landing** (``ingest_file``: the file -> a raw batch) and **loading** (``load_batch``: the batch
-> the typed ``_batch`` table that crawl_log and the merge read). MB/s is MB (10^6 bytes) of the
input file per second of wall time; "per core" divides by the process's CPU seconds (user + sys,
from the OS) instead, so it holds whatever the number of threads; peak RSS is the child's own
high-water mark (VmHWM). With ``--baseline REV`` the same files go through the package as it was
at that commit (``git archive`` into a temporary folder, put first on the children's PYTHONPATH),
each kind's runs interleaved, for before/after figures from one run. Outcome counts are checked
against what was generated. Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import (  # bench/common.py (the script folder is on sys.path)
    machine,
    vm_hwm_mb,
)

REPO = Path(__file__).resolve().parents[1]
KINDS = ("jsonl", "parquet", "warc")
FIELDS = {"fetched_at": "date"}
BAD_EVERY = 5000  # one line in this many is not JSON, one more has no text


# ----------------------------------------------------------------------------- generated input


def documents(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` (title, text) pairs: runs of paragraphs of the corpus's real texts, news-sized (600 to
    3000 characters and the paragraph that crosses that bound)."""
    from clean import corpus_dir, source_texts  # bench/clean.py

    sources = [s for s in source_texts(corpus_dir()) if len(s) >= 2]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        paras = rng.choice(sources)
        start = rng.randint(0, len(paras) // 2)
        size = rng.randint(600, 3000)  # news-sized: about 1.8 KB of text on average
        body = [paras[start]]
        for p in paras[start + 1:]:
            if sum(map(len, body)) >= size:
                break
            body.append(p)
        out.append((body[0][:90], "\n".join(body)))
    return out


def _date(i: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_767_225_600 + i))


def write_jsonl(path: Path, docs: list[tuple[str, str]]) -> dict[str, int]:
    expected = {"fetched": 0, "failed:bad_json": 0, "failed:bad_record": 0}
    with open(path, "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(docs):
            rec = {"url": f"https://news.bench.localhost/a/{i}", "title": title, "text": text, "date": _date(i)}
            if i % BAD_EVERY == BAD_EVERY - 1:
                f.write(json.dumps(rec, ensure_ascii=False)[:-40] + "\n")  # cut short: not JSON
                expected["failed:bad_json"] += 1
                continue
            if i % BAD_EVERY == BAD_EVERY - 2:
                del rec["text"]
                expected["failed:bad_record"] += 1
            else:
                expected["fetched"] += 1
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return expected


def write_parquet(path: Path, docs: list[tuple[str, str]]) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "url": [f"https://news.bench.localhost/a/{i}" for i in range(len(docs))],
        "title": [t for t, _ in docs],
        "text": [x for _, x in docs],
        "date": pa.array([1_767_225_600 + i for i in range(len(docs))], pa.timestamp("s", tz="UTC")),
    })
    pq.write_table(table, path, row_group_size=20_000, compression="zstd")
    return {"fetched": len(docs)}


def _html(title: str, text: str) -> str:
    from html import escape

    pars = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n"))
    nav = "".join(f'<li><a href="/s/{w}">{w}</a></li>' for w in ("home", "world", "business", "sport", "tech"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f"<body><nav><ul>{nav}</ul></nav><article><h1>{escape(title)}</h1>{pars}</article>"
            "<footer>Copyright Bench News. All rights reserved.</footer></body></html>")


def write_warc(path: Path, docs: list[tuple[str, str]]) -> dict[str, int]:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(7)
    expected: dict[str, int] = {}
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i, (title, text) in enumerate(docs):
            url = f"https://news.bench.localhost/a/{i}"
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Server", "bench")]
            if i % 50 == 49:
                status, outcome = "200 OK", "not_html"
                headers = [("Content-Type", "image/png")]
                body = rng.randbytes(2048)
            elif i % 25 == 24:
                status, outcome = "301 Moved Permanently", "redirected"
                headers = [("Location", f"/a/{i}/")]
                body = b""
            elif i % 20 == 19:
                status, outcome = "404 Not Found", "failed:http_404"
                body = b"<html><body><p>Not found.</p></body></html>"
            else:
                status, outcome = "200 OK", "fetched"
                body = _html(title, text).encode("utf-8")
                if i % 10 == 3:
                    body = gzip.compress(body, mtime=0)
                    headers.append(("Content-Encoding", "gzip"))
            headers.append(("Content-Length", str(len(body))))
            expected[outcome] = expected.get(outcome, 0) + 1
            rec = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body),
                http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
                warc_headers_dict={"WARC-Date": _date(i),
                                   "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>"},
            )
            writer.write_record(rec)
    return expected


WRITERS = {"jsonl": ("dump.jsonl", write_jsonl), "parquet": ("dump.parquet", write_parquet),
           "warc": ("dump.warc.gz", write_warc)}


# ----------------------------------------------------------------------------- the measured children


def _child_land(kind: str, inp: str, folder: str) -> None:
    """Land one file as the pipeline does (the batch named as the pipeline names it)."""
    from dataset_platform.ingest import files

    batch_id = "bench-0123456789abcdef"
    name_for = getattr(files, "batch_file_name", None)  # the code before 2026-12 landed .jsonl.gz only
    out = Path(folder) / (name_for(batch_id) if name_for else f"{batch_id}.jsonl.gz")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    s = files.ingest_file(inp, source="bench", kind=kind, output_path=out,
                          fields=FIELDS if kind != "warc" else None)
    # the import above is not part of the landing: take its CPU time off
    base = r0.ru_utime + r0.ru_stime
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime - base,
                      "rss_mb": vm_hwm_mb(), "records": s.records, "outcomes": s.outcomes, "errors": s.errors,
                      "batch": str(out), "batch_bytes": out.stat().st_size}))


def _child_load(batch: str) -> None:
    from dataset_platform.ingest.load import Batch, load_batch
    from dataset_platform.storage import memory_connection

    con = memory_connection()
    p = Path(batch)
    crawl_id = p.name.split(".", 1)[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    counts = load_batch(con, Batch("bench", crawl_id, p))
    base = r0.ru_utime + r0.ru_stime
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime - base,
                      "rss_mb": vm_hwm_mb(), "outcomes": counts}))
    con.close()


def _run_child(pythonpath: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _baseline_tree(rev: str, dest: Path) -> Path:
    """The package as it was at ``rev`` (``git archive`` of dataset_platform/ into ``dest``)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "dataset_platform"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000, help="documents (records) per file (default 100000)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds (default: all three)")
    ap.add_argument("--baseline", metavar="REV", help="also measure the package as it was at this commit")
    ap.add_argument("--runs", type=int, default=1, help="runs of each step; the median is printed (default 1)")
    ap.add_argument("--workdir", type=Path, help="keep the generated files here (default: a temporary folder)")
    ap.add_argument("--_land", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_load", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._land:
        _child_land(*args._land)
        return 0
    if args._load:
        _child_load(*args._load)
        return 0

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        ap.error(f"--kinds: expected some of {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        versions = {"this checkout": REPO}
        if args.baseline:
            versions = {f"{args.baseline} (before)": _baseline_tree(args.baseline, Path(tmp) / "baseline"),
                        "this checkout": REPO}
        print(f"building {args.docs} documents from the corpus ...", file=sys.stderr)
        docs = documents(args.docs)
        print(f"machine: {machine()}", file=sys.stderr)
        rows = []
        for kind in kinds:
            name, write = WRITERS[kind]
            inp = root / name
            t0 = time.perf_counter()
            expected = write(inp, docs)
            size = inp.stat().st_size
            print(f"{kind}: {inp.name} {size / 1e6:.1f} MB written in {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr)
            results: dict[str, list[tuple[dict, dict]]] = {v: [] for v in versions}
            for _ in range(args.runs):
                for label, tree in versions.items():  # interleaved: drift hits both alike
                    folder = root / f"out-{kind}-{len(results[label])}-{abs(hash(label)) % 10_000}"
                    folder.mkdir()
                    land = _run_child(tree, "--_land", kind, str(inp), str(folder))
                    load = _run_child(tree, "--_load", land["batch"])
                    if land["outcomes"] != expected or load["outcomes"] != expected:
                        raise SystemExit(f"{label} {kind}: outcomes {land['outcomes']} / {load['outcomes']}, "
                                         f"expected {expected}")
                    print(f"  {label}: land {land['seconds']:.2f}s (cpu {land['cpu']:.2f}), load "
                          f"{load['seconds']:.2f}s (cpu {load['cpu']:.2f}), batch "
                          f"{land['batch_bytes'] / 1e6:.1f} MB", file=sys.stderr)
                    results[label].append((land, load))
                    for f in folder.iterdir():
                        f.unlink()
                    folder.rmdir()
            for label, runs in results.items():
                rows.append(_row(kind, label, size, len(docs), runs))
            inp.unlink()
        mb = " (MB/s: input MB per second; per core: per CPU second)"
        print(f"\n{args.docs} documents per file; machine: {machine()}{mb}\n")
        print("| kind | code | input MB | records | landing s (cpu) | loading s (cpu) | landing MB/s (per core) "
              "| loading MB/s (per core) | total MB/s (per core) | total records/s per core | batch MB "
              "| peak RSS MB land / load |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(r)
    return 0


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _row(kind: str, label: str, size: int, n: int, runs: list[tuple[dict, dict]]) -> str:
    mb = size / 1e6
    ls, lc = _median([a["seconds"] for a, _ in runs]), _median([a["cpu"] for a, _ in runs])
    ds, dc = _median([b["seconds"] for _, b in runs]), _median([b["cpu"] for _, b in runs])
    rss = (max(a["rss_mb"] for a, _ in runs), max(b["rss_mb"] for _, b in runs))
    batch = runs[0][0]["batch_bytes"] / 1e6
    return (f"| {kind} | {label} | {mb:.1f} | {n} | {ls:.2f} ({lc:.2f}) | {ds:.2f} ({dc:.2f}) "
            f"| {mb / ls:.1f} ({mb / lc:.1f}) | {mb / ds:.1f} ({mb / dc:.1f}) "
            f"| {mb / (ls + ds):.1f} ({mb / (lc + dc):.1f}) | {n / (lc + dc):.0f} | {batch:.1f} "
            f"| {rss[0]:.0f} / {rss[1]:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
