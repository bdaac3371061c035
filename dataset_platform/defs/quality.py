"""Asset checks: a GX suite per layer, and the accounting of every document.

Failed critical expectations (and broken accounting) are ERROR and ``blocking``: downstream
assets in the same run do not materialise, so bad data never reaches a release. Failed warning
expectations are WARN and do not block.
"""


import os
from pathlib import Path

import dagster as dg

from dataset_platform import pipeline
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.storage import PARTITIONED_LAYERS, memory_connection, read_layer

LAYERS_WITH_SUITES = [
    "raw_pages", "crawl_log", "extracted_documents", "cleaned_documents", "deduplicated_documents",
    "duplicate_clusters", "labelled_documents", "human_annotations", "decontaminated_documents",
    "rejected_documents", "dataset_release",
]


def expectations_dir() -> Path:
    """``expectations/`` of the checkout (or $DATASET_PLATFORM_EXPECTATIONS)."""
    env = os.environ.get("DATASET_PLATFORM_EXPECTATIONS")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "expectations"
    if not d.is_dir():
        raise FileNotFoundError(
            f"GX suites not found at {d}: install from a checkout (`pip install -e .`) or set "
            "DATASET_PLATFORM_EXPECTATIONS to the expectations/ folder"
        )
    return d


def _gx_check(layer: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=layer,
        name="gx_suite",
        blocking=True,
        description=f"Great Expectations suite expectations/{layer}.json over the whole table "
                    "(critical expectations ERROR and block downstream; warnings WARN).",
    )
    def _check(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> dg.AssetCheckResult:
        from dataset_platform.checks.gx_suites import (
            validate_parquet,
            validate_relation,
        )

        suite = expectations_dir() / f"{layer}.json"
        wd = platform.wd
        label_sets = platform.config.label_values
        if layer == "dataset_release":
            release = pipeline.current_release(platform.config, wd)
            if release is None:
                return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"error": "no release has been published"})
            from dataset_platform.release.publish import release_view_sql

            con = memory_connection()
            try:
                outcome = validate_relation(con, f"SELECT * FROM {release_view_sql(release)}", suite,
                                            label_sets=label_sets)
            finally:
                con.close()
        elif layer in PARTITIONED_LAYERS:
            con = memory_connection()
            try:
                outcome = validate_relation(con, f"SELECT * FROM {read_layer(wd, layer)}", suite)
            finally:
                con.close()
        else:
            outcome = validate_parquet(wd.layer(layer), suite, label_sets=label_sets)
        critical_ok, warn_ok = outcome.critical_passed, outcome.warnings_passed
        failed = [o for o in outcome.outcomes if not o.success]
        context.log.info(f"{layer}: {len(outcome.outcomes)} expectations, {len(failed)} failed over {outcome.row_count} rows")
        docs: dict = {}
        try:  # the report is a convenience: a rendering problem must not change the check's verdict
            from dataset_platform.checks.data_docs import build_data_docs

            page = build_data_docs(outcome, wd.data_docs, context.run.run_id)
            docs = {"data_docs": dg.MetadataValue.path(str(page)),
                    "data_docs_index": dg.MetadataValue.path(str(wd.data_docs / "site" / "index.html"))}
        except Exception as e:  # noqa: BLE001
            context.log.warning(f"{layer}: GX Data Docs not built: {type(e).__name__}: {e}")
            docs = {"data_docs_error": f"{type(e).__name__}: {e}"[:500]}
        return dg.AssetCheckResult(
            passed=critical_ok and warn_ok,
            severity=dg.AssetCheckSeverity.ERROR if not critical_ok else dg.AssetCheckSeverity.WARN,
            metadata={
                "rows_validated": outcome.row_count,
                "expectations": len(outcome.outcomes),
                "failed_critical": len(outcome.failed("critical")),
                "failed_warning": len(outcome.failed("warning")),
                "failed_info": len(outcome.failed("info")),  # informational only: never fail the check
                "results": dg.MetadataValue.md(outcome.to_markdown()),
                **docs,
            },
        )

    return _check


def _accounting_check(stage: str, layer: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=layer,
        name="accounting",
        blocking=True,
        description=f"{stage}: documents in = kept + rejected (nothing lost unaccounted).",
    )
    def _check(platform: PlatformResource) -> dg.AssetCheckResult:
        i, k, r = pipeline.accounting(platform.wd, stage)
        return dg.AssetCheckResult(
            passed=i == k + r,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"input": i, "kept": k, "rejected": r, "unaccounted": i - k - r},
        )

    return _check


