"""Crawl runner: each crawl runs Scrapy in its own OS process (``python -m crawlers.run``).

Twisted's reactor cannot be restarted within one process, so the parent only writes the crawl
spec (``dataset_platform.contracts.crawl.CrawlSpec``, validated again by the child) as JSON next
to the output, starts the child, streams its progress lines, enforces the timeout and reads the
machine-readable summary line the child prints last. The child writes the batch (gzip JSON
Lines, one record per URL the crawl considered, see ``dataset_platform.contracts.records``) under
a temporary name and renames it into place only when the crawl finished cleanly.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_platform import atomic
from dataset_platform.contracts.crawl import (
    EXIT_BAD_SPEC,
    SUMMARY_PREFIX,
    CrawlSpec,
    partial_path_for,
    spec_path_for,
)
from dataset_platform.procs import PARENT_ENV

#: the runner's API (the spec and the protocol live in contracts/crawl.py, shared with the child)
__all__ = [
    "EXIT_BAD_SPEC", "SUMMARY_PREFIX", "CrawlError", "CrawlSpec", "CrawlSummary", "partial_path_for", "run_crawl",
    "spec_path_for",
]

#: Lines of the child's stderr kept for error messages.
STDERR_TAIL_LINES = 25
#: Seconds a resumable crawl (``state_dir``) is given to stop cleanly (SIGTERM: Scrapy finishes the
#: requests in flight and saves its queue) before it is killed.
STOP_GRACE_S = 15.0


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


def _child_env() -> dict[str, str]:
    """Environment of the crawl process: the ``crawlers`` package importable, UTF-8 pipes."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("crawlers")
    if spec is None or not spec.submodule_search_locations:
        raise CrawlError("the 'crawlers' package (Scrapy project) is not importable; install the project")
    root = str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
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


def run_crawl(spec: CrawlSpec, log: Callable[[str], None] | None = None, keep_fds: tuple[int, ...] = ()) -> CrawlSummary:
    """Run one crawl in a child process and return its summary.

    The child dies with this process (it is sent SIGTERM when this process dies, even by SIGKILL:
    ``crawlers.run`` asks the kernel for it) and inherits ``keep_fds``: the source's lock, so that
    while a child outlives its parent no other run crawls the same source.

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
    atomic.write_text(spec_file, spec.to_json())
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
        env={**_child_env(), PARENT_ENV: str(os.getpid())},
        pass_fds=keep_fds,
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
        f"{summary.stats.get('stored_pages', 0)} pages stored (max_pages {spec.max_pages}), "
        f"{summary.bytes} bytes in {summary.elapsed_s:.1f} s; outcomes "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items()))
    )
    return summary
