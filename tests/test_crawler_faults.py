"""Real crawls (child processes) of sites that misbehave, recrawl conditionally, or get interrupted.

* server faults: 5xx then success, 5xx always, 429 with Retry-After, a hanging response, a
  truncated body, no reply at all, a refused connection - each URL's outcome and how many
  requests the server saw;
* the address guard at connect time (the reactor's resolver), with the request-level guard off;
* a conditional recrawl from the validators of a first crawl (304 to If-None-Match /
  If-Modified-Since, equal content hash, changed page);
* resumable crawls (``state_dir``): stopped cleanly at the timeout, and killed hard, then run
  again - every URL recorded once, no page fetched twice after a clean stop.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from crawlsite import Page, Site, by_url, html, path_of, records, send, spec

from crawlers.run import JOBDIR_ENTRIES, STOP_MARKER
from dataset_platform.ingest.crawl import (
    CrawlError,
    partial_path_for,
    run_crawl,
    spec_path_for,
)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ server faults


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    site = Site()
    with socket.socket() as sock:  # a port on 127.0.0.1 where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    calls: dict[str, int] = {}

    def counted(path: str) -> int:
        calls[path] = calls.get(path, 0) + 1
        return calls[path]

    def flaky(s: Site, h: Any) -> None:  # 503, 503, then 200
        if counted("/flaky") <= 2:
            send(h, 503, b"busy, try again")
        else:
            send(h, 200, html("Flaky but fine"))

    def busy(s: Site, h: Any) -> None:  # 429 asking for one second, then 200
        if counted("/busy") == 1:
            send(h, 429, b"slow down", headers={"Retry-After": "1"})
        else:
            send(h, 200, html("Served after waiting"))

    def hang(s: Site, h: Any) -> None:  # longer than download_timeout_s; stops when the test ends
        s.stopping.wait(60)

    def truncated(s: Site, h: Any) -> None:  # promises 5000 bytes, sends 100, closes
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "5000")
        h.end_headers()
        h.wfile.write(b"<html><body>" + b"x" * 88)
        h.close_connection = True

    def no_reply(s: Site, h: Any) -> None:  # closes the connection without an answer
        h.close_connection = True

    links = ["/flaky", "/down", "/busy", "/busy-long", "/hang", "/truncated", "/no-reply",
             f"http://127.0.0.1:{dead_port}/gone", "/ok.html", "/secret/page.html"]
    site.routes.update({
        # robots.txt moved: the redirect is followed (as by browsers and Scrapy), its rules obeyed
        "/robots.txt": Page(b"", status=301, headers={"Location": "/moved/robots.txt"}),
        "/moved/robots.txt": Page(b"User-agent: *\nDisallow: /secret/\n", "text/plain"),
        "/secret/page.html": Page(html("Secret")),
        "/": Page(html("Home", links)),
        "/flaky": flaky,
        "/down": Page(b"down for maintenance", "text/plain", status=503),
        "/busy": busy,
        "/busy-long": Page(b"come back tomorrow", "text/plain", status=429, headers={"Retry-After": "3600"}),
        "/hang": hang,
        "/truncated": truncated,
        "/no-reply": no_reply,
        "/ok.html": Page(html("OK")),
    })
    # the dead port is another port of 127.0.0.1: allowed by name (the crawl's own port only otherwise)
    s = spec(tmp_path_factory.mktemp("faults"), [site.base + "/"], retry_times=2, download_timeout_s=1,
             retry_backoff_s=0.05, allow_addresses=["127.0.0.1", f"127.0.0.1:{dead_port}"])
    messages: list[str] = []
    summary = run_crawl(s, log=messages.append)
    try:
        yield {"site": site, "spec": s, "summary": summary, "messages": messages, "dead_port": dead_port,
               "recs": {path_of(u, site.base): r for u, r in by_url(records(s.output_path)).items()}}
    finally:
        site.close()


def test_every_faulty_url_has_its_outcome(faults: dict[str, Any]) -> None:
    recs = faults["recs"]
    dead = f"http://127.0.0.1:{faults['dead_port']}/gone"
    assert {p: r["outcome"] for p, r in recs.items()} == {
        "/": "fetched",
        "/flaky": "fetched",
        "/down": "failed:http_503",
        "/busy": "fetched",
        "/busy-long": "failed:http_429",
        "/hang": "failed:timeout",
        "/truncated": "failed:connection_lost",
        "/no-reply": "failed:connection_lost",
        dead: "failed:connection_refused",
        "/ok.html": "fetched",
        "/secret/page.html": "robots_disallowed",
    }
    assert "/secret/page.html" not in faults["site"].paths()
    assert recs["/down"]["status"] == 503 and recs["/busy-long"]["status"] == 429
    for p in ("/hang", "/truncated", "/no-reply", dead):
        r = recs[p]
        assert r["status"] is None and r["fetch_url"] and r["detail"], p
        assert r["html"] is None and r["body_bytes"] is None
    assert recs["/truncated"]["detail"].startswith("data loss")
    assert "Flaky but fine" in recs["/flaky"]["html"]


def test_retries_back_off_and_stop_after_retry_times(faults: dict[str, Any]) -> None:
    site: Site = faults["site"]
    retry_times = faults["spec"].retry_times
    assert site.count("/flaky") == 3  # 503, 503, 200
    for p in ("/down", "/hang", "/truncated"):
        assert site.count(p) == retry_times + 1, p
    # Twisted's connection pool itself retries once a request that got no answer on a REUSED
    # keep-alive connection: each of the retry_times + 1 attempts reaches the server once or twice
    assert retry_times + 1 <= site.count("/no-reply") <= 2 * (retry_times + 1)
    assert site.count("/busy-long") == 1  # Retry-After beyond the limit: not retried
    busy = [h.at for h in site.hits if h.path == "/busy"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 0.95  # waited for Retry-After: 1
    down = [h.at for h in site.hits if h.path == "/down"]
    assert down[1] - down[0] >= 0.045 and down[2] - down[1] >= 0.095  # backoff 0.05 s, then 0.1 s
    assert faults["summary"].stats["failed_requests"] == 4  # hang, truncated, no reply, refused


def test_progress_is_reported_while_the_crawl_runs(faults: dict[str, Any]) -> None:
    progress = [m for m in faults["messages"] if "pages/s" in m]
    assert any("closed" not in m for m in progress), faults["messages"]  # a timed line (the crawl lasts > 2 s)
    assert progress[-1].endswith("(closed: finished)")
    assert any(m.startswith(f"crawl {faults['spec'].crawl_id}: started (pid ") for m in faults["messages"])


# ------------------------------------------------------------------ the resolver guard


def test_the_resolver_refuses_blocked_addresses_at_connect_time(tmp_path: Path) -> None:
    """With the request-level guard (AddressGuardMiddleware) switched off, the reactor's resolver
    (GuardedResolver) still refuses every connection to an address not allowed."""
    site = Site()
    other = None
    try:
        other = Site({"/x": Page(html("must not be fetched"))}, host="127.0.0.2", port=site.port)
    except OSError:
        pass
    site.routes["/"] = Page(html("Home", [f"http://127.0.0.2:{site.port}/x", f"http://localhost:{site.port}/z",
                                          "/ok.html"]))
    site.routes["/ok.html"] = Page(html("OK"))
    s = spec(tmp_path, [site.base + "/"], allowed_domains=[], retry_times=1, obey_robots=False)
    spec_file = spec_path_for(s.output_path)
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(s.to_json(), encoding="utf-8")
    script = tmp_path / "no_guard_middleware.py"
    script.write_text(
        "import sys\n"
        "import crawlers.run as run\n"
        "build = run.build_settings\n"
        "def without_guard(spec, out):\n"
        "    settings = build(spec, out)\n"
        "    mws = dict(settings.getdict('DOWNLOADER_MIDDLEWARES'))\n"
        "    mws['crawlers.middlewares.AddressGuardMiddleware'] = None\n"
        "    settings.set('DOWNLOADER_MIDDLEWARES', mws, priority='cmdline')\n"
        "    return settings\n"
        "run.build_settings = without_guard\n"
        "sys.exit(run.main())\n",
        encoding="utf-8",
    )
    try:
        proc = subprocess.run([sys.executable, str(script), str(spec_file)], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "AddressGuardMiddleware" not in proc.stderr.split("Enabled downloader middlewares", 1)[1].split("]")[0]
        recs = by_url(records(s.output_path))
        assert {u: (r["outcome"], r["detail"], r["fetch_url"]) for u, r in recs.items()} == {
            site.base + "/": ("fetched", None, site.base + "/"),
            site.base + "/ok.html": ("fetched", None, site.base + "/ok.html"),
            f"http://127.0.0.2:{site.port}/x": ("blocked_address", "127.0.0.2", None),
            f"http://localhost:{site.port}/z": ("blocked_address", "localhost", None),
        }
        if other is not None:
            assert other.hits == []
    finally:
        site.close()
        if other is not None:
            other.close()


# ------------------------------------------------------------------ conditional recrawl

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


class ChangingSite(Site):
    """Pages with an ETag, with Last-Modified only, with neither (static and changing), and one
    whose ETag changes between versions."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 1
        self.routes.update({
            "/": self._etagged("home", lambda: html("Home", ["/lm.html", "/static.html", "/changing.html",
                                                             "/etag-changed.html"]), versioned=False),
            "/lm.html": self._dated,
            "/static.html": Page(html("Static", [])),
            "/changing.html": lambda s, h: send(h, 200, html("Changing", [], f"<p>version {self.version}</p>")),
            "/etag-changed.html": self._etagged("tagged", lambda: html("Tagged", [], f"<p>v{self.version}</p>"),
                                                versioned=True),
        })

    def _etagged(self, name: str, body: Any, versioned: bool) -> Any:
        def handler(s: Site, h: Any) -> None:
            etag = f'"{name}-v{self.version if versioned else 1}"'
            if h.headers.get("If-None-Match") == etag:
                send(h, 304, b"", None, {"ETag": etag})
            else:
                send(h, 200, body(), headers={"ETag": etag})
        return handler

    def _dated(self, s: Site, h: Any) -> None:
        if h.headers.get("If-Modified-Since") == LAST_MODIFIED:
            send(h, 304, b"", None, {"Last-Modified": LAST_MODIFIED})
        else:
            send(h, 200, html("Dated", []), headers={"Last-Modified": LAST_MODIFIED})


