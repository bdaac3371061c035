"""One function per layer: read the upstream layer files, run the stage, write this layer.

This is the seam between the plain library (``core/``, ``raw/``) and its callers: the Dagster
assets in ``defs/`` are thin wrappers over these functions, and tests call them directly.
Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from dataset_platform.config import CrawlSource, PlatformConfig
from dataset_platform.core.clean import run_clean
from dataset_platform.core.dedup import run_dedup
from dataset_platform.core.extract import run_extract
from dataset_platform.core.label import run_label
from dataset_platform.core.release import ReleaseInfo, latest_release, publish_release, release_view_sql
from dataset_platform.core.stage import StageResult, write_outputs
from dataset_platform.raw.load import Batch, load_batches
from dataset_platform.storage import Workdir, count_rows, ensure_view, memory_connection, read_layer, sql_str, write_parquet

Log = Callable[[str], None]

#: stage name, input layer, output layer - in graph order
STAGES: list[tuple[str, str, str]] = [
    ("extract", "raw_pages", "extracted_documents"),
    ("clean", "extracted_documents", "cleaned_documents"),
    ("dedup", "cleaned_documents", "deduplicated_documents"),
    ("label", "deduplicated_documents", "labelled_documents"),
]
STAGE_OF_LAYER = {out: stage for stage, _, out in STAGES}

#: URLs of the demo site are recorded under this base, whatever port it was served on, so the
#: release is byte-identical from run to run.
DEMO_BASE_URL = "http://demo.dataset-platform.localhost"


@dataclass
class LayerResult:
    layer: str
    rows: int
    path: Path
    stage: StageResult | None = None
    counters: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def docs_per_s(self) -> float:
        return (self.stage.input_rows if self.stage else self.rows) / self.seconds if self.seconds else 0.0


def _noop(_: str) -> None:
    pass


def _publish_view(wd: Workdir, layer: str, target_sql: str | None = None) -> bool:
    return ensure_view(wd, layer, target_sql or f"read_parquet({sql_str(wd.layer(layer))})")


def _write_stats(wd: Workdir, layer: str, result: LayerResult) -> None:
    st = result.stage
    data = {
        "layer": layer,
        "rows": result.rows,
        "stage": None if st is None else {
            "name": st.stage, "input": st.input_rows, "kept": st.kept_rows,
            "rejected": st.rejected_rows, "reasons": st.reasons, "extra": st.extra,
        },
        "counters": result.counters,
    }
    p = wd.layer(layer).with_name("stats.json")
    p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_stats(wd: Workdir, layer: str) -> dict | None:
    p = wd.layer(layer).with_name("stats.json")
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


# --------------------------------------------------------------------------- raw


@contextlib.contextmanager
def _crawl_target(source: CrawlSource, wd: Workdir, log: Log) -> Iterator[tuple[list[str], list[str], str | None]]:
    """(start URLs, allowed domains, record base) for a source; serves the demo site if asked."""
    if not source.demo_site:
        yield list(source.start_urls), list(source.allowed_domains), source.record_base_url
        return
    from dataset_platform.demo.server import DemoServer
    from dataset_platform.demo.site import generate_site

    generate_site(wd.demo_site)  # deterministic and cheap: always regenerate
    with DemoServer(wd.demo_site / "site") as server:
        log(f"demo site for source {source.name!r} served at {server.base_url}")
        starts = [server.base_url + u if u.startswith("/") else u for u in source.start_urls]
        yield starts, ["127.0.0.1"], source.record_base_url or DEMO_BASE_URL


def crawl_source(source: CrawlSource, wd: Workdir, log: Log = _noop) -> Batch:
    """Crawl one source in its own OS process and land the batch as gzip JSONL."""
    from dataset_platform.raw.crawl import CrawlSpec, run_crawl

    crawl_id = f"{source.name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}"
    out = wd.raw_batches(source.name) / f"{crawl_id}.jsonl.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with _crawl_target(source, wd, log) as (starts, domains, record_base):
        spec = CrawlSpec(
            source=source.name,
            crawl_id=crawl_id,
            start_urls=starts,
            allowed_domains=domains,
            output_path=str(out),
            max_pages=source.max_pages,
            max_depth=source.max_depth,
            max_bytes_per_page=source.max_bytes_per_page,
            concurrency=source.concurrency,
            download_delay=source.download_delay,
            obey_robots=source.obey_robots,
            user_agent=source.user_agent,
            record_base_url=record_base,
            timeout_s=source.timeout_s,
        )
        summary = run_crawl(spec, log=log)
    log(f"crawl {crawl_id}: {summary.pages} responses, {summary.bytes} bytes in {summary.elapsed_s:.1f}s")
    return Batch(source.name, crawl_id, out)


def latest_batch(wd: Workdir, source: str) -> Batch | None:
    files = sorted(wd.raw_batches(source).glob(f"{source}-*.jsonl.gz"))
    if not files:
        return None
    f = files[-1]
    return Batch(source, f.name.removesuffix(".jsonl.gz"), f)


def materialise_raw(cfg: PlatformConfig, wd: Workdir, log: Log = _noop, *, crawl: bool = True) -> LayerResult:
    """Crawl every source (each in its own process) and load the newest batch of each."""
    t0 = time.monotonic()
    wd.ensure()
    batches = []
    for source in cfg.sources:
        batch = crawl_source(source, wd, log) if crawl else latest_batch(wd, source.name)
        if batch is None:
            raise FileNotFoundError(f"source {source.name!r} has no landed crawl batch under {wd.raw_batches(source.name)}")
        batches.append(batch)
    con = memory_connection()
    counters = load_batches(con, batches)
    rows = write_parquet(con, "SELECT * FROM raw ORDER BY id", wd.layer("raw_pages"), layer="raw_pages")
    counters["status_counts"] = {
        str(k): int(v) for k, v in con.sql("SELECT status, count(*) FROM raw GROUP BY 1 ORDER BY 1").fetchall()
    }
    counters["crawl_ids"] = [b.crawl_id for b in batches]
    con.close()
    result = LayerResult("raw_pages", rows, wd.layer("raw_pages"), counters=counters, seconds=time.monotonic() - t0)
    _write_stats(wd, "raw_pages", result)
    _publish_view(wd, "raw_pages")
    return result


# ------------------------------------------------------------------ document stages


def _run_stage(cfg: PlatformConfig, wd: Workdir, layer: str, log: Log) -> LayerResult:
    stage = STAGE_OF_LAYER[layer]
    upstream = next(inp for s, inp, _ in STAGES if s == stage)
    t0 = time.monotonic()
    con = memory_connection()
    src = read_layer(wd, upstream)
    bs = cfg.pipeline.batch_size
    if stage == "extract":
        res = run_extract(con, src, batch_size=bs, log=log)
    elif stage == "clean":
        res = run_clean(con, src, cfg.pipeline.clean, batch_size=bs, log=log)
    elif stage == "dedup":
        res = run_dedup(con, src)
        write_parquet(con, "SELECT * FROM clusters ORDER BY doc_id", wd.layer("duplicate_clusters"), layer="duplicate_clusters")
    elif stage == "label":
        res = run_label(con, src, cfg.pipeline.labels)
    else:  # pragma: no cover - STAGES and this switch are kept together
        raise ValueError(stage)
    write_outputs(con, layer, wd.layer(layer), wd.rejects(stage))
    con.close()
    log(res.summary())
    result = LayerResult(layer, res.kept_rows, wd.layer(layer), stage=res, seconds=time.monotonic() - t0)
    _write_stats(wd, layer, result)
    _publish_view(wd, layer)
    if stage == "dedup":
        _publish_view(wd, "duplicate_clusters")
    return result


def materialise_extracted(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "extracted_documents", log)


def materialise_cleaned(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "cleaned_documents", log)


def materialise_deduplicated(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "deduplicated_documents", log)


def materialise_labelled(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "labelled_documents", log)


def materialise_rejected(wd: Workdir) -> LayerResult:
    """Union of every stage's rejects, in graph order."""
    t0 = time.monotonic()
    con = memory_connection()
    parts = [f"SELECT * FROM read_parquet({sql_str(wd.rejects(s))})" for s, _, _ in STAGES if wd.rejects(s).exists()]
    order = "CASE stage " + " ".join(f"WHEN '{s}' THEN {i}" for i, (s, _, _) in enumerate(STAGES)) + " ELSE 99 END"
    from dataset_platform.storage import empty_layer_query

    query = " UNION ALL ".join(parts) if parts else empty_layer_query("rejected_documents")
    rows = write_parquet(
        con, f"SELECT * FROM ({query}) ORDER BY {order}, id, rule", wd.layer("rejected_documents"), layer="rejected_documents"
    )
    reasons = [list(r) for r in con.sql(
        f"SELECT stage, rule, count(*) FROM read_parquet({sql_str(wd.layer('rejected_documents'))}) "
        f"GROUP BY stage, rule ORDER BY min({order}), rule"
    ).fetchall()]
    con.close()
    result = LayerResult("rejected_documents", rows, wd.layer("rejected_documents"), counters={"reasons": reasons},
                         seconds=time.monotonic() - t0)
    _write_stats(wd, "rejected_documents", result)
    _publish_view(wd, "rejected_documents")
    return result


