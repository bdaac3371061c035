"""The checks' logic, without Dagster: each function measures one invariant of the stored layers
and returns an :class:`Outcome` (``defs/quality.py`` turns it into an asset check result).

They read narrow columns (ids, URLs, counts from Parquet footers); a scan of texts happens only in
:func:`no_structured_pii`, over the parts not scanned clean yet (``checks/scope.py``: normally
those the last materialisation wrote).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dataset_platform.storage import files_sql, parquet_rows, query_connection, read_layer, sql_str
from dataset_platform.workdir import Workdir

ERROR, WARN = "ERROR", "WARN"


@dataclass
class Outcome:
    passed: bool
    severity: str = ERROR  # what a failure means: ERROR blocks what is below, WARN does not
    metadata: dict = field(default_factory=dict)
    description: str | None = None


def no_release() -> Outcome:
    return Outcome(False, ERROR, {"error": "no release has been published"})


# ------------------------------------------------------------------ accounting


def accounting(wd: Workdir, stage) -> tuple[int, int, int]:
    """(documents in, kept, rejected) of a stage, counted from the files' footers: the input layer's
    data files, the output layer's, and the stage's rejects."""
    from dataset_platform.storage.batched import REJECTED

    inp = sum(parquet_rows(f) for f in wd.layer_files(stage.input))
    kept = sum(parquet_rows(f) for f in wd.layer_files(stage.output))
    if stage.per_batch:
        rej = sum(parquet_rows(f) for f in wd.layer_files(stage.output, REJECTED))
    else:
        rej = parquet_rows(wd.rejects(stage.name)) if wd.rejects(stage.name).exists() else 0
    return inp, kept, rej


def accounting_outcome(wd: Workdir, stage) -> Outcome:
    i, k, r = accounting(wd, stage)
    return Outcome(i == k + r, ERROR, {"input": i, "kept": k, "rejected": r, "unaccounted": i - k - r})


# ------------------------------------------------------------------ reconciliation


def release_reconciles_with_crawl(wd: Workdir, release: Path) -> Outcome:
    """Every stored page is in the release or in rejected_documents, exactly once."""
    from dataset_platform.release.publish import release_view_sql
    from dataset_platform.runner import rejected_sql

    con = query_connection()
    try:
        raw, released, rejected, missing, both = con.sql(f"""
            WITH raw AS (SELECT id FROM {read_layer(wd, 'raw_pages')}),
                 rel AS (SELECT id FROM {release_view_sql(release)}),
                 rej AS (SELECT DISTINCT id FROM {rejected_sql(wd)})
            SELECT (SELECT count(*) FROM raw), (SELECT count(*) FROM rel), (SELECT count(*) FROM rej),
                   (SELECT count(*) FROM raw WHERE id NOT IN (SELECT id FROM rel) AND id NOT IN (SELECT id FROM rej)),
                   (SELECT count(*) FROM rel WHERE id IN (SELECT id FROM rej))
        """).fetchall()[0]
    finally:
        con.close()
    return Outcome(missing == 0 and both == 0 and raw == released + rejected, ERROR,
                   {"crawled": raw, "released": released, "rejected": rejected,
                    "unaccounted": missing, "released_and_rejected": both})


#: bump when what reconciles_with_crawl_log finds in a raw part changes
RECONCILE_VERSION = "1"


def raw_reconciles_with_crawl_log(wd: Workdir) -> Outcome:
    """Every stored page has its 'fetched' record in crawl_log, and every URL the newest crawl of a
    source fetched or found not_modified is stored.

    Per part, by difference: a raw part is written whole and never changed in place, and a batch's
    crawl_log file is written once, so the first half is checked on the raw parts not checked clean
    yet (a ledger, ``checks/scope.py``), each against the crawl_log files of the crawls its rows
    name. The second half reads the crawl_log of the newest crawl batch of each crawl source and
    that source's raw parts (dump sources have none: their files are not crawls)."""
    from dataset_platform.checks.scope import Ledger, fingerprint, stored_layer

    files = stored_layer(wd, "raw_pages")
    if files is None:
        read_layer(wd, "raw_pages")  # (raises: not materialised yet, with what to do)
        return Outcome(False, ERROR, {"error": "raw_pages has not been materialised"})
    ledger = Ledger(wd, "raw_pages", "reconciles_with_crawl_log", fingerprint(RECONCILE_VERSION))
    todo = ledger.pending(files.units)
    con = query_connection()
    try:
        orphans = 0
        if todo:
            raw = files_sql([u.file for u in todo])
            crawls = con.sql(f"SELECT DISTINCT source, crawl_id FROM {raw} ORDER BY ALL").fetchall()
            logs = [f for source, crawl_id in crawls if (f := wd.crawl_log_file(source, crawl_id)).exists()]
            log_sql = files_sql(logs) if logs else "(SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS crawl_id, " \
                                                   "NULL::VARCHAR AS url, NULL::VARCHAR AS outcome WHERE false)"
            orphans = con.sql(f"""
                SELECT count(*) FROM (SELECT source, crawl_id, url FROM {raw}) r WHERE NOT EXISTS (
                  SELECT 1 FROM (SELECT source, crawl_id, url FROM {log_sql} WHERE outcome = 'fetched') l
                  WHERE l.source = r.source AND l.crawl_id = r.crawl_id AND l.url = r.url)""").fetchall()[0][0]
        # the newest crawl batch per source (crawl ids end in a UTC timestamp + Z; dump batches do not)
        newest = []
        for source_dir in sorted(p for p in wd.layer_dir("crawl_log").glob("*") if p.is_dir()):
            crawls = sorted(f.stem for f in source_dir.glob("*.parquet") if _CRAWL_ID.search(f.stem))
            if crawls:
                newest.append((source_dir.name, crawls[-1]))
        missing = 0
        for source, crawl_id in newest:
            stored = [u.file for u in files.units if u.key.startswith(source + "/")]
            stored_sql = files_sql(stored) if stored else "(SELECT NULL::VARCHAR AS url WHERE false)"
            missing += con.sql(f"""
                SELECT count(*) FROM {files_sql([wd.crawl_log_file(source, crawl_id)])} l
                WHERE l.outcome IN ('fetched', 'not_modified')
                  AND NOT EXISTS (SELECT 1 FROM (SELECT url FROM {stored_sql}) r WHERE r.url = l.url)""").fetchall()[0][0]
    finally:
        con.close()
    with_pages = {u.key.split("/", 1)[0] for u in files.units if (u.rows if u.rows is not None else parquet_rows(u.file))}
    passed = orphans == 0 and missing == 0
    if passed:
        ledger.record(files.units, todo)
    return Outcome(passed, ERROR,
                   {"stored_without_fetched_record": orphans, "fetched_but_not_stored": missing,
                    "sources_with_pages": len(with_pages), "parts_checked": len(todo), "layer_parts": len(files.units)})