def test_conditional_recrawl_from_the_validators_of_the_first_crawl(tmp_path: Path) -> None:
    site = ChangingSite()
    try:
        first = spec(tmp_path, [site.base + "/"], name="v1")
        run_crawl(first)
        batch1 = {path_of(u, site.base): r for u, r in by_url(records(first.output_path)).items()}
        assert {p: r["outcome"] for p, r in batch1.items()} == dict.fromkeys(
            ["/", "/lm.html", "/static.html", "/changing.html", "/etag-changed.html"], "fetched")
        known = tmp_path / "known.jsonl.gz"
        with gzip.open(known, "wt", encoding="utf-8") as f:
            for r in batch1.values():
                f.write(json.dumps({k: r[k] for k in ("url", "etag", "last_modified", "content_hash", "depth")}) + "\n")
            f.write("not json\n")  # an unreadable line is skipped
        hits_before = len(site.hits)
        site.version = 2
        second = spec(tmp_path, [site.base + "/"], name="v2", known_pages_path=str(known))
        summary = run_crawl(second)
        batch2 = {path_of(u, site.base): r for u, r in by_url(records(second.output_path)).items()}
    finally:
        site.close()
    got = {p: (r["outcome"], r["detail"], r["status"], r["depth"], r["referer"]) for p, r in batch2.items()}
    assert got == {
        "/": ("not_modified", "http_304", 304, 0, None),
        "/lm.html": ("not_modified", "http_304", 304, 1, None),  # revisited from the known pages
        "/static.html": ("not_modified", "content_hash", 200, 1, None),
        "/changing.html": ("fetched", None, 200, 1, None),
        "/etag-changed.html": ("fetched", None, 200, 1, None),
    }
    assert summary.outcomes == {"not_modified": 3, "fetched": 2}
    home, dated, static = batch2["/"], batch2["/lm.html"], batch2["/static.html"]
    assert home["etag"] == '"home-v1"' and home["content_hash"] == batch1["/"]["content_hash"]
    assert dated["last_modified"] == LAST_MODIFIED and dated["content_hash"] == batch1["/lm.html"]["content_hash"]
    assert home["body_bytes"] is None and home["html"] is None
    assert static["content_hash"] == batch1["/static.html"]["content_hash"] and static["html"] is None
    assert "version 2" in batch2["/changing.html"]["html"]
    assert batch2["/etag-changed.html"]["etag"] == '"tagged-v2"'
    sent = {h.path: h.headers for h in site.hits[hits_before:] if h.path != "/robots.txt"}
    assert sent["/"].get("if-none-match") == '"home-v1"'
    assert sent["/lm.html"].get("if-modified-since") == LAST_MODIFIED
    assert sent["/etag-changed.html"].get("if-none-match") == '"tagged-v1"'
    assert "if-none-match" not in sent["/static.html"] and "if-modified-since" not in sent["/static.html"]


