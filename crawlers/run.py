"""Entry of the crawl process: ``python -m crawlers.run spec.json``.

Runs one crawl described by a crawl spec (see ``dataset_platform.contracts.crawl.CrawlSpec``), writes
the batch to ``<output>.part`` and renames it to the output path only when the crawl finished
cleanly. Stdout carries progress lines and, last, one ``CRAWL_SUMMARY {json}`` line; Scrapy's log
goes to stderr. Exit codes: 0 success, 1 crawl failed (or interrupted), 2 unreadable or invalid spec.

Resumable crawls (``state_dir`` set: Scrapy's ``JOBDIR``): stopping the process with SIGTERM or
SIGINT (once) lets Scrapy finish the requests in flight and save its queue and the spider's state;
the records so far stay in ``<output>.part`` and a marker file ``STOP_MARKER`` is written in the
job directory. Running the same spec again continues the crawl and appends to ``<output>.part``;
no URL is recorded twice. Without the marker (the process was killed hard, or the machine
stopped) Scrapy's queue and state cannot be trusted: they are discarded and the crawl starts again
from its start URLs, keeping the complete records of ``<output>.part`` and not recording their
URLs again (their pages are fetched again to find their links). When the crawl finishes, the job
directory's files are removed, so the same spec then makes a new crawl.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from scrapy import signals
from scrapy.crawler import AsyncCrawlerProcess, Crawler
from scrapy.settings import Settings
from scrapy.utils.asyncio import create_looping_call

from crawlers.pipelines import (
    STAT_BYTES,
    STAT_OUTCOME_PREFIX,
    STAT_OUTPUT_COMPLETE,
    STAT_PAGES,
    STAT_RESUME_DUPLICATES,
    STAT_RESUMED_RECORDS,
    STAT_STATUS_PREFIX,
    STAT_WRITE_ERROR,
)
from crawlers.spiders.site import STAT_FAILED_REQUESTS, STAT_STORED, SiteSpider
from dataset_platform import atomic
from dataset_platform.contracts.crawl import (
    EXIT_BAD_SPEC,
    SUMMARY_PREFIX,
    CrawlSpec,
    partial_path_for,
)
from dataset_platform.procs import PARENT_ENV, die_with_parent


def own_ports(urls: list[str]) -> list[int]:
    """The ports the crawl's start and sitemap URLs connect to: an allowed private address is allowed
    on these only, unless its entry names ports (``crawlers/guard.py``)."""
    from urllib.parse import urlsplit

    from crawlers.guard import url_port

    ports = set()
    for u in urls:
        parts = urlsplit(u)
        try:
            ports.add(url_port(parts.scheme, parts.port))
        except ValueError:
            continue
    return sorted(ports)

#: File in the job directory written when a resumable crawl stopped cleanly before finishing.
STOP_MARKER = "dataset_platform.stopped.json"
#: Files and folders Scrapy keeps in a job directory.
JOBDIR_ENTRIES = ("requests.queue", "requests.seen", "spider.state")
PROGRESS_EVERY_S = 2.0
PROGRESS_EVERY_PAGES = 50
#: Scrapy counters copied into the summary (when present).
SUMMARY_STATS = (
    "downloader/request_count",
    "downloader/response_count",
    "downloader/exception_count",
    "retry/max_reached",
    "offsite/filtered",
    "robotstxt/forbidden",
    "dupefilter/filtered",
    "request_depth_max",
    "log_count/ERROR",
)
#: Pipeline counters copied into the summary (when present).
RESUME_STATS = {STAT_RESUMED_RECORDS: "resumed_records", STAT_RESUME_DUPLICATES: "resume_duplicates"}


def build_settings(spec: CrawlSpec, output_file: str | Path) -> Settings:
    """The project settings with the spec's limits and politeness applied."""
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(
        {
            "USER_AGENT": spec.user_agent,
            "ROBOTSTXT_OBEY": spec.obey_robots,
            "DEPTH_LIMIT": 0,  # the spider applies max_depth (and records what it filters)
            "RETRY_TIMES": spec.retry_times,
            "DATASET_PLATFORM_RETRY_BACKOFF_S": spec.retry_backoff_s,
            "DOWNLOAD_TIMEOUT": spec.download_timeout_s,
            "DATASET_PLATFORM_ALLOW_ADDRESSES": list(spec.allow_addresses),
            "DATASET_PLATFORM_OWN_PORTS": own_ports(spec.start_urls + spec.sitemap_urls),
            "DOWNLOAD_MAXSIZE": spec.max_bytes_per_page,
            "DOWNLOAD_WARNSIZE": spec.max_bytes_per_page,
            "CONCURRENT_REQUESTS_PER_DOMAIN": spec.concurrency,
            "CONCURRENT_REQUESTS": max(16, spec.concurrency),
            "DOWNLOAD_DELAY": spec.download_delay,
            "AUTOTHROTTLE_ENABLED": spec.download_delay > 0,
            "TELNETCONSOLE_ENABLED": False,
            "REMOTE_CONTROL_ENABLED": False,
            "HTTPERROR_ALLOW_ALL": True,
            "DATASET_PLATFORM_OUTPUT": str(output_file),
        },
        priority="cmdline",
    )
    if spec.state_dir:  # Scrapy job directory: an interrupted crawl resumes from its queue and state
        settings.set("JOBDIR", spec.state_dir, priority="cmdline")
        settings.set("DATASET_PLATFORM_OUTPUT_RESUME", True, priority="cmdline")
    if spec.download_delay > 0:  # AutoThrottle adapts the delay, never going below DOWNLOAD_DELAY
        settings.set("AUTOTHROTTLE_START_DELAY", spec.download_delay, priority="cmdline")
        settings.set("AUTOTHROTTLE_MAX_DELAY", max(60.0, 10 * spec.download_delay), priority="cmdline")
    return settings