def _drop_rate_check(stage: str, layer: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=layer,
        name="drop_rate_stable",
        blocking=False,
        description=f"{stage}: the share of documents dropped did not jump against the previous materialisation "
                    "(pipeline.max_drop_rate_change share points; WARN only).",
    )
    def _check(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> dg.AssetCheckResult:
        from dataset_platform.checks.drift import drop_rate_change

        records = context.instance.fetch_materializations(dg.AssetKey(layer), limit=2).records

        def counts(record) -> tuple[int, int] | None:
            md = record.asset_materialization.metadata if record.asset_materialization else {}
            if "input_rows" not in md or "rejected_rows" not in md:
                return None
            return int(md["input_rows"].value), int(md["rejected_rows"].value)

        current = counts(records[0]) if records else None
        if current is None:
            return dg.AssetCheckResult(passed=True, metadata={"note": f"{layer} has no counts to compare yet"})
        previous = counts(records[1]) if len(records) > 1 else None
        d = drop_rate_change(previous, current, platform.config.pipeline.max_drop_rate_change)
        return dg.AssetCheckResult(
            passed=d.ok,
            severity=dg.AssetCheckSeverity.WARN,
            description=d.reason,
            metadata={"drop_rate": d.rate if d.rate is not None else 0.0,
                      "previous_drop_rate": d.previous_rate if d.previous_rate is not None else "none",
                      "change": d.change if d.change is not None else "not compared",
                      "max_change": platform.config.pipeline.max_drop_rate_change, "verdict": d.reason},
        )

    return _check


@dg.asset_check(
    asset="dataset_release",
    name="reconciles_with_crawl",
    blocking=True,
    description="Every crawled page is in the release or in rejected_documents, exactly once.",
)
def reconciles_with_crawl(platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.release.publish import release_view_sql

    wd = platform.wd
    release = pipeline.current_release(platform.config, wd)
    if release is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no release has been published"})
    con = memory_connection()
    try:
        raw, released, rejected, missing, both = con.sql(f"""
            WITH raw AS (SELECT id FROM {read_layer(wd, 'raw_pages')}),
                 rel AS (SELECT id FROM {release_view_sql(release)}),
                 rej AS (SELECT DISTINCT id FROM {read_layer(wd, 'rejected_documents')})
            SELECT (SELECT count(*) FROM raw), (SELECT count(*) FROM rel), (SELECT count(*) FROM rej),
                   (SELECT count(*) FROM raw WHERE id NOT IN (SELECT id FROM rel) AND id NOT IN (SELECT id FROM rej)),
                   (SELECT count(*) FROM rel WHERE id IN (SELECT id FROM rej))
        """).fetchall()[0]
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=missing == 0 and both == 0 and raw == released + rejected,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"crawled": raw, "released": released, "rejected": rejected,
                  "unaccounted": missing, "released_and_rejected": both},
    )


@dg.asset_check(
    asset="raw_pages",
    name="reconciles_with_crawl_log",
    blocking=True,
    description="Every stored page has its 'fetched' record in crawl_log, and every URL the newest crawl of a "
                "source fetched or found not_modified is stored (nothing stored without a record, nothing lost).",
)
def raw_reconciles_with_crawl_log(platform: PlatformResource) -> dg.AssetCheckResult:
    wd = platform.wd
    con = memory_connection()
    try:
        orphans, missing, per_source = con.sql(f"""
            WITH raw AS (SELECT source, crawl_id, url FROM {read_layer(wd, 'raw_pages')}),
                 log AS (SELECT source, crawl_id, url, outcome FROM {read_layer(wd, 'crawl_log')}),
                 newest AS (  -- newest crawl batch per source (crawl ids end in a UTC timestamp + Z)
                   SELECT source, max(crawl_id) AS crawl_id FROM log
                   WHERE regexp_matches(crawl_id, '-[0-9]{{8}}T[0-9]{{6,}}Z$') GROUP BY 1)
            SELECT
              (SELECT count(*) FROM raw r WHERE NOT EXISTS (
                 SELECT 1 FROM log l WHERE l.source = r.source AND l.crawl_id = r.crawl_id AND l.url = r.url
                   AND l.outcome = 'fetched')),
              (SELECT count(*) FROM log l JOIN newest n USING (source, crawl_id)
               WHERE l.outcome IN ('fetched', 'not_modified')
                 AND NOT EXISTS (SELECT 1 FROM raw r WHERE r.source = l.source AND r.url = l.url)),
              (SELECT count(DISTINCT source) FROM raw)
        """).fetchall()[0]
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=orphans == 0 and missing == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"stored_without_fetched_record": orphans, "fetched_but_not_stored": missing,
                  "sources_with_pages": per_source},
    )