# ------------------------------------------------------------------ resumable crawls


def _chain_site(pages: int, delay_s: float) -> Site:
    """/ -> /p/1.html; /p/<n>.html links to n+1 and n+2 (up to ``pages``); each page takes ``delay_s``."""
    def page(s: Site, h: Any) -> None:
        n = int(h.path.rsplit("/", 1)[1].split(".")[0])
        s.stopping.wait(delay_s)
        send(h, 200, html(f"Page {n}", [f"/p/{m}.html" for m in (n + 1, n + 2) if m <= pages]))

    site = Site({"/": Page(html("Home", ["/p/1.html"]))})
    site.prefix_routes["/p/"] = page
    return site


def _chain_urls(site: Site, pages: int) -> set[str]:
    return {site.base + "/"} | {f"{site.base}/p/{n}.html" for n in range(1, pages + 1)}


def _job_files(job: Path) -> set[str]:
    return {p.name for p in job.iterdir()} if job.exists() else set()


def test_a_crawl_stopped_at_its_timeout_resumes_where_it_stopped(tmp_path: Path) -> None:
    pages = 40
    site = _chain_site(pages, delay_s=0.25)
    job = tmp_path / "job"
    s = spec(tmp_path, [site.base + "/"], state_dir=str(job), concurrency=2, max_depth=100,
             trap_max_per_pattern=1000, obey_robots=False, timeout_s=5)
    part = partial_path_for(s.output_path)
    try:
        with pytest.raises(CrawlError, match="timed out after 5 s and was stopped .*run the same spec again"):
            run_crawl(s)
        assert not Path(s.output_path).exists()
        kept = by_url(records(part))  # a complete gzip file: the pipeline closed it
        assert 0 < len(kept) < pages + 1
        assert STOP_MARKER in _job_files(job) and "spider.state" in _job_files(job)
        fetched_before = len(site.hits)

        summary = run_crawl(s.model_copy(update={"timeout_s": 60}))  # the same crawl, run again
    finally:
        site.close()
    recs = by_url(records(s.output_path))
    assert set(recs) == _chain_urls(site, pages)  # every URL, once (by_url fails on a second record)
    assert all(r["outcome"] == "fetched" for r in recs.values())
    for u, r in kept.items():
        assert recs[u] == r  # the records of the first run, as they were
    paths = [h.path for h in site.hits]
    assert len(paths) == len(set(paths)) == pages + 1  # no page fetched twice
    assert len(site.hits) - fetched_before == pages + 1 - len(kept)
    assert summary.pages == pages + 1 and summary.stats["resumed_records"] == len(kept)
    assert "resume_duplicates" not in summary.stats
    assert not part.exists() and _job_files(job) & {*JOBDIR_ENTRIES, STOP_MARKER} == set()  # finished


