"""The job, the schedule and the sensors (all running by default)."""


import hashlib
from pathlib import Path

import dagster as dg

from dataset_platform.config import PlatformConfig
from dataset_platform.defs.ingestion import TRIGGER_TAG, all_sources_tags
from dataset_platform.storage import Workdir

dataset_pipeline = dg.define_asset_job(
    "dataset_pipeline",
    selection=dg.AssetSelection.all(),
    description="The whole graph: crawl/ingest -> extract -> clean -> dedup -> label -> release, with every "
                "check. Partitioned by source: a run refreshes the raw partitions it names, then everything downstream.",
)


annotation_refresh = dg.define_asset_job(
    "annotation_refresh",
    selection=dg.AssetSelection.assets("labelled_documents", "human_annotations").downstream(),
    description="Imports the Label Studio exports in <workdir>/inbox/annotations/ and refreshes the labelled "
                "layer and everything downstream (decontamination, rejects, release), with their checks.",
)


def build_schedule(cfg: PlatformConfig) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="refresh_schedule",
        job=dataset_pipeline,
        cron_schedule=cfg.pipeline.schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-crawls every source (conditional requests: unchanged pages are not stored again) and "
                    "refreshes the whole graph (pipeline.schedule in sources.yaml).",
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext):
        return dg.RunRequest(tags={**all_sources_tags(cfg), TRIGGER_TAG: "schedule"})

    return refresh_schedule


def config_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_config_sensor(cfg: PlatformConfig, config_path: str) -> dg.SensorDefinition:
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
        return dg.RunRequest(run_key=f"config-{digest[:16]}",
                             tags={**all_sources_tags(cfg), TRIGGER_TAG: "config_change", "config_sha256": digest})

    return _sensor


def inbox_files(wd: Workdir, source: str) -> list[Path]:
    """Files waiting in ``<workdir>/inbox/<source>/`` (hidden files and folders ignored)."""
    folder = wd.inbox(source)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def build_inbox_sensor(cfg: PlatformConfig, workdir: str | Path) -> dg.SensorDefinition:
    names = [s.name for s in cfg.sources]

    @dg.sensor(
        name="inbox_sensor",
        job=dataset_pipeline,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A WARC/JSONL/Parquet file dropped into <workdir>/inbox/<source>/ refreshes that source's raw "
                    "partition (and everything downstream), exactly once per file.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        wd = Workdir.at(workdir)
        requests = []
        for name in names:
            for f in inbox_files(wd, name):
                st = f.stat()
                # exactly once per file: Dagster never launches two runs with the same run_key
                key = f"inbox:{name}:{f.name}:{st.st_size}:{st.st_mtime_ns}"
                requests.append(dg.RunRequest(run_key=key, partition_key=name,
                                              tags={TRIGGER_TAG: "inbox", "dataset_platform/file": f.name}))
        if not requests:
            return dg.SkipReason(f"no files in {wd.root / 'inbox'}/<source>/ for sources {names}")
        return requests

    return _sensor


def annotation_inbox_files(wd: Workdir) -> list[Path]:
    """Label Studio exports waiting in ``<workdir>/inbox/annotations/`` (imported ones move to processed/)."""
    folder = wd.annotations_inbox
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".json" and not p.name.startswith("."))


def build_annotation_sensor(workdir: str | Path) -> dg.SensorDefinition:
    @dg.sensor(
        name="annotation_sensor",
        job=annotation_refresh,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A Label Studio JSON export dropped into <workdir>/inbox/annotations/ re-materialises the "
                    "labelled layer (human labels override automatic ones) and everything downstream, once per file.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        wd = Workdir.at(workdir)
        files = annotation_inbox_files(wd)
        if not files:
            return dg.SkipReason(f"no Label Studio export waiting in {wd.annotations_inbox}")
        # one run for everything waiting; its key names every file (name, size, mtime): the same
        # files never trigger twice, a new or re-exported file triggers again
        parts = sorted(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        key = "annotations:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        return dg.RunRequest(run_key=key, tags={TRIGGER_TAG: "annotations",
                                                "dataset_platform/files": ",".join(f.name for f in files)[:200]})

    return _sensor