_CRAWL_ID = re.compile(r"-[0-9]{8}T[0-9]{6,}Z$")


# ------------------------------------------------------------------ PII


#: bump when what no_structured_pii finds changes without the cleaned layer being recomputed
PII_CHECK_VERSION = "4"  # 2: URLs scanned, full-width and zero-width forms unhidden; 3: issue 21 formats;
# 4: every string column


def structured_pii_check(wd: Workdir, cfg=None) -> Outcome:
    """:func:`no_structured_pii` over the parts of cleaned_documents this check has not scanned
    clean yet (``checks/scope.py``: normally the parts the last materialisation wrote; parts of
    a failed scan stay pending, so a failure blocks until the layer is fixed). The parts are
    scanned in parallel (:func:`scan_runner`: Ray tasks with ``pipeline.executor: ray``)."""
    from dataset_platform.checks.scope import Ledger, fingerprint, stored_layer
    from dataset_platform.stages.clean.pii import PII_TYPES

    files = stored_layer(wd, "cleaned_documents")
    if files is None:
        return Outcome(False, ERROR, {"error": "cleaned_documents has not been materialised"})
    ledger = Ledger(wd, "cleaned_documents", "no_structured_pii", fingerprint(PII_CHECK_VERSION, list(PII_TYPES)))
    todo = ledger.pending(files.units)
    total = files.known_rows()
    paths = [u.file for u in todo]
    with scan_runner(cfg, paths, rows=sum(u.rows if u.rows is not None else parquet_rows(u.file) for u in todo)) \
            as (run, where):
        out = no_structured_pii(paths, run=run,
                                scanned_of=total if total is not None else sum(parquet_rows(u.file) for u in files.units))
    out.metadata.update({"parts_scanned": len(todo), "layer_parts": len(files.units), "scanned_on": where})
    if out.passed:
        ledger.record(files.units, todo)
    return out


