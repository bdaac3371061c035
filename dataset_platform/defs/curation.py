"""Document layers: extracted -> cleaned -> deduplicated -> labelled, and the rejects of all."""


import dagster as dg

from dataset_platform import pipeline
from dataset_platform.defs.metadata import cluster_metadata, column_schema, layer_metadata, md_table
from dataset_platform.defs.resources import PlatformResource

GROUP = "curation"


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"}, deps=["raw_pages"],
          description="Main text (paragraphs kept), title, date and language of each HTML page: extractor chain "
                      "(trafilatura, then resiliparse), a time bound per page, CLD2.")
def extracted_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=layer_metadata(
        pipeline.materialise_extracted(platform.config, platform.wd, log=context.log.info)))


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"}, deps=["extracted_documents"],
          description="Normalised text (ftfy, NFC), Gopher / C4 / FineWeb quality rules per language (values in "
                      "`quality`), structured PII redacted with typed placeholders (counts per type).")
def cleaned_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=layer_metadata(
        pipeline.materialise_cleaned(platform.config, platform.wd, log=context.log.info)))


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec("deduplicated_documents", deps=["cleaned_documents"], kinds={"duckdb", "parquet"},
                     description="One document per cluster of duplicates: exact (same normalised text or URL) "
                                 "and near (MinHash-LSH, verified Jaccard); incremental over its MinHash index."),
        dg.AssetSpec("duplicate_clusters", deps=["cleaned_documents"], kinds={"duckdb", "parquet"},
                     description="Who was dropped for whom: one row per dropped duplicate."),
    ],
)
def deduplicated_documents(context: dg.AssetExecutionContext, platform: PlatformResource):
    result = pipeline.materialise_deduplicated(platform.config, platform.wd, log=context.log.info)
    yield dg.MaterializeResult(asset_key="deduplicated_documents", metadata=layer_metadata(result))
    clusters = result.stage.rejected_rows if result.stage else 0
    yield dg.MaterializeResult(asset_key="duplicate_clusters", metadata={
        "dagster/row_count": clusters,
        "dagster/column_schema": column_schema("duplicate_clusters"),
        "clusters": int(result.stage.extra.get("clusters", 0)) if result.stage else 0,
        **(cluster_metadata(result.stage.extra) if result.stage else {}),
    })


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"}, deps=["deduplicated_documents"],
          description="Every document with a topic label, its source and confidence.")
def labelled_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=layer_metadata(
        pipeline.materialise_labelled(platform.config, platform.wd, log=context.log.info)))


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"},
          deps=["extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents"],
          description="Every document dropped at any stage, with stage, rule and measured value.")
def rejected_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    result = pipeline.materialise_rejected(platform.wd)
    md = layer_metadata(result)
    md["drop_reasons"] = dg.MetadataValue.md(
        md_table(["stage", "rule", "documents"], result.counters["reasons"]) if result.counters["reasons"] else "none")
    return dg.MaterializeResult(metadata=md)


assets = [extracted_documents, cleaned_documents, deduplicated_documents, labelled_documents, rejected_documents]
