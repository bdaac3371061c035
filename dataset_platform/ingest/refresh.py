"""The raw layer's refresh: crawl a source (its own OS process), land its new files, load every
pending batch into ``crawl_log`` and the source's raw layer (``ingest/load.py``).

Sources removed from the config leave the layer (moved to ``retired/``). Nothing here imports
Dagster.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dataset_platform import atomic
from dataset_platform.config import CrawlSource, DumpSource, PlatformConfig, Source
from dataset_platform.ingest.files import LandUnit, land_unit
from dataset_platform.ingest.load import RANGES, Batch, source_files
from dataset_platform.storage import (
    count_layer,
    ensure_view,
    layer_view_sql,
    memory_connection,
    query_connection,
    read_layer,
    source_lock,
    sql_str,
)
from dataset_platform.workdir import Workdir

Log = Callable[[str], None]

#: URLs of the demo site are recorded under this base, whatever port it was served on, so the
#: release is byte-identical from run to run.
DEMO_BASE_URL = "http://demo.dataset-platform.localhost"


def _noop(_: str) -> None:
    pass


@dataclass
class RawResult:
    """What a refresh of the raw layer did: ``rows`` stored pages of every source, ``counters``
    per source (batches merged, outcomes, crawl statistics) and layer-wide counts."""

    layer: str
    rows: int
    path: Path
    counters: dict = field(default_factory=dict)
    seconds: float = 0.0
    stage: None = None

    @property
    def docs_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def _crawl_target(source: CrawlSource, wd: Workdir, log: Log) -> Iterator[dict]:
    """Start URLs, sitemaps, domains, allowed addresses and record base of a source.

    For ``demo_site: true`` the demo site is generated and served on 127.0.0.1 for the crawl, and
    exactly that address is allowed (other private/loopback addresses stay refused).
    """
    target = {
        "start_urls": list(source.start_urls), "sitemap_urls": list(source.sitemap_urls),
        "allowed_domains": list(source.allowed_domains), "allow_addresses": list(source.allow_private_addresses),
        "record_base_url": source.record_base_url, "fetch_base_url": None,
    }
    if not source.demo_site:
        yield target
        return
    from dataset_platform.demo.server import DemoServer
    from dataset_platform.demo.site import generate_site

    generate_site(wd.demo_site)  # deterministic and cheap: always regenerate
    with DemoServer(wd.demo_site / "site") as server:
        log(f"demo site for source {source.name!r} served at {server.base_url}")
        absolute = lambda urls: [server.base_url + u if u.startswith("/") else u for u in urls]
        target.update(
            start_urls=absolute(source.start_urls), sitemap_urls=absolute(source.sitemap_urls),
            allowed_domains=["127.0.0.1"], allow_addresses=sorted({*source.allow_private_addresses, "127.0.0.1"}),
            record_base_url=source.record_base_url or DEMO_BASE_URL, fetch_base_url=server.base_url,
        )
        yield target


def _new_crawl_id(source: str) -> str:
    return f"{source}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def crawl_source(source: CrawlSource, wd: Workdir, log: Log = _noop, lock_fd: int | None = None) -> tuple[Batch, dict]:
    """Crawl one source in its own OS process and land the batch as gzip JSONL.

    With ``resumable`` an interrupted crawl leaves its Scrapy job state under
    ``raw/<source>/state/``; the next crawl of the source resumes it (same crawl_id).
    With ``conditional_requests`` the validators of the stored pages are sent along.
    """
    from dataset_platform import atomic
    from dataset_platform.ingest.crawl import CrawlSpec, run_crawl
    from dataset_platform.ingest.load import known_pages

    state = wd.crawl_state(source.name)
    crawl_id = None
    if source.resumable and (state / "crawl_id").exists():
        crawl_id = (state / "crawl_id").read_text(encoding="utf-8").strip()
        log(f"resuming the unfinished crawl {crawl_id} of {source.name!r}")
    crawl_id = crawl_id or _new_crawl_id(source.name)
    if source.resumable:
        state.mkdir(parents=True, exist_ok=True)
        atomic.write_text(state / "crawl_id", crawl_id + "\n")
    out = wd.raw_batches(source.name) / f"{crawl_id}.jsonl.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    known = wd.raw_batches(source.name) / f"known-{crawl_id}.jsonl.gz"
    with _crawl_target(source, wd, log) as t:
        n_known = 0
        if source.conditional_requests:
            con = memory_connection()
            rewrite = (t["record_base_url"], t["fetch_base_url"]) if t["fetch_base_url"] else None
            n_known = known_pages(con, wd, source.name, known, url_rewrite=rewrite)
            con.close()
            if n_known:
                log(f"conditional requests for {n_known} stored pages of {source.name!r}")
        # the source's crawl settings, the target's URLs and addresses, the run's own fields
        spec = CrawlSpec.for_crawl(
            source, **{k: v for k, v in t.items() if k in CrawlSpec.model_fields}, source=source.name,
            crawl_id=crawl_id, output_path=str(out), known_pages_path=str(known) if n_known else None,
            state_dir=str(state / "job") if source.resumable else None,
        )
        try:
            summary = run_crawl(spec, log=log, keep_fds=() if lock_fd is None else (lock_fd,))
        finally:
            known.unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)  # finished: nothing to resume
    stats = {
        "crawl_id": crawl_id, "urls": summary.pages, "bytes": summary.bytes,
        "elapsed_s": round(summary.elapsed_s, 2),
        "urls_per_s": round(summary.pages / summary.elapsed_s, 1) if summary.elapsed_s else 0.0,
        "status_counts": dict(summary.status_counts), "outcomes": dict(summary.outcomes),
        "finish_reason": summary.finish_reason,
    }
    return Batch(source.name, crawl_id, out), stats


#: inbox folders the platform writes itself (files landed, files refused)
PROCESSED, REJECTED = "processed", "rejected"


def files_to_land(source: Source, wd: Workdir, log: Log = _noop,
                  refused: list[dict] | None = None) -> list[tuple[Path, str]]:
    """(file, kind) to ingest for a source: its configured paths (dump sources) and its inbox.

    The inbox takes regular files only: a symbolic link (it may point anywhere on the machine), a
    FIFO, socket or device, a folder, or a file whose kind its name does not tell, is moved to
    ``inbox/<source>/rejected/`` with a ``.reason.txt`` beside it and listed in ``refused``;
    the other files land. Names starting with a dot (a file still being written) are left alone."""
    files: list[tuple[Path, str]] = []
    if isinstance(source, DumpSource):
        for pattern in source.paths:
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches and not glob.has_magic(pattern):
                raise FileNotFoundError(f"source {source.name!r}: path {pattern} does not exist")
            files += [(m, source.kind) for m in matches if m.is_file()]
    inbox = wd.inbox(source.name)
    if not inbox.is_dir():
        return files
    from dataset_platform.ingest.files import kind_for_path

    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith("."):
            log(f"{source.name}: inbox: {entry.name!r} left alone (a name starting with a dot is taken for a file "
                "still being written; rename it to land it)")
            continue
        st = entry.lstat()
        if stat.S_ISDIR(st.st_mode) and entry.name in (PROCESSED, REJECTED):
            continue
        if stat.S_ISLNK(st.st_mode):
            why = "a symbolic link: the inbox takes files, not links to files elsewhere (copy the file in)"
        elif stat.S_ISDIR(st.st_mode):
            why = "a folder: the inbox takes files (drop the files themselves)"
        elif not stat.S_ISREG(st.st_mode):
            why = "not a regular file (a FIFO, socket or device)"
        else:
            try:
                files.append((entry, kind_for_path(entry)))
                continue
            except ValueError as e:
                why = str(e)
        _refuse(wd, source.name, entry, why, log, refused)
    return files


def _refuse(wd: Workdir, source: str, path: Path, why: str, log: Log, refused: list[dict] | None) -> None:
    """Move an inbox entry to ``rejected/`` (the entry itself: a link is moved, not followed)
    with its reason beside it."""
    dest = wd.inbox(source) / REJECTED
    dest.mkdir(exist_ok=True)
    target = dest / path.name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(path, target)
    atomic.write_text(dest / f"{path.name}.reason.txt", why + "\n")
    log(f"{source}: inbox: {path.name!r} refused and moved to {dest}: {why}")
    _land_refusal(wd, source, path.name, why)
    if refused is not None:
        refused.append({"file": path.name, "reason": why})


def _land_refusal(wd: Workdir, source: str, name: str, why: str) -> None:
    """The refusal as a batch of one ``failed:refused_file`` record (url ``inbox://<name>``), so crawl_log
    says what became of every file the source was given. Its batch id is a hash of the name and the
    reason: the same refusal lands once."""
    import hashlib

    from dataset_platform.ingest.batchfile import BatchWriter
    from dataset_platform.ingest.files import IngestSummary, batch_file_name
    from dataset_platform.ingest.load import landed_batch
    from dataset_platform.ingest.readers.common import DEFAULT_FETCHED_AT, file_url

    batch_id = f"{source}-{hashlib.sha256(f'refused {name} {why}'.encode()).hexdigest()[:16]}"
    if landed_batch(wd, source, batch_id) is not None:
        return
    w = BatchWriter(wd.raw_batches(source) / batch_file_name(batch_id), IngestSummary(path=name, kind="inbox"),
                    _noop, source, name)
    try:
        w.write({"url": file_url("inbox", name), "outcome": "failed:refused_file", "detail": why[:2000],
                 "fetched_at": DEFAULT_FETCHED_AT})
        w.commit()
    except BaseException:
        w.abort()
        raise


def _the_files_fault(e: BaseException) -> bool:
    """An error that the same file would raise again (bad data, unreadable), not one of this
    machine (memory, disk space) that a later run may not meet."""
    if isinstance(e, MemoryError):
        return False
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return False
    return isinstance(e, Exception)


def ingest_source_files(source: Source, wd: Workdir, log: Log = _noop,
                        refused: list[dict] | None = None, cfg: PlatformConfig | None = None,
                        placement: dict | None = None) -> list[str]:
    """Land every file of a source not landed before (a file's batch id is its content hash).

    The files land as tasks (:func:`land_task`), one per file, and a plain JSON Lines file larger
    than ``files.RANGE_BYTES`` one per byte range of it (the batch is then a ``.ranges`` folder of
    one Parquet file per range; the loader reads it as one batch): Ray tasks with
    ``pipeline.executor: ray`` in ``cfg`` (``placement`` receives where each ran), else worker
    processes of this machine when there is enough to land, else here, one after another. The
    batches are the same wherever they land.

    Inbox files move to ``inbox/<source>/processed/`` once landed. A file that fails to land for a
    reason of its own (it cannot be read, or holds no record the source can take) does not stop
    the others: an inbox file is moved to ``rejected/`` (see :func:`files_to_land`), a configured
    path is skipped with a log line; both are listed in ``refused``.
    """
    landed: list[str] = []
    files = files_to_land(source, wd, log, refused)
    if not files:
        return landed
    from dataset_platform.ingest.files import batch_file_name, batch_id_and_ranges
    from dataset_platform.ingest.load import landed_batch

    fields = tuple(sorted(source.fields.items())) if isinstance(source, DumpSource) else ()
    hashes = _HashCache(wd.file_hashes(source.name))
    todo: list[_ToLand] = []
    for path, kind in files:
        in_inbox = path.parent == wd.inbox(source.name)
        try:
            known, spans = hashes.get(path), None
            # either format: batches of earlier versions count
            seen = known is not None and landed_batch(wd, source.name, known) is not None
            if not seen:  # (a new file is read once: its hash and, for JSON Lines, where it is cut)
                batch_id, spans = batch_id_and_ranges(path, source.name, kind, known)
                hashes.put(path, batch_id)
                seen = known is None and landed_batch(wd, source.name, batch_id) is not None  # (a copy's id)
            else:
                batch_id = known
            if seen:
                log(f"{source.name}: {path.name} was landed before as {batch_id}; skipped")
                if in_inbox:
                    _processed(path)
                continue
        except Exception as e:
            if not _the_files_fault(e):
                raise
            _cannot_land(wd, source.name, path, in_inbox, f"cannot be landed: {type(e).__name__}: {e}", log, refused)
            continue
        folder = wd.raw_batches(source.name)
        if len(spans) == 1:
            units = [LandUnit(str(path), source.name, kind, str(folder / batch_file_name(batch_id)), fields)]
            staging = None
        else:
            staging = folder / f".{batch_id}{RANGES}.tmp"
            if staging.exists():
                shutil.rmtree(staging)  # (a landing killed before: its ranges land again)
            staging.mkdir(parents=True)
            units = [LandUnit(str(path), source.name, kind, str(staging / f"{i:05d}.parquet"), fields, span)
                     for i, span in enumerate(spans)]
        todo.append(_ToLand(path, kind, in_inbox, batch_id, units, staging))
    # the batches are merged in the order of their files' times (``load.pending_batches``): a later
    # file's record of a URL replaces an earlier one's. Tasks finish in any order, so each batch
    # is given its time here, in the order of the files
    stamp, started = time.time_ns(), time.perf_counter()
    with _landing(cfg, [u for t in todo for u in t.units], log, placement) as run:
        results = iter(run(land_task, [u for t in todo for u in t.units]))
        for t in todo:
            outcomes = []
            for i, _unit in enumerate(t.units):
                outcomes.append(next(results))
                if len(t.units) > 1 and outcomes[-1][0] is not None:
                    log(f"{source.name}: {t.path.name}: range {i + 1}/{len(t.units)} landed "
                        f"({sum(o[0].records for o in outcomes if o[0] is not None)} records so far)")
            t.results = [o[0] for o in outcomes]
            why = next((o[1] for o in outcomes if o[1] is not None), None)
            if why is not None:
                if t.staging is not None:
                    shutil.rmtree(t.staging, ignore_errors=True)
                _cannot_land(wd, source.name, t.path, t.in_inbox, why, log, refused)
                continue
            if t.staging is None:
                summary = outcomes[0][0]
            else:  # (its ranges landed side by side: the time is the wall time until the last one)
                summary = _commit_ranges(t, wd)
                summary.elapsed_s = time.perf_counter() - started
            stamp += 1_000_000  # (a millisecond apart)
            os.utime(Path(t.units[0].output_path) if t.staging is None else t.staging.parent / (t.batch_id + RANGES),
                     ns=(stamp, stamp))
            for note in summary.errors:
                log(f"{source.name}: {note}")
            log(f"{source.name}: {summary.line()}")
            log(f"{source.name}: landed {t.path.name} as {t.batch_id}: {summary.records} records"
                + (f" ({len(t.units)} ranges)" if len(t.units) > 1 else ""))
            landed.append(t.batch_id)
            if t.in_inbox:
                _processed(t.path)
        for _ in results:  # (read to its end, so that the runner finishes and cancels nothing)
            raise RuntimeError("more landing results than landing tasks")
    hashes.save()
    return landed


@dataclass
class _ToLand:
    path: Path
    kind: str
    in_inbox: bool
    batch_id: str
    units: list[LandUnit]
    staging: Path | None  # the ranges' folder, renamed into place once they all landed
    results: list = field(default_factory=list)  # the units' summaries


def land_task(unit: LandUnit, log: Log | None = None) -> tuple:
    """``(summary, None)`` of landing one :class:`LandUnit`, or ``(None, why)`` when it failed for
    a reason of the file's own (bad data; see :func:`_the_files_fault`); other errors raise. A
    module-level function: it runs as a task in another process or on another machine. ``log``:
    its progress lines (the caller logs its summary)."""
    try:
        return land_unit(unit, log), None
    except Exception as e:
        if not _the_files_fault(e):
            raise
        return None, f"cannot be landed: {type(e).__name__}: {e}"


def _commit_ranges(t: _ToLand, wd: Workdir):
    """Put a file landed in ranges in place: the ranges' quarantined lines as one quarantine file
    (in file order, as a landing in one piece writes it), then the folder, renamed (the batch
    exists once whole). Returns the file's summary."""
    from dataset_platform.ingest.files import combined_summary, quarantine_path_for

    folder = t.staging.parent
    parts = [Path(u.output_path) for u in t.units]
    quarantined = [quarantine_path_for(p) for p in parts if quarantine_path_for(p).exists()]
    qpath = quarantine_path_for(folder / (t.batch_id + ".parquet"))
    if quarantined:
        with atomic.replacing(qpath) as tmp, open(tmp, "wb") as out:
            for q in quarantined:
                with open(q, "rb") as f:
                    shutil.copyfileobj(f, out)
        for q in quarantined:
            q.unlink()
    os.replace(t.staging, folder / (t.batch_id + RANGES))
    summary = combined_summary(t.path, t.kind, t.results)
    if quarantined:
        summary.quarantine_path = str(qpath)
    return summary


@contextlib.contextmanager
def _landing(cfg: PlatformConfig | None, units: list, log: Log, placement: dict | None):
    """How the landing tasks run: ``run(fn, units)`` yields ``fn(unit)`` in order (see
    :func:`ingest_source_files`; ``cluster.runners.map_runner``)."""
    from dataset_platform.cluster import runners

    with runners.map_runner(cfg, "ingest", len(units), lambda: sum(map(_unit_bytes, units)) >= runners.POOL_BYTES,
                            placement) as (run, where):
        if where == "local":  # here: with its progress lines
            yield lambda fn, items: (fn(item, log) for item in items)
            return
        if where != "ray":
            log(f"landing {len(units)} file(s) or range(s) on {where.workers} worker processes")
        yield run




def _unit_bytes(unit: LandUnit) -> int:
    if unit.span is None or unit.span[1] is None:
        return Path(unit.path).stat().st_size - (unit.span[0] if unit.span else 0)
    return unit.span[1] - unit.span[0]


def _processed(path: Path) -> None:
    done = path.parent / PROCESSED
    done.mkdir(exist_ok=True)
    os.replace(path, done / path.name)


def _cannot_land(wd: Workdir, source: str, path: Path, in_inbox: bool, why: str, log: Log,
                 refused: list[dict] | None) -> None:
    if in_inbox:
        _refuse(wd, source, path, why, log, refused)
        return
    log(f"{source}: {path} {why} (skipped; the other files land)")
    if refused is not None:
        refused.append({"file": str(path), "reason": why})


class _HashCache:
    """Batch ids of files hashed before, valid while a file's (size, mtime_ns, inode) is unchanged
    (the way git's index trusts a file's stat): a refresh over a multi-GB configured dump reads only
    the files that are new or touched. Entries of files no longer seen are dropped on save."""

    def __init__(self, path: Path):
        self.path = path
        try:
            data = json.loads(path.read_text())
            self._old = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._old = {}
        self._new: dict[str, list] = {}

    @staticmethod
    def _stat(path: Path) -> list:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def get(self, path: Path) -> str | None:
        key = str(Path(path).resolve())
        entry = self._old.get(key)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == self._stat(path):
            self._new[key] = entry
            return entry[1]
        return None

    def put(self, path: Path, batch_id: str) -> str:
        self._new[str(Path(path).resolve())] = [self._stat(path), batch_id]
        return batch_id

    def save(self) -> None:
        # an inbox file moved to processed/ keeps its inode and mtime but not its path: not kept
        live = {k: v for k, v in self._new.items() if Path(k).exists()}
        if live != self._old:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path, json.dumps(live, sort_keys=True, indent=0) + "\n")


def _retire_unknown_sources(cfg: PlatformConfig, wd: Workdir, log: Log) -> None:
    """Partitions of sources no longer in the config leave the layer (moved to ``retired/``)."""
    names = {s.name for s in cfg.sources}
    for layer in ("raw_pages", "crawl_log"):
        folder = wd.layers / layer
        if not folder.is_dir():
            continue
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in names):
            dest = wd.retired(layer, d.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(d, dest)
            log(f"source {d.name!r} is no longer in the config: its {layer} partition moved to {dest}")


def materialise_raw(
    cfg: PlatformConfig, wd: Workdir, log: Log = _noop, *, sources: list[str] | None = None,
    crawl: bool = True,
) -> RawResult:
    """Refresh the raw partitions of ``sources`` (default: all): crawl (crawl sources, unless
    ``crawl=False``), land new files (configured paths and the inbox), then load every pending
    batch into crawl_log and the source's raw_pages partition. Other sources are untouched."""
    from dataset_platform.ingest.load import ingest_pending, merged_batches

    outer_log = log

    def log(message: str) -> None:  # one line per message: a file name may hold a line break
        outer_log(message.replace("\r", "\\r").replace("\n", "\\n"))

    t0 = time.monotonic()
    wd.ensure()
    by_name = {s.name: s for s in cfg.sources}
    unknown = sorted(set(sources or []) - set(by_name))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; sources.yaml declares {sorted(by_name)}")
    _retire_unknown_sources(cfg, wd, log)
    per_source: dict[str, dict] = {}
    spill = wd.spill("raw")
    spill.mkdir(parents=True, exist_ok=True)
    con = memory_connection(memory_limit=cfg.pipeline.memory_limit, temp_dir=spill)
    try:
        for name in sources or list(by_name):
            source = by_name[name]
            crawl_stats = None
            placement: dict = {}  # (pipeline.executor: ray) where each landing task ran
            merge_placement: dict = {}  # and each task of the merge
            with source_lock(wd, name, log) as lock_fd:
                if isinstance(source, CrawlSource) and crawl:
                    _, crawl_stats = crawl_source(source, wd, log, lock_fd)
                refused: list[dict] = []
                ingest_source_files(source, wd, log, refused, cfg, placement)
                per_source[name] = ingest_pending(con, wd, name, log=log, part_rows=cfg.pipeline.part_rows, cfg=cfg,
                                                  placement=merge_placement)
            per_source[name]["crawl"] = crawl_stats
            per_source[name]["refused_files"] = refused
            for key, where in (("ray", placement), ("ray_merge", merge_placement)):
                if where:
                    from dataset_platform.cluster.ray_tasks import placement_summary

                    per_source[name][key] = placement_summary(where, cfg.pipeline.ray)
            if not source_files(wd, name) and not merged_batches(wd, name):
                raise FileNotFoundError(
                    f"source {name!r} has nothing stored yet: no crawl or file has been landed under "
                    f"{wd.raw_batches(name)} (for a dump source, check its paths or drop a file into {wd.inbox(name)})"
                )
        rows = count_layer(con, wd, "raw_pages")
        counters = {
            "crawl_log_rows": count_layer(con, wd, "crawl_log"),
            "sources": per_source,
            "pages_per_source": dict(con.sql(
                f"SELECT source, count(*) FROM {read_layer(wd, 'raw_pages')} GROUP BY 1 ORDER BY 1").fetchall()),
            "status_counts": {str(k): int(v) for k, v in con.sql(
                f"SELECT status, count(*) FROM {read_layer(wd, 'raw_pages')} GROUP BY 1 ORDER BY 1").fetchall()},
        }
    finally:
        con.close()
    result = RawResult("raw_pages", rows, wd.layers / "raw_pages", counters=counters, seconds=time.monotonic() - t0)
    ensure_view(wd, "raw_pages", layer_view_sql(wd, "raw_pages"))
    ensure_view(wd, "crawl_log", f"read_parquet({sql_str(wd.layer_glob('crawl_log'))})")
    return result


def crawl_log_summary(wd: Workdir) -> dict:
    """Outcome counts of the newest batch of each source (for metadata and the CLI)."""
    con = query_connection()
    try:
        rows = con.sql(f"""
            WITH newest AS (SELECT source, max(crawl_id) AS crawl_id FROM {read_layer(wd, 'crawl_log')} GROUP BY 1)
            SELECT l.source, l.outcome, count(*) FROM {read_layer(wd, 'crawl_log')} l JOIN newest USING (source, crawl_id)
            GROUP BY 1, 2 ORDER BY 1, 2
        """).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, int]] = {}
    for source, outcome, n in rows:
        out.setdefault(source, {})[outcome] = int(n)
    return out


