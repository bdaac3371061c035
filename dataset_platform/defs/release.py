"""The published release: leak-free stable splits, Parquet shards, dataset card, manifest and diff."""


import time

import dagster as dg

from dataset_platform.config import PlatformConfig
from dataset_platform.defs.metadata import card_markdown, column_schema, md_table, profile_metadata, round_floats
from dataset_platform.defs.policies import refresh_after_upstream, release_freshness
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.release.publish import release_profile_sql
from dataset_platform.stages.registry import STAGES

#: the assets whose newest materialisation a release records in its manifest (lineage)
UPSTREAM = ["raw_pages", *(name for st in STAGES for name in (st.output, *st.also_writes)), "rejected_documents"]


def upstream_materialisations(context: dg.AssetExecutionContext) -> dict:
    """Run id, event storage id and time of the newest materialisation of every upstream asset."""
    out = {}
    for key in UPSTREAM:
        records = context.instance.fetch_materializations(dg.AssetKey(key), limit=1).records
        if records:
            r = records[0]
            out[key] = {"run_id": r.run_id, "storage_id": r.storage_id, "timestamp": round(r.timestamp, 3)}
    return out


def build_assets(cfg: PlatformConfig) -> list[dg.AssetsDefinition]:
    """The release asset, with the freshness policy of ``pipeline.release``."""
    from dataset_platform.defs.quality import materialise_and_check, step_check_specs, step_checks

    r = cfg.pipeline.release
    spec = dg.AssetSpec(
        "dataset_release", kinds={"parquet", "huggingface"},
        deps=["decontaminated_documents", "rejected_documents"],
        automation_condition=refresh_after_upstream(),
        freshness_policy=release_freshness(cfg),
        description="Versioned train/validation/test Parquet shards with a dataset card, manifest (lineage) and a "
                    "diff against the previous release. Splits are stable, group-wise and stratified. Expected "
                    f"at least every {r.freshness_warn_hours:g} h (warning) / {r.freshness_fail_hours:g} h (failure).",
    )

    @dg.multi_asset(name="dataset_release", group_name="release", specs=[spec],
                    check_specs=step_check_specs("dataset_release"), can_subset=True)
    def dataset_release(context: dg.AssetExecutionContext, platform: PlatformResource):
        yield from materialise_and_check(context, platform, step_checks("dataset_release"), lambda: [_publish(context, platform)])

    return [dataset_release]


def _publish(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    cfg = platform.config
    t0 = time.monotonic()
    from dataset_platform.defs.quality import start_checks_ahead
    from dataset_platform.release.materialise import materialise_release

    # the checks start as the version and the split assignments are in place (they overlap the
    # view and the metadata below)
    info = materialise_release(cfg, platform.wd, log=context.log.info, lineage=upstream_materialisations(context),
                               on_publish=lambda: start_checks_ahead(context, platform, "dataset_release"))
    info_seconds = time.monotonic() - t0
    st = info.split_stats
    shares = st.shares if st is not None else []
    return dg.MaterializeResult(metadata=round_floats({
        "dagster/row_count": info.total_rows,
        "dagster/column_schema": column_schema("dataset_release", cfg.label_set_names),
        "version": info.version,
        "previous_version": info.previous or "none",
        "path": dg.MetadataValue.path(str(info.path)),
        "new_version": info.created,
        "splits": dg.MetadataValue.md(md_table(["split", "documents"], [[k, v] for k, v in info.rows.items()])),
        "files": len(info.files),
        "diff": dg.MetadataValue.md(md_table(["change", "documents"], [[k, v] for k, v in info.diff.items()])),
        "split_groups": st.groups if st is not None else 0,
        "split_kept_from_previous": st.kept_from_previous if st is not None else 0,
        "split_straddling_groups": st.straddling_groups if st is not None else 0,
        "split_max_share_deviation": st.max_share_deviation if st is not None and st.max_share_deviation is not None else 0.0,
        "split_shares": dg.MetadataValue.md(md_table(["split", "value", "documents", "share"], shares) if shares else "not stratified"),
        "dataset_card": card_markdown(info.path / "README.md"),  # rendered in the UI
        "dataset_card_path": dg.MetadataValue.path(str(info.path / "README.md")),
        "duration_s": round(info_seconds, 3),
        "files_reused": info.shards.get("reused", 0),
        "files_written": info.shards.get("written", 0),
        "rows_written": info.shards.get("rows_written", 0),
        # from the version's index (lengths, languages, sources): no text is read again
        **profile_metadata(release_profile_sql(info.path)),
    }))

