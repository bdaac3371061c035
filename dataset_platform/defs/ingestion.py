"""Raw layer: one partition per source - crawl it (its own OS process) or land its files, then load.

``raw_pages`` and ``crawl_log`` are materialised together, partitioned by source, so one source
refreshes without touching the others. A run over several sources is one run (single-run
backfill policy). Runs tagged ``dataset_platform/trigger=inbox`` only land the files waiting in
the inbox (no crawl).
"""


import dagster as dg

from dataset_platform.config import PlatformConfig
from dataset_platform.defs.metadata import column_schema, layer_metadata, md_table, round_floats
from dataset_platform.defs.quality import materialise_and_check, step_check_specs, step_checks
from dataset_platform.defs.resources import PlatformResource

GROUP = "ingestion"
TRIGGER_TAG = "dataset_platform/trigger"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def source_partitions(cfg: PlatformConfig) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([s.name for s in cfg.sources])


def all_sources_tags(cfg: PlatformConfig) -> dict[str, str]:
    """Run tags selecting every source partition in one run."""
    names = [s.name for s in cfg.sources]
    return {RANGE_START: names[0], RANGE_END: names[-1]}


def build_assets(cfg: PlatformConfig) -> list[dg.AssetsDefinition]:
    partitions = source_partitions(cfg)

    @dg.multi_asset(
        name="raw_layer",
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        specs=[
            dg.AssetSpec("raw_pages", kinds={"scrapy", "duckdb", "parquet"},
                         description="Stored page bodies: the newest crawl of each crawl source, every record "
                                     "of each dump source (one row per URL)."),
            dg.AssetSpec("crawl_log", kinds={"scrapy", "duckdb", "parquet"},
                         description="Every URL each crawl (or dump file) considered, with its outcome "
                                     "(fetched, not_modified, robots_disallowed, blocked_address, failed:...)."),
        ],
        check_specs=step_check_specs("raw_layer"),
        can_subset=True,
    )
    def raw_layer(context: dg.AssetExecutionContext, platform: PlatformResource):
        yield from materialise_and_check(context, platform, step_checks("raw_layer"), lambda: _land(context, platform))

    def _land(context: dg.AssetExecutionContext, platform: PlatformResource):
        from dataset_platform.checks import gx_worker
        from dataset_platform.defs.quality import start_checks_ahead

        gx_worker.start()  # (GX's import on its worker overlaps the crawl and the loading)
        sources = list(context.partition_keys)
        inbox_only = context.run.tags.get(TRIGGER_TAG) == "inbox"
        context.log.info(f"refreshing sources {sources}" + (" (inbox files only)" if inbox_only else ""))
        from dataset_platform.ingest.refresh import materialise_raw

        result = materialise_raw(platform.config, platform.wd, log=context.log.info, sources=sources,
                                 crawl=not inbox_only)
        start_checks_ahead(context, platform, "raw_pages", "crawl_log")
        c = result.counters
        md = layer_metadata(result)
        outcomes: dict[str, int] = {}
        for name in sources:
            for k, v in c["sources"][name]["outcomes"].items():
                outcomes[k] = outcomes.get(k, 0) + v
        md.update({
            "pages_per_source": dg.MetadataValue.md(md_table(["source", "pages"], [[k, v] for k, v in c["pages_per_source"].items()])),
            "status_codes": dg.MetadataValue.md(md_table(["status", "pages"], [[k, v] for k, v in c["status_counts"].items()])),
            "bodies_stored": sum(c["sources"][n]["bodies_stored"] for n in sources),
            "batches": ", ".join(b for n in sources for b in c["sources"][n]["batches"]) or "none (nothing new)",
        })
        refused = [[n, r["file"], r["reason"]] for n in sources for r in c["sources"][n].get("refused_files", [])]
        md["files_refused"] = len(refused)
        if refused:  # (moved to inbox/<source>/rejected/, the reason beside each; the other files landed)
            md["refused_files"] = dg.MetadataValue.md(md_table(["source", "file", "reason"], refused))
            context.log.warning(f"{len(refused)} file(s) refused: " + "; ".join(f"{n}/{f}: {r}" for n, f, r in refused))
        crawls = [[n, x["crawl_id"], x["urls"], x["outcomes"].get("fetched", 0), x["outcomes"].get("not_modified", 0),
                   x["bytes"], x["urls_per_s"], x["elapsed_s"], x["finish_reason"]]
                  for n in sources if (x := c["sources"][n].get("crawl"))]
        if crawls:
            md["crawls"] = dg.MetadataValue.md(md_table(
                ["source", "crawl_id", "URLs", "fetched", "not modified", "bytes", "URLs/s", "seconds", "finish"],
                crawls))
            md["crawl_urls_per_s"] = float(sum(r[6] for r in crawls) / len(crawls))
            md["crawl_bytes"] = int(sum(r[5] for r in crawls))
        yield dg.MaterializeResult(asset_key="raw_pages", metadata=round_floats(md))
        yield dg.MaterializeResult(asset_key="crawl_log", metadata=round_floats({
            "dagster/row_count": c["crawl_log_rows"],
            "records_this_run": sum(outcomes.values()),
            "dagster/column_schema": column_schema("crawl_log"),
            "outcomes_this_run": dg.MetadataValue.md(
                md_table(["outcome", "urls"], sorted(outcomes.items())) if outcomes else "no new batch"),
        }))

    return [raw_layer]
