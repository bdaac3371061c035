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
from dataset_platform.storage import memory_connection

LAYERS_WITH_SUITES = [
    "raw_pages", "extracted_documents", "cleaned_documents", "deduplicated_documents",
    "duplicate_clusters", "labelled_documents", "rejected_documents", "dataset_release",
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
        from dataset_platform.quality.gx_suites import validate_parquet, validate_relation

        suite = expectations_dir() / f"{layer}.json"
        wd = platform.wd
        if layer == "dataset_release":
            release = pipeline.current_release(platform.config, wd)
            if release is None:
                return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"error": "no release has been published"})
            from dataset_platform.core.release import release_view_sql

            con = memory_connection()
            try:
                outcome = validate_relation(con, f"SELECT * FROM {release_view_sql(release)}", suite)
            finally:
                con.close()
        else:
            outcome = validate_parquet(wd.layer(layer), suite)
        critical_ok, warn_ok = outcome.critical_passed, outcome.warnings_passed
        failed = [o for o in outcome.outcomes if not o.success]
        context.log.info(f"{layer}: {len(outcome.outcomes)} expectations, {len(failed)} failed over {outcome.row_count} rows")
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


@dg.asset_check(
    asset="dataset_release",
    name="reconciles_with_crawl",
    blocking=True,
    description="Every crawled page is in the release or in rejected_documents, exactly once.",
)
def reconciles_with_crawl(platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.core.release import release_view_sql
    from dataset_platform.storage import read_layer

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


checks = (
    [_gx_check(layer) for layer in LAYERS_WITH_SUITES]
    + [_accounting_check(stage, layer) for stage, _, layer in pipeline.STAGES]
    + [reconciles_with_crawl]
)