def test_a_crawl_killed_hard_is_completed_by_the_next_run_without_duplicates(tmp_path: Path) -> None:
    pages = 24
    site = _chain_site(pages, delay_s=0.3)
    job = tmp_path / "job"
    s = spec(tmp_path, [site.base + "/"], state_dir=str(job), concurrency=2, max_depth=100,
             trap_max_per_pattern=1000, obey_robots=False)
    spec_file = spec_path_for(s.output_path)
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(s.to_json(), encoding="utf-8")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "crawlers.run", str(spec_file)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # kill it mid-way, after a flush of the batch (every 1 s)
                if len(site.hits) >= 6 and time.monotonic() - site.hits[0].at >= 1.3:
                    break
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert len(site.hits) < pages + 1  # it was killed before the end
        assert partial_path_for(s.output_path).exists() and STOP_MARKER not in _job_files(job)

        summary = run_crawl(s.model_copy(update={"timeout_s": 60}))
    finally:
        site.close()
    recs = by_url(records(s.output_path))
    assert set(recs) == _chain_urls(site, pages)
    assert all(r["outcome"] == "fetched" for r in recs.values())
    # the records the killed run had flushed were kept; their pages were fetched again (to find
    # their links: the queue of a killed run cannot be trusted) but not recorded again
    kept = summary.stats.get("resumed_records", 0)
    assert kept >= 1
    assert summary.stats["resume_duplicates"] == kept
    assert summary.pages == pages + 1


