"""Document layers: extracted -> cleaned -> deduplicated -> labelled -> decontaminated, and the rejects of all."""


import dagster as dg

from dataset_platform import pipeline
from dataset_platform.defs.metadata import (
    cluster_metadata,
    column_schema,
    label_metadata,
    layer_metadata,
    md_table,
)
from dataset_platform.defs.policies import refresh_after_upstream
from dataset_platform.defs.resources import PlatformResource

GROUP = "curation"


@dg.asset(group_name=GROUP, automation_condition=refresh_after_upstream(), kinds={"duckdb", "parquet"}, deps=["raw_pages"],
          description="Main text (paragraphs kept), title, date and language of each HTML page: extractor chain "
                      "(trafilatura, then resiliparse), a time bound per page, CLD2.")
def extracted_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=layer_metadata(
        pipeline.materialise_extracted(platform.config, platform.wd, log=context.log.info)))


@dg.asset(group_name=GROUP, automation_condition=refresh_after_upstream(), kinds={"duckdb", "parquet"}, deps=["extracted_documents"],
          description="Normalised text (ftfy, NFC), Gopher / C4 / FineWeb quality rules per language (values in "
                      "`quality`), structured PII redacted with typed placeholders (counts per type).")
def cleaned_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=layer_metadata(
        pipeline.materialise_cleaned(platform.config, platform.wd, log=context.log.info)))


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec("deduplicated_documents", automation_condition=refresh_after_upstream(), deps=["cleaned_documents"], kinds={"duckdb", "parquet"},
                     description="One document per cluster of duplicates: exact (same normalised text or URL) "
                                 "and near (MinHash-LSH, verified Jaccard); incremental over its MinHash index."),
        dg.AssetSpec("duplicate_clusters", automation_condition=refresh_after_upstream(), deps=["cleaned_documents"], kinds={"duckdb", "parquet"},
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


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec("labelled_documents", automation_condition=refresh_after_upstream(), deps=["deduplicated_documents"], kinds={"duckdb", "parquet"},
                     description="Every document with a value, source (human / rule / model / rule+model / default) "
                                 "and confidence per label set; writes the Label Studio review tasks."),
        dg.AssetSpec("human_annotations", automation_condition=refresh_after_upstream(), deps=["deduplicated_documents"], kinds={"parquet", "labelstudio"},
                     description="Every label people gave in the Label Studio exports dropped into "
                                 "<workdir>/inbox/annotations/ (disagreements kept)."),
    ],
)
def labelled_documents(context: dg.AssetExecutionContext, platform: PlatformResource):
    cfg = platform.config
    result = pipeline.materialise_labelled(cfg, platform.wd, log=context.log.info)
    md = layer_metadata(result, label_sets=cfg.label_set_names)
    md.update(label_metadata(result))
    yield dg.MaterializeResult(asset_key="labelled_documents", metadata=md)
    agreement = result.counters.get("agreement", {})
    yield dg.MaterializeResult(asset_key="human_annotations", metadata={
        "dagster/row_count": int(result.stage.extra.get("human_annotations", 0)) if result.stage else 0,
        "dagster/column_schema": column_schema("human_annotations"),
        "files": ", ".join(result.counters.get("annotation_files", [])) or "none yet",
        "agreement": dg.MetadataValue.md(md_table(
            ["label set", "method", "kappa", "documents", "annotators"],
            [[k, v.get("method"), v.get("kappa"), v.get("items"), v.get("annotators")] for k, v in sorted(agreement.items())])
            if agreement else "no document has two annotators yet"),
    })


@dg.asset(group_name=GROUP, automation_condition=refresh_after_upstream(), kinds={"duckdb", "parquet"}, deps=["labelled_documents"],
          description="Labelled documents sharing no 13-gram (13 characters for CJK) with a configured evaluation set; "
                      "matches go to rejected_documents with the benchmark item.")
def decontaminated_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    cfg = platform.config
    result = pipeline.materialise_decontaminated(cfg, platform.wd, log=context.log.info)
    md = layer_metadata(result, label_sets=cfg.label_set_names)
    rows = result.counters.get("benchmarks", [])
    md["benchmarks"] = dg.MetadataValue.md(
        md_table(["evaluation set", "items", "documents removed"], rows) if rows else "no evaluation sets configured")
    return dg.MaterializeResult(metadata=md)


@dg.asset(group_name=GROUP, automation_condition=refresh_after_upstream(), kinds={"duckdb", "parquet"},
          deps=["extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
                "decontaminated_documents"],
          description="Every document dropped at any stage, with stage, rule and measured value.")
def rejected_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    result = pipeline.materialise_rejected(platform.wd)
    md = layer_metadata(result)
    md["drop_reasons"] = dg.MetadataValue.md(
        md_table(["stage", "rule", "documents"], result.counters["reasons"]) if result.counters["reasons"] else "none")
    return dg.MaterializeResult(metadata=md)


assets = [extracted_documents, cleaned_documents, deduplicated_documents, labelled_documents, decontaminated_documents,
          rejected_documents]