#: parts with fewer rows than this in all are scanned in this process (a worker's start costs more)
PARALLEL_SCAN_ROWS = 20_000


def pii_rows_pending(wd: Workdir) -> int:
    """Rows of the parts of cleaned_documents :func:`structured_pii_check` would scan now."""
    from dataset_platform.checks.scope import Ledger, fingerprint, stored_layer
    from dataset_platform.stages.clean.pii import PII_TYPES

    files = stored_layer(wd, "cleaned_documents")
    if files is None:
        return 0
    ledger = Ledger(wd, "cleaned_documents", "no_structured_pii", fingerprint(PII_CHECK_VERSION, list(PII_TYPES)))
    return sum(u.rows if u.rows is not None else parquet_rows(u.file) for u in ledger.pending(files.units))


def scan_runner(cfg, files: list[Path], rows: int | None = None):
    """``(run, where)`` (a context manager): how :func:`no_structured_pii` scans ``files`` -- each
    file a Ray task with ``pipeline.executor: ray`` (the scan runs on the cluster, beside the
    stages' parts), else a spawned worker process per CPU when there are several files and enough
    rows to pay for the workers' start (``rows``: theirs, when known), else one after another in
    this process (``cluster.runners.map_runner``). The verdict is the same either way."""
    from dataset_platform.cluster.runners import map_runner

    def worth_workers() -> bool:
        return (rows if rows is not None else sum(parquet_rows(f) for f in files)) >= PARALLEL_SCAN_ROWS

    return map_runner(cfg, "no_structured_pii", len(files), worth_workers)


def no_structured_pii(files: list[Path], *, scanned_of: int | None = None, run=None) -> Outcome:
    """No structured PII (core PII types) left in any string column of ``files`` (the text, the title,
    the URL, and whatever else is published with them; streamed in bounded Arrow batches; ``id`` and
    ``content_hash`` are ours). ``scanned_of``: the layer's row count, when ``files`` are the parts
    the last materialisation wrote (the others were scanned when they were written). ``run(fn,
    items)`` maps the scan of one file over ``files`` in order (default: here, one after another)."""
    from dataset_platform.stages.clean.pii import PII_TYPES

    per_type = dict.fromkeys(PII_TYPES, 0)
    rows = docs = 0
    examples: list[str] = []
    for found in (run or map)(scan_file_for_pii, [str(f) for f in files]):
        rows += found["rows"]
        docs += found["documents"]
        for t, n in found["per_type"].items():
            per_type[t] = per_type.get(t, 0) + n
        examples += found["examples"][:5 - len(examples)]
    total = sum(per_type.values())
    md = {"rows_scanned": rows, "pii_found": total, "documents_with_pii": docs,
          **{f"pii_{t}": n for t, n in per_type.items()}, "example_ids": ", ".join(examples) or "none"}
    if scanned_of is not None:
        md["layer_rows"] = scanned_of
    return Outcome(total == 0, ERROR, md)


