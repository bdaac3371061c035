"""The published release: deterministic splits, Parquet files, dataset card and manifest."""


import dagster as dg

from dataset_platform import pipeline
from dataset_platform.defs.metadata import column_schema, md_table
from dataset_platform.defs.resources import PlatformResource


@dg.asset(group_name="release", kinds={"parquet", "huggingface"},
          deps=["labelled_documents", "rejected_documents"],
          description="Versioned train/validation/test Parquet release with a dataset card and manifest.")
def dataset_release(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    info = pipeline.materialise_release(platform.config, platform.wd, log=context.log.info)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": info.total_rows,
        "dagster/column_schema": column_schema("dataset_release"),
        "version": info.version,
        "path": dg.MetadataValue.path(str(info.path)),
        "new_version": info.created,
        "splits": dg.MetadataValue.md(md_table(["split", "documents"], [[k, v] for k, v in info.rows.items()])),
        "dataset_card": dg.MetadataValue.path(str(info.path / "README.md")),
    })


assets = [dataset_release]