@dg.asset_check(
    asset="cleaned_documents",
    name="no_structured_pii",
    blocking=True,
    description="No structured PII (e-mail, phone, IP, payment card, IBAN, Chinese resident ID; "
                "stages/clean/pii.py) is left in the cleaned text or title; streamed in bounded Arrow batches.",
)
def no_structured_pii(platform: PlatformResource) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq

    from dataset_platform.stages.clean.pii import PII_TYPES, find_pii_batch

    path = platform.wd.layer("cleaned_documents")
    if not path.exists():
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"error": f"{path.name} of cleaned_documents is missing"})
    per_type = dict.fromkeys(PII_TYPES, 0)
    rows = docs = 0
    examples: list[str] = []
    pf = pq.ParquetFile(path)
    cols = ["id", "text", *(["title"] if "title" in pf.schema_arrow.names else [])]  # titles are published too
    for batch in pf.iter_batches(batch_size=2048, columns=cols):
        rows += batch.num_rows
        found = [s for _, s in find_pii_batch(batch.column(1))]
        if len(cols) == 3:
            found = [a + b for a, (_, b) in zip(found, find_pii_batch(batch.column(2)))]
        for doc_id, spans in zip(batch.column(0).to_pylist(), found):
            if spans:
                docs += 1
                for sp in spans:
                    per_type[sp.type] += 1
                if len(examples) < 5:
                    examples.append(f"{doc_id} ({', '.join(sorted({sp.type for sp in spans}))})")
    total = sum(per_type.values())
    return dg.AssetCheckResult(
        passed=total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows_scanned": rows, "pii_found": total, "documents_with_pii": docs,
                  **{f"pii_{t}": n for t, n in per_type.items()},
                  "example_ids": ", ".join(examples) or "none"},
    )


@dg.asset_check(
    asset="labelled_documents",
    name="annotator_agreement",
    blocking=False,
    description="Agreement between Label Studio annotators per label set (Cohen's kappa for two annotators, "
                "Fleiss' for more) is at least pipeline.labels.min_kappa (WARN below it).",
)
def annotator_agreement(platform: PlatformResource) -> dg.AssetCheckResult:
    stats = pipeline.read_stats(platform.wd, "labelled_documents") or {}
    agreement = (stats.get("counters") or {}).get("agreement", {})
    floor = platform.config.pipeline.labels.min_kappa
    measured = {k: v for k, v in agreement.items() if v.get("kappa") is not None}
    low = sorted(k for k, v in measured.items() if v["kappa"] < floor)
    md: dict = {"min_kappa": floor, "label_sets_measured": len(measured), "below_threshold": ", ".join(low) or "none"}
    for k, v in sorted(measured.items()):
        md[f"kappa:{k}"] = round(float(v["kappa"]), 4)
        md[f"method:{k}"] = v.get("method") or ""
        md[f"documents:{k}"] = int(v.get("items") or 0)
    if not measured:
        md["note"] = "no document has labels from two annotators yet (import Label Studio exports into inbox/annotations/)"
    return dg.AssetCheckResult(passed=not low, severity=dg.AssetCheckSeverity.WARN, metadata=md)


def _release_or_none(platform: PlatformResource):
    return pipeline.current_release(platform.config, platform.wd)


@dg.asset_check(
    asset="dataset_release",
    name="no_split_leakage",
    blocking=True,
    description="No URL, near-duplicate cluster or split group has documents in two splits, and no augmented "
                "copy is outside train.",
)
def no_split_leakage(platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.release.publish import release_view_sql

    wd = platform.wd
    release = _release_or_none(platform)
    if release is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"error": "no release has been published"})
    rel = release_view_sql(release)
    assignments = pipeline.split_assignments_path(wd)
    con = memory_connection()
    try:
        by_url, by_cluster, by_group, augmented = con.sql(f"""
            WITH r AS (SELECT id, url, split, augmented_from FROM {rel}),
                 d AS (SELECT id, content_hash FROM {read_layer(wd, 'decontaminated_documents')}),
                 a AS (SELECT id, group_key FROM read_parquet('{assignments}'))
            SELECT
              (SELECT count(*) FROM (SELECT url FROM r WHERE augmented_from IS NULL GROUP BY url HAVING count(DISTINCT split) > 1)),
              (SELECT count(*) FROM (SELECT d.content_hash FROM r JOIN d USING (id) GROUP BY 1 HAVING count(DISTINCT r.split) > 1)),
              (SELECT count(*) FROM (SELECT a.group_key FROM r JOIN a USING (id) GROUP BY 1 HAVING count(DISTINCT r.split) > 1)),
              (SELECT count(*) FROM r WHERE augmented_from IS NOT NULL AND split <> 'train')
        """).fetchall()[0]
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=by_url == 0 and by_cluster == 0 and by_group == 0 and augmented == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"urls_in_two_splits": by_url, "clusters_in_two_splits": by_cluster,
                  "groups_in_two_splits": by_group, "augmented_outside_train": augmented},
    )


