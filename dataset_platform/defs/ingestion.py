"""Raw layer: crawl every source (each crawl in its own OS process) and land it."""


import dagster as dg

from dataset_platform import pipeline
from dataset_platform.defs.metadata import layer_metadata, md_table
from dataset_platform.defs.resources import PlatformResource


@dg.asset(
    group_name="ingestion",
    kinds={"scrapy", "duckdb", "parquet"},
    description="Every HTTP response of the newest crawl of each source (one row per URL).",
)
def raw_pages(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    result = pipeline.materialise_raw(platform.config, platform.wd, log=context.log.info)
    md = layer_metadata(result)
    c = result.counters
    md.update({
        "responses": c["responses"],
        "duplicate_fetches": c["duplicate_fetches"],
        "crawl_ids": ", ".join(c["crawl_ids"]),
        "status_codes": dg.MetadataValue.md(md_table(["status", "pages"], [[k, v] for k, v in c["status_counts"].items()])),
    })
    return dg.MaterializeResult(metadata=md)


assets = [raw_pages]
