"""Crawl throughput benchmark: a real crawl (``python -m crawlers.run``) of a generated local site.

    python bench/crawl.py --pages 5000                      # threaded http.server, concurrency 16
    python bench/crawl.py --pages 5000 --server asyncio     # a leaner asyncio server, same pages
    python bench/crawl.py --pages 5000 --concurrency 32

Generates ``--pages`` HTML pages in memory (fixed seed: pseudo-words, nothing copied; 3-8
paragraphs, about 3 KB each) linked as a tree of fan-out 10 from ``/`` plus 3 random links per
page (so most links are duplicates the spider must drop), serves them on 127.0.0.1 from this
process, and runs ONE crawl of the whole site in a child process - the same command
``run_crawl`` starts - with politeness off (no download delay, robots.txt not read). The child is
reaped with ``os.wait4``, so the peak memory printed is the crawl's alone (its max RSS, from the
OS) and its CPU time is known: crawl CPU close to the wall time means the crawler is the
bottleneck, not the server (this process's own CPU time is the server's).

Prints one Markdown row for BENCHMARKS.md. pages/s is pages fetched per second of the crawl
(from the crawl's summary: Scrapy start-up included, interpreter start-up not); "wall" is the
child process from start to exit. Scrapy's log goes to ``bench/out/crawl-<pages>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import machine, paragraphs  # bench/common.py (the script folder is on sys.path)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from dataset_platform.ingest.crawl import SUMMARY_PREFIX, CrawlSpec, spec_path_for

FANOUT = 10
RANDOM_LINKS = 3


def _path(i: int) -> str:
    return "/" if i == 0 else f"/p/{i}.html"


def generate(n: int) -> dict[str, bytes]:
    """path -> HTML body of ``n`` pages (page 0 is ``/``)."""
    rng = random.Random(11)
    pages: dict[str, bytes] = {}
    for i in range(n):
        children = [c for c in range(FANOUT * i + 1, FANOUT * i + FANOUT + 1) if c < n]
        links = [_path(c) for c in children] + [_path(rng.randrange(n)) for _ in range(RANDOM_LINKS)]
        pars = [f"<p>{p}</p>" for p in paragraphs(rng)]
        nav = "".join(f'<li><a href="{h}">link {k}</a></li>' for k, h in enumerate(links))
        pages[_path(i)] = (
            f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Page {i}</title></head>"
            f"<body><nav><ul>{nav}</ul></nav><article><h1>Page {i}</h1>{''.join(pars)}</article>"
            "<footer>Copyright Bench Site.</footer></body></html>"
        ).encode()
    return pages


class ThreadedServer:
    """``http.server.ThreadingHTTPServer`` (HTTP/1.1 keep-alive), one thread per connection."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found"
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AsyncioServer:
    """A minimal HTTP/1.1 keep-alive server on an asyncio loop in a thread (GET only)."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self._server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait()
        assert self._server is not None
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode("latin-1")
                body = self.pages.get(path)
                status = b"200 OK" if body is not None else b"404 Not Found"
                body = body if body is not None else b"not found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=5000, help="pages of the generated site (default 5000)")
    ap.add_argument("--server", choices=("threaded", "asyncio"), default="threaded")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent requests (default 16)")
    args = ap.parse_args(argv)

    pages = generate(args.pages)
    size_mb = sum(len(b) for b in pages.values()) / 1e6
    print(f"generated {args.pages} pages ({size_mb:.1f} MB of HTML); machine: {machine()}", file=sys.stderr)
    server = ThreadedServer(pages) if args.server == "threaded" else AsyncioServer(pages)
    OUT.mkdir(parents=True, exist_ok=True)
    log_path = OUT / f"crawl-{args.pages}.log"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
            spec = CrawlSpec(
                source="bench", crawl_id="bench-1", start_urls=[f"http://127.0.0.1:{server.port}/"],
                allowed_domains=["127.0.0.1"], output_path=str(Path(tmp) / "bench-1.jsonl.gz"),
                max_pages=args.pages + 10, max_depth=20, concurrency=args.concurrency, download_delay=0.0,
                obey_robots=False, timeout_s=3600, allow_addresses=["127.0.0.1"],
                trap_max_per_pattern=args.pages + 10,  # every page has the shape /p/{n}.html
            )
            spec_file = spec_path_for(spec.output_path)
            spec_file.write_text(spec.to_json(), encoding="utf-8")
            server_cpu0 = time.process_time()
            t0 = time.perf_counter()
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "crawlers.run", str(spec_file)], cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=log, text=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
                stdout = proc.stdout.read() if proc.stdout else ""
                if proc.stdout:
                    proc.stdout.close()
                _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: this child's own max RSS
                proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            server_cpu = time.process_time() - server_cpu0
    finally:
        server.close()
    if proc.returncode != 0:
        print(f"the crawl failed with exit code {proc.returncode}; see {log_path}", file=sys.stderr)
        return 1
    summary = json.loads(next(line for line in stdout.splitlines() if line.startswith(SUMMARY_PREFIX))
                         [len(SUMMARY_PREFIX):])
    fetched = summary["outcomes"].get("fetched", 0)
    if fetched != args.pages:
        print(f"expected {args.pages} pages fetched, got outcomes {summary['outcomes']}", file=sys.stderr)
        return 1
    elapsed = summary["elapsed_s"]
    crawl_cpu = usage.ru_utime + usage.ru_stime
    rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    print(f"crawl: {summary['pages']} records, {fetched} fetched, {elapsed:.2f} s in the crawl, {wall:.2f} s wall; "
          f"crawl CPU {crawl_cpu:.2f} s ({100 * crawl_cpu / wall:.0f}% of wall), server CPU {server_cpu:.2f} s",
          file=sys.stderr)
    print("| what | command | data | seconds | pages/s | crawl CPU s | peak RSS MB |")
    print("|---|---|---|---:|---:|---:|---:|")
    print(f"| crawl, {args.server} server, concurrency {args.concurrency} | `python bench/crawl.py --pages {args.pages}"
          f"{' --server asyncio' if args.server == 'asyncio' else ''}"
          f"{f' --concurrency {args.concurrency}' if args.concurrency != 16 else ''}` | {args.pages} pages, "
          f"{size_mb:.1f} MB HTML, {summary['pages']} records | {elapsed:.2f} | {fetched / elapsed:.0f} | "
          f"{crawl_cpu:.1f} | {rss_mb:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
