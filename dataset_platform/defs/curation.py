"""Document layers: one asset (or multi-asset) per registered stage, and the rejects of all.

Generated from the stage registry (``stages/registry.py``): each stage's output layer, and the
layers it also writes, are materialised by ``runner.materialise`` in one step.
"""


import dagster as dg

from dataset_platform.defs.metadata import STAGE_METADATA, layer_metadata, md_table, round_floats
from dataset_platform.defs.policies import refresh_after_upstream
from dataset_platform.defs.quality import materialise_and_check, start_checks_ahead, step_check_specs, step_checks
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.stages.base import Stage
from dataset_platform.stages.registry import STAGES

GROUP = "curation"
#: descriptions of the layers a stage writes besides its output
ALSO_WRITES = {
    "duplicate_clusters": "Who was dropped for whom: one row per dropped duplicate.",
    "human_annotations": "Every label people gave in the Label Studio exports dropped into "
                         "<workdir>/inbox/annotations/ (disagreements kept).",
}
KINDS = {"human_annotations": {"parquet", "labelstudio"}}


def _stage_asset(stage: Stage) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(name, deps=[stage.input], kinds=KINDS.get(name, {"duckdb", "parquet"}),
                          automation_condition=refresh_after_upstream(),
                          description=stage.description if name == stage.output else ALSO_WRITES[name])
             for name in (stage.output, *stage.also_writes)]

    @dg.multi_asset(name=stage.output, group_name=GROUP, specs=specs, check_specs=step_check_specs(stage.output),
                    can_subset=True)
    def _asset(context: dg.AssetExecutionContext, platform: PlatformResource):
        yield from materialise_and_check(context, platform, step_checks(stage.output), lambda: _materialise(context, platform))

    def _materialise(context: dg.AssetExecutionContext, platform: PlatformResource):
        from dataset_platform.runner import materialise

        cfg = platform.config
        # (after the last stage, every stage's rejects are written: rejected_documents' suite starts too)
        layers, later = (stage.output, *stage.also_writes), ("rejected_documents",) if stage is STAGES[-1] else ()
        if cfg.pipeline.executor == "ray" and cfg.pipeline.ray.submit == "job":  # the step as a Ray job (Pipes)
            from dataset_platform.defs.ray_jobs import materialise_as_ray_job

            result = materialise_as_ray_job(context, stage, platform.config_path, str(platform.wd.root), cfg)
            start_checks_ahead(context, platform, *layers, later=later)
        else:  # the suites start as the parts are committed (the stage's finish and views overlap them)
            result = materialise(stage, cfg, platform.wd, log=context.log.info,
                                 on_commit=lambda: start_checks_ahead(context, platform, *layers, later=later,
                                                                      invariants=False))
            start_checks_ahead(context, platform, *layers, suites=False)
        md = layer_metadata(result, label_sets=cfg.label_set_names)
        extra = STAGE_METADATA.get(stage.name)
        per_asset = extra(result, cfg) if extra else {}
        md.update(per_asset.get(stage.output, {}))
        yield dg.MaterializeResult(asset_key=stage.output, metadata=round_floats(md))
        for name in stage.also_writes:
            yield dg.MaterializeResult(asset_key=name, metadata=round_floats(per_asset.get(name, {})))

    return _asset


def _rejected_asset() -> dg.AssetsDefinition:
    spec = dg.AssetSpec("rejected_documents", automation_condition=refresh_after_upstream(),
                        kinds={"duckdb", "parquet"}, deps=[st.output for st in STAGES],
                        description="Every document dropped at any stage, with stage, rule and measured value "
                                    "(a view over each stage's rejects).")

    @dg.multi_asset(name="rejected_documents", group_name=GROUP, specs=[spec],
                    check_specs=step_check_specs("rejected_documents"), can_subset=True)
    def rejected_documents(context: dg.AssetExecutionContext, platform: PlatformResource):
        yield from materialise_and_check(context, platform, step_checks("rejected_documents"), lambda: [_rejected(context, platform)])

    def _rejected(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from dataset_platform.runner import materialise_rejected

        result = materialise_rejected(platform.config, platform.wd, log=context.log.info)
        start_checks_ahead(context, platform, "rejected_documents")
        md = layer_metadata(result)
        md["drop_reasons"] = dg.MetadataValue.md(
            md_table(["stage", "rule", "documents"], result.counters["reasons"]) if result.counters["reasons"] else "none")
        return dg.MaterializeResult(metadata=round_floats(md))

    return rejected_documents


def build_assets() -> list[dg.AssetsDefinition]:
    return [*(_stage_asset(st) for st in STAGES), _rejected_asset()]