class ProgressReporter:
    """Prints a progress line every PROGRESS_EVERY_S seconds and every PROGRESS_EVERY_PAGES pages."""

    def __init__(self, crawler: Crawler, crawl_id: str, t0: float, out: TextIO = sys.stdout) -> None:
        self.crawler = crawler
        self.crawl_id = crawl_id
        self.t0 = t0
        self.out = out
        self._timer: Any = None
        self._last_milestone = -1
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    def _stat(self, key: str) -> int:
        return int(self.crawler.stats.get_value(key, 0)) if self.crawler.stats else 0

    def report(self, note: str = "") -> None:
        elapsed = time.monotonic() - self.t0
        pages = self._stat(STAT_PAGES)
        rate = pages / elapsed if elapsed > 0 else 0.0
        line = (
            f"crawl {self.crawl_id}: {pages} pages, {rate:.1f} pages/s, "
            f"{self._stat(STAT_BYTES)} bytes, {elapsed:.1f} s{note}"
        )
        print(line, file=self.out, flush=True)

    def spider_opened(self) -> None:
        self._timer = create_looping_call(self.report)
        self._timer.start(PROGRESS_EVERY_S, now=False)

    def item_scraped(self) -> None:
        pages = self._stat(STAT_PAGES)
        if pages % PROGRESS_EVERY_PAGES == 0 and pages != self._last_milestone:
            self._last_milestone = pages  # several items can be scraped while the count stands still
            self.report()

    def spider_closed(self, reason: str) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self.report(f" (closed: {reason})")


def _ok_reason(reason: str) -> bool:
    return reason in ("finished", "max_pages") or reason.startswith("closespider_")


def _clear_job_dir(job: Path) -> None:
    for name in (*JOBDIR_ENTRIES, STOP_MARKER):
        p = job / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def prepare_job_dir(spec: CrawlSpec, part: Path) -> str:
    """Get the job directory and ``part`` ready for this run; returns what the run does:
    ``new``, ``resume`` (after a clean stop), ``recover`` (after a hard kill that left records) or
    ``restart`` (after a hard kill that left none); see the module doc."""
    if not spec.state_dir:
        part.unlink(missing_ok=True)
        return "new"
    job = Path(spec.state_dir)
    marker = job / STOP_MARKER
    clean_stop = marker.exists() and part.exists()
    had_state = any((job / name).exists() for name in JOBDIR_ENTRIES)
    if clean_stop:
        marker.unlink()
        return "resume"
    # no clean stop: Scrapy's queue and spider state (if any) may be older than the records
    _clear_job_dir(job)
    if part.exists():
        return "recover"
    return "restart" if had_state else "new"


