"""The job, the schedule and the sensor (all running by default)."""


import hashlib
from pathlib import Path

import dagster as dg

from dataset_platform.config import PlatformConfig

dataset_pipeline = dg.define_asset_job(
    "dataset_pipeline",
    selection=dg.AssetSelection.all(),
    description="The whole graph: crawl -> extract -> clean -> dedup -> label -> release, with every check.",
)


def build_schedule(cfg: PlatformConfig) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="refresh_schedule",
        job=dataset_pipeline,
        cron_schedule=cfg.pipeline.schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-crawls every source and refreshes the whole graph (pipeline.schedule in sources.yaml).",
    )


def config_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_config_sensor(config_path: str) -> dg.SensorDefinition:
    @dg.sensor(
        name="config_change_sensor",
        job=dataset_pipeline,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes the whole graph when sources.yaml changes (first evaluation only records it).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        digest = config_digest(config_path)
        if context.cursor is None:
            context.update_cursor(digest)
            return dg.SkipReason(f"recorded the config's digest {digest[:12]}; changes from now on trigger a refresh")
        if context.cursor == digest:
            return dg.SkipReason("config unchanged")
        context.update_cursor(digest)
        return dg.RunRequest(run_key=f"config-{digest[:16]}", tags={"trigger": "config_change", "config_sha256": digest})

    return _sensor