# --------------------------------------------------------------------------- release


def accounting(wd: Workdir, stage: str) -> tuple[int, int, int]:
    """(input rows, kept rows, rejected rows) of a stage, counted from the files themselves."""
    _, upstream, layer = next(t for t in STAGES if t[0] == stage)
    con = memory_connection()
    try:
        return (
            count_rows(con, wd.layer(upstream)),
            count_rows(con, wd.layer(layer)),
            count_rows(con, wd.rejects(stage)) if wd.rejects(stage).exists() else 0,
        )
    finally:
        con.close()


def materialise_release(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> ReleaseInfo:
    con = memory_connection()
    stages = []
    for stage, _, _ in STAGES:
        i, k, r = accounting(wd, stage)
        stages.append([stage, i, k, r])
    rejected = read_stats(wd, "rejected_documents") or {}
    stats = {
        "sources": [f"{s.name} ({s.kind})" for s in cfg.sources],
        "stages": stages,
        "reasons": rejected.get("counters", {}).get("reasons", []),
    }
    info = publish_release(
        con, read_layer(wd, "labelled_documents"), wd.releases, cfg.dataset, cfg.pipeline.splits,
        config_fingerprint=cfg.fingerprint(), stats=stats,
    )
    con.close()
    log(f"release {info.dataset} {info.version}: {info.rows} at {info.path}" + ("" if info.created else " (unchanged)"))
    _publish_view(wd, "dataset_release", release_view_sql(info.path))
    return info


def current_release(cfg: PlatformConfig, wd: Workdir) -> Path | None:
    return latest_release(wd.releases, cfg.dataset.name)