def _peak_rss_kb() -> int:
    """Peak resident set size of this process in KiB.

    On Linux this is ``VmHWM`` of /proc/self/status: ``getrusage``'s ``ru_maxrss`` survives
    ``execve`` and so, for a process started with vfork/fork + exec (as ``subprocess`` does), reports
    at least the *parent's* peak - a large test or Dagster process would look like a large crawl.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB, macOS bytes
    return int(peak // 1024) if sys.platform == "darwin" else int(peak)


def crawl(spec: CrawlSpec) -> int:
    """Run the crawl in this process (once per process); returns the exit code."""
    t0 = time.monotonic()
    out = Path(spec.output_path)
    part = partial_path_for(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = prepare_job_dir(spec, part)
    if mode != "new":
        what = {
            "resume": "resuming the interrupted crawl",
            "recover": "the last run was killed: restarting from the start URLs, keeping its records",
            "restart": "the last run was killed and left no records: restarting from the start URLs",
        }[mode]
        print(f"crawl {spec.crawl_id}: {what} (job directory {spec.state_dir})", flush=True)

    process = AsyncCrawlerProcess(build_settings(spec, part))
    crawler = process.create_crawler(SiteSpider)
    reporter = ProgressReporter(crawler, spec.crawl_id, t0)  # noqa: F841 (signals hold weak references)
    task = process.crawl(
        crawler,
        start_urls=spec.start_urls,
        allowed_domains=spec.allowed_domains,
        max_pages=spec.max_pages,
        max_requests=spec.max_requests,
        max_depth=spec.max_depth,
        record_base_url=spec.record_base_url,
        sitemap_urls=spec.sitemap_urls,
        allow_url_patterns=spec.allow_url_patterns,
        deny_url_patterns=spec.deny_url_patterns,
        accepted_content_types=spec.accepted_content_types,
        known_pages_path=spec.known_pages_path,
        max_redirects=spec.max_redirects,
        trap_max_per_pattern=spec.trap_max_per_pattern,
        max_bytes_per_page=spec.max_bytes_per_page,
    )
    process.start()

    error = task.exception() if task.done() and not task.cancelled() else None
    stats: dict[str, Any] = dict(crawler.stats.get_stats()) if getattr(crawler, "stats", None) else {}
    reason = str(stats.get("finish_reason", ""))
    if error is not None:
        problem = f"the crawl raised {type(error).__name__}: {error}"
    elif stats.get(STAT_WRITE_ERROR):
        problem = f"the output file could not be written ({stats[STAT_WRITE_ERROR]})"
    elif not stats.get(STAT_OUTPUT_COMPLETE):
        problem = "the output file was not completed (see the log above)"
    elif not _ok_reason(reason):
        problem = f"the crawl stopped early (finish reason {reason!r})"
    else:
        problem = ""
    if problem:
        if spec.state_dir:
            # resumable: keep the records so far; mark a clean stop (queue and state were saved)
            if reason == "shutdown" and error is None and stats.get(STAT_OUTPUT_COMPLETE):
                marker = Path(spec.state_dir) / STOP_MARKER
                atomic.write_text(marker, json.dumps({"records": int(stats.get(STAT_PAGES, 0))}) + "\n")
                print(f"crawl {spec.crawl_id} interrupted: {int(stats.get(STAT_PAGES, 0))} records kept in {part}; "
                      "run the same spec again to resume it", file=sys.stderr, flush=True)
                return 1
        else:
            part.unlink(missing_ok=True)
        print(f"crawl {spec.crawl_id} failed: {problem}", file=sys.stderr, flush=True)
        return 1

    atomic.replace(part, out)
    if spec.state_dir:  # finished: nothing to resume; the same spec now makes a new crawl
        _clear_job_dir(Path(spec.state_dir))
    pages = int(stats.get(STAT_PAGES, 0))
    selected = {k: int(stats[k]) for k in SUMMARY_STATS if isinstance(stats.get(k), int)}
    selected["failed_requests"] = int(stats.get(STAT_FAILED_REQUESTS, 0))
    selected["stored_pages"] = int(stats.get(STAT_STORED, 0))  # what max_pages counts
    selected["max_rss_kb"] = _peak_rss_kb()
    for key, name in RESUME_STATS.items():
        if stats.get(key):
            selected[name] = int(stats[key])
    spider_exceptions = sum(v for k, v in stats.items() if k.startswith("spider_exceptions/") and k.count("/") == 1)
    if spider_exceptions:
        selected["spider_exceptions"] = int(spider_exceptions)
    summary = {
        "pages": pages,
        "bytes": int(stats.get(STAT_BYTES, 0)),
        "status_counts": {
            k.removeprefix(STAT_STATUS_PREFIX): int(v)
            for k, v in sorted(stats.items())
            if k.startswith(STAT_STATUS_PREFIX)
        },
        "outcomes": {
            k.removeprefix(STAT_OUTCOME_PREFIX): int(v)
            for k, v in sorted(stats.items())
            if k.startswith(STAT_OUTCOME_PREFIX)
        },
        "elapsed_s": round(time.monotonic() - t0, 3),
        "output_path": str(out),
        "finish_reason": reason,
        "stats": selected,
    }
    if pages == 0:
        print(
            f"crawl {spec.crawl_id}: no URL was recorded ({selected['failed_requests']} request(s) "
            "failed); are the start URLs reachable?",
            flush=True,
        )
    print(SUMMARY_PREFIX + json.dumps(summary, sort_keys=True), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(PARENT_ENV):
        # started by the platform: stop (cleanly, as on a timeout) when that process dies, even
        # by SIGKILL; an orphan crawl would go on fetching without anyone to land its batch
        die_with_parent(signal.SIGTERM)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m crawlers.run SPEC.json", file=sys.stderr)
        return EXIT_BAD_SPEC
    try:
        spec = CrawlSpec.from_json(Path(args[0]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"invalid crawl spec {args[0]}: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC
    return crawl(spec)


if __name__ == "__main__":
    sys.exit(main())