def scan_file_for_pii(path: str) -> dict:
    """What :func:`no_structured_pii` finds in one file: rows, documents with PII, PII per type and
    up to five example ids (a module-level function of plain data: it runs in a worker process or a
    Ray task as well)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_platform.stages.clean.pii import find_pii_batch, redact_urls

    per_type: dict[str, int] = {}
    rows = docs = 0
    examples: list[str] = []
    pf = pq.ParquetFile(path)
    # the text and every other string published with it (title, URL, date, ...)
    strings = [f.name for f in pf.schema_arrow
               if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
               and f.name not in ("id", "text", "url", "content_hash", "crawl_id", "quality")]  # (ours)
    cols = ["id", "text", *strings, *(["url"] if "url" in pf.schema_arrow.names else [])]
    for batch in pf.iter_batches(batch_size=2048, columns=cols):
        rows += batch.num_rows
        found: list[list[str]] = [[sp.type for sp in s] for _, s in find_pii_batch(batch.column("text"))]
        for col in strings:
            found = [a + [sp.type for sp in b] for a, (_, b) in zip(found, find_pii_batch(batch.column(col)))]
        if "url" in cols:
            found = [a + b for a, b in zip(found, redact_urls(batch.column("url"))[1])]
        for doc_id, types in zip(batch.column(0).to_pylist(), found):
            if types:
                docs += 1
                for t in types:
                    per_type[t] = per_type.get(t, 0) + 1
                if len(examples) < 5:
                    examples.append(f"{doc_id} ({', '.join(sorted(set(types)))})")
    return {"rows": rows, "documents": docs, "per_type": per_type, "examples": examples}


# ------------------------------------------------------------------ the release


def commit_points(wd: Workdir) -> tuple:
    """The identities of every commit point of the work folder: the manifests of the layers stored
    by batch, the files written whole (split assignments, dedup's rejects, duplicate_clusters) and
    each dataset's pointer to its current release. Changes whenever a layer or the release does
    (``checks/ahead.py``: a result started ahead is used only on the same)."""
    from dataset_platform.checks.scope import stat_identity

    files = [*sorted(wd.layers.glob("*/manifest.json")), *sorted(wd.layers.glob("*/*/manifest.json")),
             *sorted(wd.layers.glob("*/*.parquet")), *sorted(wd.releases.glob("*/LATEST"))]
    return tuple((str(f), stat_identity(f)) for f in files if f.exists())


def split_leakage(wd: Workdir, release: Path) -> Outcome:
    """No URL, near-duplicate cluster or split group has documents in two splits, and no augmented
    copy is outside train."""
    from dataset_platform.release.publish import release_view_sql

    rel = release_view_sql(release)
    con = query_connection()
    try:
        by_url, by_cluster, by_group, augmented = con.sql(f"""
            WITH r AS (SELECT id, url, split, augmented_from FROM {rel}),
                 d AS (SELECT id, content_hash FROM {read_layer(wd, 'decontaminated_documents')}),
                 a AS (SELECT id, group_key FROM read_parquet({sql_str(wd.split_assignments)}))
            SELECT
              (SELECT count(*) FROM (SELECT url FROM r WHERE augmented_from IS NULL GROUP BY url
                                     HAVING count(DISTINCT split) > 1)),
              (SELECT count(*) FROM (SELECT d.content_hash FROM r JOIN d USING (id) GROUP BY 1
                                     HAVING count(DISTINCT r.split) > 1)),
              (SELECT count(*) FROM (SELECT a.group_key FROM r JOIN a USING (id) GROUP BY 1
                                     HAVING count(DISTINCT r.split) > 1)),
              (SELECT count(*) FROM r WHERE augmented_from IS NOT NULL AND split <> 'train')
        """).fetchall()[0]
    finally:
        con.close()
    return Outcome(by_url == 0 and by_cluster == 0 and by_group == 0 and augmented == 0, ERROR,
                   {"urls_in_two_splits": by_url, "clusters_in_two_splits": by_cluster,
                    "groups_in_two_splits": by_group, "augmented_outside_train": augmented})


def split_shares(release: Path, column: str) -> list[tuple]:
    """(split, value, share in the split, share in the whole, deviation) of a label column of the
    original (not augmented) documents, largest deviation first."""
    from dataset_platform.release.publish import release_view_sql

    con = query_connection()
    try:
        return con.sql(f"""
            WITH r AS (SELECT "{column}" AS v, split FROM {release_view_sql(release)} WHERE augmented_from IS NULL),
                 whole AS (SELECT v, count(*) / (SELECT count(*) FROM r) AS share FROM r GROUP BY v),
                 per AS (SELECT split, v, count(*) / sum(count(*)) OVER (PARTITION BY split) AS share
                         FROM r GROUP BY split, v),
                 grid AS (SELECT s.split, w.v, w.share AS whole_share FROM (SELECT DISTINCT split FROM r) s
                          CROSS JOIN whole w)
            SELECT g.split, g.v, round(coalesce(p.share, 0), 4), round(g.whole_share, 4),
                   round(abs(coalesce(p.share, 0) - g.whole_share), 4) AS dev
            FROM grid g LEFT JOIN per p ON p.split = g.split AND p.v = g.v
            ORDER BY dev DESC, 1, 2
        """).fetchall()
    finally:
        con.close()


def release_diversity(release: Path, label_sets: list[str], q, cache: Path | None = None) -> list:
    """The diversity findings (``checks/diversity.py``) of the original documents of a release;
    ``cache``: counted from counts kept per data file there (only shards not counted before are
    read), else over the whole release."""
    from dataset_platform.checks.diversity import assess, measure, measure_files
    from dataset_platform.checks.scope import release_files
    from dataset_platform.release.publish import release_view_sql

    con = query_connection()
    try:
        if cache is not None:
            measures = measure_files(con, [(u.file, u.identity) for u in release_files(release).units], label_sets,
                                     cache)
        else:
            measures = measure(con, f"(SELECT * FROM {release_view_sql(release)} WHERE augmented_from IS NULL)",
                               label_sets)
    finally:
        con.close()
    return assess(measures, min_sources=q.min_sources, min_languages=q.min_languages, min_domains=q.min_domains,
                  min_label_values=q.min_label_values, max_label_share=q.max_label_share)


# ------------------------------------------------------------------ inbox


def refused_inbox_files(wd: Workdir, sources: list[str]) -> Outcome:
    """Files the raw refresh refused (moved to ``inbox/<source>/rejected/`` with a ``.reason.txt``) and
    nobody has dealt with yet: a WARN for as long as they wait there, so a refused file is not missed."""
    from dataset_platform.ingest.refresh import REJECTED

    rows = []
    for source in sources:
        folder = wd.inbox(source) / REJECTED
        for reason in sorted(folder.glob("*.reason.txt")) if folder.is_dir() else ():
            why = reason.read_text(encoding="utf-8", errors="replace").strip()
            rows.append((source, reason.name.removesuffix(".reason.txt"), why))
    md: dict = {"files_waiting": len(rows)}
    if rows:
        md["files"] = "\n".join(f"{s}/{REJECTED}/{f}: {why}" for s, f, why in rows[:50])
    description = None if not rows else (
        f"{len(rows)} inbox file(s) refused and waiting in inbox/<source>/{REJECTED}/: "
        + "; ".join(f"{s}/{f} ({why[:120]})" for s, f, why in rows[:3])
        + (" ..." if len(rows) > 3 else "")
        + ". Fix and drop them into the inbox again, or delete them (with their .reason.txt) to clear this warning")
    return Outcome(not rows, WARN, md, description)