@dg.asset_check(
    asset="dataset_release",
    name="split_balance",
    blocking=False,
    description="Each split's shares of the stratified label set's values stay within pipeline.splits.tolerance "
                "of the whole release's (WARN otherwise).",
)
def split_balance(platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.release.publish import release_view_sql

    settings = platform.config.pipeline.splits
    release = _release_or_none(platform)
    if release is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"error": "no release has been published"})
    if settings.stratify_by is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "splits.stratify_by is not set: nothing to balance"})
    col = settings.stratify_by
    con = memory_connection()
    try:
        rows = con.sql(f"""
            WITH r AS (SELECT "{col}" AS v, split FROM {release_view_sql(release)} WHERE augmented_from IS NULL),
                 whole AS (SELECT v, count(*) / (SELECT count(*) FROM r) AS share FROM r GROUP BY v),
                 per AS (SELECT split, v, count(*) / sum(count(*)) OVER (PARTITION BY split) AS share FROM r GROUP BY split, v),
                 grid AS (SELECT s.split, w.v, w.share AS whole_share FROM (SELECT DISTINCT split FROM r) s CROSS JOIN whole w)
            SELECT g.split, g.v, round(coalesce(p.share, 0), 4), round(g.whole_share, 4),
                   round(abs(coalesce(p.share, 0) - g.whole_share), 4) AS dev
            FROM grid g LEFT JOIN per p ON p.split = g.split AND p.v = g.v
            ORDER BY dev DESC, 1, 2
        """).fetchall()
    finally:
        con.close()
    worst = rows[0][4] if rows else 0.0
    from dataset_platform.defs.metadata import md_table

    return dg.AssetCheckResult(
        passed=worst <= settings.tolerance + 1e-9,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"stratify_by": col, "tolerance": settings.tolerance, "max_deviation": float(worst),
                  "shares": dg.MetadataValue.md(md_table(["split", col, "share", "share of whole", "deviation"],
                                                         [list(r) for r in rows]))},
    )


@dg.asset_check(
    asset="dataset_release",
    name="diversity_and_balance",
    blocking=False,
    description="The release holds at least pipeline.quality's number of sources, languages, domains and values "
                "per label set, and no label value holds more than max_label_share of it (WARN otherwise).",
)
def diversity_and_balance(platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.release.publish import release_view_sql
    from dataset_platform.defs.metadata import md_table
    from dataset_platform.checks.diversity import assess, measure

    release = _release_or_none(platform)
    if release is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"error": "no release has been published"})
    q = platform.config.pipeline.quality
    con = memory_connection()
    try:
        measures = measure(con, f"(SELECT * FROM {release_view_sql(release)} WHERE augmented_from IS NULL)",
                           platform.config.label_set_names)
    finally:
        con.close()
    findings = assess(measures, min_sources=q.min_sources, min_languages=q.min_languages, min_domains=q.min_domains,
                      min_label_values=q.min_label_values, max_label_share=q.max_label_share)
    failed = [f for f in findings if not f.ok]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{f.what} {f.value:g} ({'at least' if f.kind == 'floor' else 'at most'} {f.bound:g})"
                              for f in failed) or None,
        metadata={"findings": dg.MetadataValue.md(md_table(
                      ["measure", "value", "bound", "ok", "largest"],
                      [[f.what, f"{f.value:g}", f"{'>=' if f.kind == 'floor' else '<='} {f.bound:g}",
                        "yes" if f.ok else "**no**", f.detail] for f in findings])),
                  "failed": len(failed),
                  **{f.what.replace(": ", "_").replace(" ", "_"): float(f.value) for f in findings}},
    )


checks = (
    [_gx_check(layer) for layer in LAYERS_WITH_SUITES]
    + [_accounting_check(stage, layer) for stage, _, layer in pipeline.STAGES]
    + [_drop_rate_check(stage, layer) for stage, _, layer in pipeline.STAGES]
    + [reconciles_with_crawl, raw_reconciles_with_crawl_log, no_structured_pii, annotator_agreement,
       no_split_leakage, split_balance, diversity_and_balance]
)
