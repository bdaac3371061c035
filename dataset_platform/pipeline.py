"""One function per layer: read the upstream layer files, run the stage, write this layer.

This is the seam between the plain library (``core/``, ``raw/``) and its callers: the Dagster
assets in ``defs/`` are thin wrappers over these functions, and tests call them directly.
Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dataset_platform.config import CrawlSource, DumpSource, PlatformConfig, Source
from dataset_platform.stages.clean.stage import run_clean
from dataset_platform.stages.dedup.stage import dedup_into_parts
from dataset_platform.stages.extract import options_from, run_extract
from dataset_platform.stages.label.stage import run_label
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.storage.parted import PartedLayer
from dataset_platform.release.publish import (
    ReleaseInfo,
    latest_release,
    publish_release,
    release_view_sql,
)
from dataset_platform.stages.base import StageResult, write_outputs
from dataset_platform.ingest.load import Batch
from dataset_platform.contracts.schema import LABELLED_LAYERS
from dataset_platform.storage import (
    PARTITIONED_LAYERS,
    Workdir,
    count_layer,
    count_rows,
    ensure_view,
    memory_connection,
    read_layer,
    source_lock,
    sql_str,
    write_parquet,
)

Log = Callable[[str], None]

#: stage name, input layer, output layer - in graph order
STAGES: list[tuple[str, str, str]] = [
    ("extract", "raw_pages", "extracted_documents"),
    ("clean", "extracted_documents", "cleaned_documents"),
    ("dedup", "cleaned_documents", "deduplicated_documents"),
    ("label", "deduplicated_documents", "labelled_documents"),
    ("decontaminate", "labelled_documents", "decontaminated_documents"),
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
    return ensure_view(wd, layer, target_sql or f"read_parquet({sql_str(wd.layer_glob(layer))})")


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


def crawl_source(source: CrawlSource, wd: Workdir, log: Log = _noop) -> tuple[Batch, dict]:
    """Crawl one source in its own OS process and land the batch as gzip JSONL.

    With ``resumable`` an interrupted crawl leaves its Scrapy job state under
    ``raw/<source>/state/``; the next crawl of the source resumes it (same crawl_id).
    With ``conditional_requests`` the validators of the stored pages are sent along.
    """
    import shutil

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
        (state / "crawl_id").write_text(crawl_id + "\n", encoding="utf-8")
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
        spec = CrawlSpec(
            source=source.name,
            crawl_id=crawl_id,
            start_urls=t["start_urls"],
            allowed_domains=t["allowed_domains"],
            output_path=str(out),
            max_pages=source.max_pages,
            max_depth=source.max_depth,
            max_bytes_per_page=source.max_bytes_per_page,
            concurrency=source.concurrency,
            download_delay=source.download_delay,
            obey_robots=source.obey_robots,
            user_agent=source.user_agent,
            record_base_url=t["record_base_url"],
            timeout_s=source.timeout_s,
            sitemap_urls=t["sitemap_urls"],
            allow_url_patterns=list(source.allow_url_patterns),
            deny_url_patterns=list(source.deny_url_patterns),
            accepted_content_types=list(source.accepted_content_types),
            allow_addresses=t["allow_addresses"],
            known_pages_path=str(known) if n_known else None,
            state_dir=str(state / "job") if source.resumable else None,
            max_redirects=source.max_redirects,
            retry_times=source.retry_times,
            retry_backoff_s=source.retry_backoff_s,
            download_timeout_s=source.download_timeout_s,
            trap_max_per_pattern=source.trap_max_per_pattern,
        )
        try:
            summary = run_crawl(spec, log=log)
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


def source_files(source: Source, wd: Workdir) -> list[tuple[Path, str]]:
    """(file, kind) to ingest for a source: its configured paths (dump sources) and its inbox."""
    files: list[tuple[Path, str]] = []
    if isinstance(source, DumpSource):
        for pattern in source.paths:
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches and not glob.has_magic(pattern):
                raise FileNotFoundError(f"source {source.name!r}: path {pattern} does not exist")
            files += [(m, source.kind) for m in matches if m.is_file()]
    inbox = wd.inbox(source.name)
    if inbox.is_dir():
        dropped = sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith("."))
        if dropped:
            from dataset_platform.ingest.files import kind_for_path

            files += [(f, kind_for_path(f)) for f in dropped]
    return files


def ingest_source_files(source: Source, wd: Workdir, log: Log = _noop) -> list[str]:
    """Land every file of a source not landed before (a file's batch id is its content hash).

    Inbox files move to ``inbox/<source>/processed/`` once landed.
    """
    landed: list[str] = []
    files = source_files(source, wd)
    if not files:
        return landed
    from dataset_platform.ingest.files import batch_file_name, batch_id_for, ingest_file
    from dataset_platform.ingest.load import landed_batch

    fields = dict(source.fields) if isinstance(source, DumpSource) else {}
    for path, kind in files:
        batch_id = batch_id_for(path, source.name)
        out = wd.raw_batches(source.name) / batch_file_name(batch_id)
        if landed_batch(wd, source.name, batch_id) is None:  # either format: batches of earlier versions count
            summary = ingest_file(path, source=source.name, kind=kind, output_path=out, fields=fields or None, log=log)
            log(f"{source.name}: landed {path.name} as {batch_id}: {summary.records} records")
            landed.append(batch_id)
        else:
            log(f"{source.name}: {path.name} was landed before as {batch_id}; skipped")
        if path.parent == wd.inbox(source.name):
            done = path.parent / "processed"
            done.mkdir(exist_ok=True)
            os.replace(path, done / path.name)
    return landed


def _retire_unknown_sources(cfg: PlatformConfig, wd: Workdir, log: Log) -> None:
    """Partitions of sources no longer in the config leave the layer (moved to ``retired/``)."""
    names = {s.name for s in cfg.sources}
    for layer in ("raw_pages", "crawl_log"):
        folder = wd.layers / layer
        if not folder.is_dir():
            continue
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in names):
            dest = wd.root / "retired" / layer / d.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                import shutil

                shutil.rmtree(dest)
            os.replace(d, dest)
            log(f"source {d.name!r} is no longer in the config: its {layer} partition moved to {dest}")


def materialise_raw(
    cfg: PlatformConfig, wd: Workdir, log: Log = _noop, *, sources: list[str] | None = None,
    crawl: bool = True,
) -> LayerResult:
    """Refresh the raw partitions of ``sources`` (default: all): crawl (crawl sources, unless
    ``crawl=False``), land new files (configured paths and the inbox), then load every pending
    batch into crawl_log and the source's raw_pages partition. Other sources are untouched."""
    from dataset_platform.ingest.load import ingest_pending

    t0 = time.monotonic()
    wd.ensure()
    by_name = {s.name: s for s in cfg.sources}
    unknown = sorted(set(sources or []) - set(by_name))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; sources.yaml declares {sorted(by_name)}")
    _retire_unknown_sources(cfg, wd, log)
    per_source: dict[str, dict] = {}
    con = memory_connection()
    try:
        for name in sources or list(by_name):
            source = by_name[name]
            crawl_stats = None
            with source_lock(wd, name, log):
                if isinstance(source, CrawlSource) and crawl:
                    _, crawl_stats = crawl_source(source, wd, log)
                ingest_source_files(source, wd, log)
                per_source[name] = ingest_pending(con, wd, name, log=log)
            per_source[name]["crawl"] = crawl_stats
            if not wd.raw_partition(name).exists():
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
    result = LayerResult("raw_pages", rows, wd.layers / "raw_pages", counters=counters, seconds=time.monotonic() - t0)
    _write_stats(wd, "raw_pages", result)
    _publish_view(wd, "raw_pages", f"read_parquet({sql_str(wd.layer_glob('raw_pages'))})")
    _publish_view(wd, "crawl_log", f"read_parquet({sql_str(wd.layer_glob('crawl_log'))})")
    return result


def crawl_log_summary(wd: Workdir) -> dict:
    """Outcome counts of the newest batch of each source (for metadata and the CLI)."""
    con = memory_connection()
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


# ------------------------------------------------------------------ document stages


def _run_stage(cfg: PlatformConfig, wd: Workdir, layer: str, log: Log) -> LayerResult:
    stage = STAGE_OF_LAYER[layer]
    upstream = next(inp for s, inp, _ in STAGES if s == stage)
    t0 = time.monotonic()
    src = read_layer(wd, upstream)
    bs = cfg.pipeline.batch_size
    kept_sql, after_write, more_layers, counters = None, None, (), {}
    if stage == "dedup":
        # whole-corpus sorts and joins: bounded, spilling beyond the limit
        con = memory_connection(memory_limit=cfg.pipeline.dedup.memory_limit, temp_dir=wd.root / "tmp" / "dedup")
    else:
        con = memory_connection()
    if stage == "extract":
        res = run_extract(con, src, batch_size=bs, log=log, options=options_from(cfg.pipeline.extract))
    elif stage == "clean":
        res = run_clean(con, src, cfg.pipeline.clean, batch_size=bs, log=log)
    elif stage == "dedup":
        # the layer is stored in parts: a refresh writes a part with its new rows (and rewrites
        # only parts that lost a row), not the whole layer; the layer, the clusters and the
        # rejects are written here, committed once the run's other outputs are
        res, commit = dedup_into_parts(con, src, cfg.pipeline.dedup, PartedLayer(wd.layers / layer, layer),
                                       MinHashIndex(minhash_index_path(wd)), clusters_path=wd.layer("duplicate_clusters"),
                                       rejects_path=wd.rejects(stage), log=log)
        more_layers = ("duplicate_clusters",)

        def after_write(_con) -> None:
            commit()
    elif stage == "label":
        res, counters, after_write = _label(cfg, wd, con, src, log)
        more_layers = ("human_annotations",)
    elif stage == "decontaminate":
        from dataset_platform.stages.decontaminate import run_decontaminate

        res = run_decontaminate(con, src, cfg.pipeline.decontamination, batch_size=bs, log=log)
        kept_sql = "SELECT * FROM kept"  # a view over the input, in its (id) order
        counters = {"benchmarks": [
            [k.split(":", 1)[1], int(v), int(res.extra.get("matched:" + k.split(":", 1)[1], 0))]
            for k, v in sorted(res.extra.items()) if k.startswith("items:")]}
    else:  # pragma: no cover - STAGES and this switch are kept together
        raise ValueError(stage)
    label_sets = cfg.label_set_names if layer in LABELLED_LAYERS else ()
    if layer not in PARTITIONED_LAYERS:  # (a layer in parts is written above, with its rejects)
        write_outputs(con, layer, wd.layer(layer), wd.rejects(stage), kept_sql=kept_sql, label_sets=label_sets)
    if after_write is not None:
        after_write(con)
    con.close()
    log(res.summary())
    result = LayerResult(layer, res.kept_rows, wd.layers / layer if layer in PARTITIONED_LAYERS else wd.layer(layer),
                         stage=res, counters=counters,
                         seconds=time.monotonic() - t0)
    _write_stats(wd, layer, result)
    for name in (layer, *more_layers):
        _publish_view(wd, name)
    return result


def annotation_files(wd: Workdir) -> list[Path]:
    """Label Studio exports: waiting in ``inbox/annotations/`` and imported before (``processed/``);
    every one is read each time, so the human labels are a pure function of these files."""
    folder = wd.annotations_inbox
    files = []
    for d in (folder / "processed", folder):
        if d.is_dir():
            files += [p for p in d.iterdir() if p.is_file() and p.suffix == ".json" and not p.name.startswith(".")]
    waiting = {p.name for p in files if p.parent == folder}
    # a file waiting again under an imported name supersedes the imported copy
    return sorted((p for p in files if p.parent == folder or p.name not in waiting), key=lambda p: p.name)


def _label(cfg: PlatformConfig, wd: Workdir, con, src: str, log: Log):
    """The label stage: gold labels, imported human labels (all Label Studio exports), the rules
    and classifiers, then the review export for the next annotation round."""
    from dataset_platform.stages.label import annotation as ann
    from dataset_platform.stages.label.stage import read_gold

    settings = cfg.pipeline.labels
    gold = read_gold(Path(settings.gold), settings.sets) if settings.gold else None
    files = annotation_files(wd)
    annotations = ann.read_exports(files, sets=settings.sets)
    con.register("_ann", annotations)
    write_parquet(con, "SELECT * FROM _ann ORDER BY doc_id, label_set, annotator",
                  wd.layer("human_annotations"), layer="human_annotations")
    human = ann.resolve(annotations) if annotations.num_rows else None
    agreement = ann.agreement(annotations) if annotations.num_rows else {}
    if files:
        log(f"human labels: {annotations.num_rows} from {len(files)} Label Studio export(s); agreement "
            + (", ".join(f"{k}: {v.get('method')} kappa={v.get('kappa')}" for k, v in sorted(agreement.items())) or "n/a"))
    res = run_label(con, src, settings, gold=gold, human=human, batch_size=cfg.pipeline.batch_size, log=log)
    con.unregister("_ann")
    queue = ann.select_for_review(con, "label_details", settings.review, seed=settings.seed)
    tasks = ann.export_tasks(con, queue, "kept", "label_details", settings.sets)
    paths = ann.write_export(wd.annotation_export, tasks, ann.labeling_config(settings.sets))
    log(f"review: {len(tasks)} Label Studio task(s) written to {paths['tasks']}")
    res.extra["review_tasks"] = len(tasks)
    res.extra["human_annotations"] = annotations.num_rows
    for name, a in agreement.items():
        if a.get("kappa") is not None:
            res.extra[f"kappa:{name}"] = round(float(a["kappa"]), 4)
    counters = {"agreement": agreement, "review_tasks": len(tasks), "annotation_files": [p.name for p in files],
                "export": str(paths["tasks"])}

    def after_write(_con) -> None:
        # imported files move to processed/ once the layer that used them is written
        done = wd.annotations_inbox / "processed"
        for p in files:
            if p.parent == wd.annotations_inbox:
                done.mkdir(parents=True, exist_ok=True)
                os.replace(p, done / p.name)
    return res, counters, after_write


def minhash_index_path(wd: Workdir) -> Path:
    """The dedup stage's MinHash index (stages/dedup/index.py), beside its layer."""
    return wd.layer("deduplicated_documents").parent / "minhash_index"


def materialise_extracted(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "extracted_documents", log)


def materialise_cleaned(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "cleaned_documents", log)


def materialise_deduplicated(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "deduplicated_documents", log)


def materialise_labelled(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "labelled_documents", log)


def materialise_decontaminated(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    return _run_stage(cfg, wd, "decontaminated_documents", log)


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
            count_layer(con, wd, upstream),
            count_layer(con, wd, layer),
            count_rows(con, wd.rejects(stage)) if wd.rejects(stage).exists() else 0,
        )
    finally:
        con.close()


def split_assignments_path(wd: Workdir) -> Path:
    """Every (id, split) any release assigned: documents keep their split for good."""
    return wd.layer("split_assignments")


def materialise_release(cfg: PlatformConfig, wd: Workdir, log: Log = _noop, *, lineage: dict | None = None) -> ReleaseInfo:
    con = memory_connection()
    stages = []
    for stage, _, _ in STAGES:
        i, k, r = accounting(wd, stage)
        stages.append([stage, i, k, r])
    rejected = read_stats(wd, "rejected_documents") or {}
    labelled = read_stats(wd, "labelled_documents") or {}
    decon = read_stats(wd, "decontaminated_documents") or {}
    dc = cfg.pipeline.decontamination
    stats = {
        "sources": [f"{s.name} ({s.kind})" for s in cfg.sources],
        "stages": stages,
        "reasons": rejected.get("counters", {}).get("reasons", []),
        "agreement": labelled.get("counters", {}).get("agreement", {}),
        "decontamination": {"ngram": dc.ngram, "cjk_ngram": dc.cjk_ngram,
                            "benchmarks": (decon.get("counters") or {}).get("benchmarks", [])},
    }
    prev = split_assignments_path(wd)
    augment = None
    if cfg.pipeline.augmentation.enabled:
        from dataset_platform.release.augment import augment_train

        aug = cfg.pipeline.augmentation
        augment = lambda c: augment_train(c, aug)
    info = publish_release(
        con, read_layer(wd, "decontaminated_documents"), wd.releases, cfg.dataset, cfg.pipeline.splits,
        config_fingerprint=cfg.fingerprint(), stats=stats, label_sets=cfg.label_set_names,
        release=cfg.pipeline.release, previous_assignments_sql=f"read_parquet({sql_str(prev)})" if prev.exists() else None,
        lineage=lineage, augment=augment,
    )
    # only once the release is in place: a failed publish keeps the old assignments
    write_parquet(con, "SELECT id, split, group_key FROM split_assignments ORDER BY id", prev)
    con.close()
    log(f"release {info.dataset} {info.version}: {info.rows} at {info.path}" + ("" if info.created else " (unchanged)")
        + f"; against {info.previous or 'no earlier release'}: {info.diff}")
    _publish_view(wd, "dataset_release", release_view_sql(info.path))
    return info


def current_release(cfg: PlatformConfig, wd: Workdir) -> Path | None:
    return latest_release(wd.releases, cfg.dataset.name)
