"""Crawl runner: each crawl runs Scrapy in its own OS process (``python -m crawlers.run``).

Twisted's reactor cannot be restarted within one process, so the parent only writes the crawl
spec as JSON next to the output, starts the child, streams its progress lines, enforces the
timeout and reads the machine-readable summary line the child prints last. The child writes the
batch (gzip JSON Lines, one record per URL the crawl considered, see ``dataset_platform.contracts.records``) under a
temporary name and renames it into place only when the crawl finished cleanly.
"""

from __future__ import annotations

import collections
import importlib.util
import ipaddress
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: Prefix of the child's last stdout line, followed by the summary as JSON.
SUMMARY_PREFIX = "CRAWL_SUMMARY "
#: Exit code of the child for an unreadable or invalid spec.
EXIT_BAD_SPEC = 2
#: Lines of the child's stderr kept for error messages.
STDERR_TAIL_LINES = 25
#: Seconds a resumable crawl (``state_dir``) is given to stop cleanly (SIGTERM: Scrapy finishes the
#: requests in flight and saves its queue) before it is killed.
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class CrawlSpec:
    """Everything one crawl needs; serialised as JSON for the crawl process."""

    source: str
    crawl_id: str
    start_urls: list[str]
    allowed_domains: list[str]
    output_path: str  # where the batch is landed: gzip JSONL
    max_pages: int = 1000
    max_depth: int = 5
    max_bytes_per_page: int = 5_000_000
    concurrency: int = 8  # per domain
    download_delay: float = 0.0
    obey_robots: bool = True
    user_agent: str = "dataset-platform/0.1 (+https://github.com/dataset-platform)"
    record_base_url: str | None = None  # URLs under the start URLs' origin are recorded under this base
    timeout_s: float = 3600
    sitemap_urls: list[str] = field(default_factory=list)  # sitemaps (or sitemap indexes) to read
    allow_url_patterns: list[str] = field(default_factory=list)  # regexes; a link must match one
    deny_url_patterns: list[str] = field(default_factory=list)  # regexes; a matching link is not crawled
    accepted_content_types: list[str] = field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    allow_addresses: list[str] = field(default_factory=list)  # non-public IPs/CIDRs the crawl may connect to
    known_pages_path: str | None = None  # gzip JSONL of the stored pages' validators (conditional requests)
    state_dir: str | None = None  # Scrapy JOBDIR: an interrupted crawl resumes from it
    max_redirects: int = 10
    retry_times: int = 3
    retry_backoff_s: float = 1.0  # the n-th retry waits retry_backoff_s * 2**(n-1) s (at least Retry-After)
    download_timeout_s: float = 30
    trap_max_per_pattern: int = 1000

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> CrawlSpec:
        """Validated spec from decoded JSON; raises ValueError naming every problem."""
        if not isinstance(data, dict):
            raise ValueError(f"a crawl spec must be a JSON object, not {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        problems = [f"unknown field {k!r}" for k in sorted(set(data) - set(known))]
        for name, f in known.items():
            required = f.default is MISSING and f.default_factory is MISSING
            if name not in data:
                if required:
                    problems.append(f"missing field {name!r}")
                continue
            problem = _check_value(name, data[name])
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> CrawlSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        return cls.from_dict(data)


def _check_value(name: str, v: Any) -> str | None:
    """A message if ``v`` is not a valid value of spec field ``name``."""
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def is_num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if name in ("source", "crawl_id", "output_path", "user_agent"):
        if not isinstance(v, str) or not v.strip():
            return f"{name} must be a non-empty string"
    elif name in ("sitemap_urls", "allow_url_patterns", "deny_url_patterns", "accepted_content_types",
                  "allow_addresses"):
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            return f"{name} must be a list of non-empty strings"
        if name == "sitemap_urls":
            bad = [u for u in v if not u.lower().startswith(("http://", "https://"))]
            if bad:
                return f"sitemap URL {bad[0]!r} is not http(s)://"
        elif name.endswith("_patterns"):
            for pattern in v:
                try:
                    re.compile(pattern)
                except re.error as e:
                    return f"{name}: {pattern!r} is not a valid regular expression ({e})"
        elif name == "allow_addresses":
            for a in v:
                try:
                    ipaddress.ip_network(a, strict=False)
                except ValueError:
                    return f"allow_addresses: {a!r} is not an IP address or CIDR network"
    elif name in ("known_pages_path", "state_dir"):
        if v is not None and (not isinstance(v, str) or not v.strip()):
            return f"{name} must be null or a path"
    elif name in ("max_redirects", "retry_times"):
        if not is_int(v) or v < 0:
            return f"{name} must be an integer >= 0, not {v!r}"
    elif name == "trap_max_per_pattern":
        if not is_int(v) or v < 1:
            return f"trap_max_per_pattern must be an integer >= 1, not {v!r}"
    elif name == "download_timeout_s":
        if not is_num(v) or v <= 0:
            return f"download_timeout_s must be a number > 0, not {v!r}"
    elif name == "retry_backoff_s":
        if not is_num(v) or v < 0:
            return f"retry_backoff_s must be a number >= 0, not {v!r}"
    elif name in ("start_urls", "allowed_domains"):
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            return f"{name} must be a list of non-empty strings"
        if name == "start_urls":
            if not v:
                return "start_urls must not be empty"
            bad = [u for u in v if not u.lower().startswith(("http://", "https://"))]
            if bad:
                return f"start URL {bad[0]!r} is not http(s)://"
        else:
            bad = [d for d in v if "/" in d or ":" in d]
            if bad:
                return f"allowed domain {bad[0]!r} must be a bare host name (no scheme, port or path)"
    elif name in ("max_pages", "max_bytes_per_page", "concurrency"):
        if not is_int(v) or v < 1:
            return f"{name} must be an integer >= 1, not {v!r}"
    elif name == "max_depth":
        if not is_int(v) or v < 0:
            return f"max_depth must be an integer >= 0, not {v!r}"
    elif name == "download_delay":
        if not is_num(v) or v < 0:
            return f"download_delay must be a number >= 0, not {v!r}"
    elif name == "timeout_s":
        if not is_num(v) or v <= 0:
            return f"timeout_s must be a number > 0, not {v!r}"
    elif name == "obey_robots":
        if not isinstance(v, bool):
            return f"obey_robots must be true or false, not {v!r}"
    elif name == "record_base_url":
        if v is not None and (not isinstance(v, str) or not v.lower().startswith(("http://", "https://"))):
            return f"record_base_url must be null or an http(s):// URL, not {v!r}"
    return None


@dataclass
class CrawlSummary:
    """Outcome of a finished crawl (from the child's summary line)."""

    pages: int  # records landed (one per URL considered)
    bytes: int  # sum of body_bytes
    status_counts: dict[str, int]
    elapsed_s: float
    output_path: str
    finish_reason: str = ""  # Scrapy's: "finished", "max_pages", ...
    #: Selected Scrapy counters: download errors, offsite / robots.txt filtered requests, ...
    stats: dict[str, int] = field(default_factory=dict)
    #: records per outcome (fetched, not_modified, failed:timeout, ...)
    outcomes: dict[str, int] = field(default_factory=dict)


class CrawlError(RuntimeError):
    """The crawl process failed, timed out or did not report a summary."""


def spec_path_for(output_path: str | Path) -> Path:
    """Where the spec of the crawl landing at ``output_path`` is written (beside it)."""
    out = Path(output_path)
    stem = out.name.removesuffix(".gz").removesuffix(".jsonl")
    return out.with_name(stem + ".spec.json")


def partial_path_for(output_path: str | Path) -> Path:
    """Temporary name of the output while the crawl runs."""
    out = Path(output_path)
    return out.with_name(out.name + ".part")


def _child_env() -> dict[str, str]:
    """Environment of the crawl process: the ``crawlers`` package importable, UTF-8 pipes."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("crawlers")
    if spec is None or not spec.submodule_search_locations:
        raise CrawlError("the 'crawlers' package (Scrapy project) is not importable; install the project")
    root = str(Path(list(spec.submodule_search_locations)[0]).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _stop(proc: subprocess.Popen[str], graceful: bool) -> None:
    """Stop the crawl process: SIGTERM and up to STOP_GRACE_S seconds to stop cleanly when
    ``graceful``, then (or else) SIGKILL."""
    if proc.poll() is not None:
        return
    if graceful:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()


def _pump(stream: Any, tag: str, q: queue.Queue[tuple[str, str | None]]) -> None:
    for line in stream:
        q.put((tag, line.rstrip("\r\n")))
    q.put((tag, None))


def run_crawl(spec: CrawlSpec, log: Callable[[str], None] | None = None) -> CrawlSummary:
    """Run one crawl in a child process and return its summary.

    Progress lines of the child go to ``log`` (called from this thread). Raises CrawlError when
    the child exits non-zero, exceeds ``spec.timeout_s`` (it is killed) or reports no summary;
    ``spec.output_path`` then is not created. A resumable crawl (``spec.state_dir``) that times
    out or is interrupted is stopped cleanly (SIGTERM, see STOP_GRACE_S) and keeps its partial
    output: running the same spec again resumes it (``crawlers.run``).
    """
    emit = log or (lambda _msg: None)
    resumable = bool(spec.state_dir)
    out = Path(spec.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_file = spec_path_for(out)
    spec_file.write_text(spec.to_json(), encoding="utf-8")
    cmd = [sys.executable, "-m", "crawlers.run", str(spec_file)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=_child_env(),
    )
    emit(f"crawl {spec.crawl_id}: started (pid {proc.pid}) from {', '.join(spec.start_urls)}")
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, "out", lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "err", lines), daemon=True),
    ]
    for r in readers:
        r.start()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    summary_line: str | None = None
    open_streams = 2
    timed_out = False
    try:
        while open_streams:
            remaining = spec.timeout_s - (time.monotonic() - t0)
            if remaining <= 0:
                timed_out = True
                break
            try:
                tag, line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif tag == "err":
                stderr_tail.append(line)
            elif line.startswith(SUMMARY_PREFIX):
                summary_line = line[len(SUMMARY_PREFIX):]
            elif line.strip():
                emit(line)
        if not timed_out:
            try:
                proc.wait(timeout=max(1.0, spec.timeout_s - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _stop(proc, graceful=resumable)
        rc = proc.wait()
    except BaseException:
        # interrupted (or the wait timed out): never leave an orphan crawl behind
        _stop(proc, graceful=resumable)
        proc.wait()
        if not resumable:
            partial_path_for(out).unlink(missing_ok=True)
        raise
    finally:
        for r in readers:
            r.join(timeout=5)
    while True:  # what the child wrote after the timeout (while it stopped)
        try:
            tag, line = lines.get_nowait()
        except queue.Empty:
            break
        if line is None:
            continue
        if tag == "err":
            stderr_tail.append(line)
        elif line.startswith(SUMMARY_PREFIX):
            summary_line = summary_line or line[len(SUMMARY_PREFIX):]
        elif line.strip():
            emit(line)
    tail = "\n".join(stderr_tail)
    if not resumable and (timed_out or rc != 0):
        partial_path_for(out).unlink(missing_ok=True)
    if timed_out:
        raise CrawlError(
            f"crawl {spec.crawl_id} timed out after {spec.timeout_s:g} s and was "
            f"{'stopped' if resumable else 'killed'} (exit code {rc}); "
            + ("run the same spec again to resume it; " if resumable else "")
            + f"last stderr lines:\n{tail}"
        )
    if rc != 0:
        raise CrawlError(f"crawl {spec.crawl_id} failed with exit code {rc}; last stderr lines:\n{tail}")
    if summary_line is None or not out.exists():
        raise CrawlError(
            f"crawl {spec.crawl_id} exited with code 0 but "
            f"{'reported no summary' if summary_line is None else f'left no output at {out}'}; "
            f"last stderr lines:\n{tail}"
        )
    try:
        data = json.loads(summary_line)
        summary = CrawlSummary(
            pages=int(data["pages"]),
            bytes=int(data["bytes"]),
            status_counts={str(k): int(v) for k, v in data["status_counts"].items()},
            elapsed_s=float(data["elapsed_s"]),
            output_path=str(data["output_path"]),
            finish_reason=str(data.get("finish_reason", "")),
            stats={str(k): int(v) for k, v in data.get("stats", {}).items()},
            outcomes={str(k): int(v) for k, v in data.get("outcomes", {}).items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CrawlError(f"crawl {spec.crawl_id}: unreadable summary line {summary_line!r}: {e}") from None
    emit(
        f"crawl {spec.crawl_id}: done ({summary.finish_reason}): {summary.pages} URLs, "
        f"{summary.bytes} bytes in {summary.elapsed_s:.1f} s; outcomes "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items()))
    )
    return summary