PARENT = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from dataset_platform.ingest.crawl import run_crawl
from dataset_platform.contracts.crawl import CrawlSpec
from dataset_platform.storage import Workdir, source_lock
wd = Workdir.at(Path({workdir!r})).ensure()
with source_lock(wd, "site") as fd:
    print("locked", flush=True)
    kw = {{"keep_fds": (fd,)}} if fd is not None else {{}}  # (the lock's descriptor, for the crawl to hold)
    run_crawl(CrawlSpec.from_json(Path({spec!r}).read_text()), log=lambda m: print(m, flush=True), **kw)
"""


def test_the_crawl_dies_with_its_parent_and_holds_the_source_lock_until_then(tmp_path: Path) -> None:
    """Issue 19, probe 5: the run's process killed alone (the OOM killer, a container stop) left the
    crawler fetching, without the lock, while a second run crawled the same site. Now the crawler
    is stopped when its parent dies, and until it has ended the source stays locked."""
    import fcntl

    from dataset_platform.storage import Workdir

    pages = 200
    site = _chain_site(pages, delay_s=0.3)
    wd = Workdir.at(tmp_path / "wd").ensure()
    s = spec(tmp_path, [site.base + "/"], concurrency=2, max_depth=300, trap_max_per_pattern=1000, obey_robots=False)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(s.to_json(), encoding="utf-8")
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(repo=str(REPO), workdir=str(wd.root),
                                                                   spec=str(spec_file))],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        child = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child is None:
            line = parent.stdout.readline()
            if m := re.search(r"started \(pid (\d+)\)", line):
                child = int(m.group(1))
        assert child is not None, "the crawl did not start"
        while len(site.hits) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)  # the parent alone, as the OOM killer does
        parent.wait()
        lock = wd.raw_batches("site") / ".lock"
        with open(lock, "a+") as fh:
            held_after_parent_died = []
            stopped_at = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    held_after_parent_died.append(Path(f"/proc/{child}").exists())
                    time.sleep(0.05)
                    continue
                stopped_at = time.monotonic()
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                break
        assert stopped_at is not None, "the source stayed locked: the crawl outlived its parent"
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
        assert all(held_after_parent_died)  # while the lock was held, the crawl was still running
        fetched = len(site.hits)
        time.sleep(1.0)
        assert len(site.hits) == fetched < pages  # nothing fetched after it stopped, and it stopped early
    finally:
        if parent.poll() is None:
            parent.kill()
        site.close()
