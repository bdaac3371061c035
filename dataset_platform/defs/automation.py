"""Jobs, per-source schedules, sensors and the automation sensor (all running by default).

How refreshes happen:

- each source's schedule (``sources[].schedule``, default ``pipeline.schedule``) refreshes that
  source's raw partition (``raw_refresh``); a file dropped into ``inbox/<source>/`` or a change
  of sources.yaml refreshes the whole graph (``dataset_pipeline``);
- every layer below the raw layer refreshes by itself once an upstream layer changed and the
  upstream blocking checks passed (``automation_sensor``, see ``policies.py``);
- a Label Studio export in ``inbox/annotations/`` re-labels (``annotation_refresh``);
- a failed run is recorded in ``<workdir>/alerts/run_failures.jsonl`` and, when
  ``DATASET_PLATFORM_ALERT_WEBHOOK`` is set, POSTed there as JSON (``run_failure_alert``).
"""


import datetime as dt
import hashlib
import json
import os
import urllib.request
from pathlib import Path

import dagster as dg

from dataset_platform.config import PlatformConfig, dagster_name
from dataset_platform.defs.ingestion import TRIGGER_TAG, all_sources_tags
from dataset_platform.workdir import Workdir

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


raw_refresh = dg.define_asset_job(
    "raw_refresh",
    selection=dg.AssetSelection.assets("raw_pages", "crawl_log"),
    description="Re-crawls / re-ingests the source partitions it is given, with the raw layer's checks; the layers "
                "below follow by themselves (automation_sensor) once those checks pass.",
)

WEBHOOK_ENV = "DATASET_PLATFORM_ALERT_WEBHOOK"


def schedule_name(source: str) -> str:
    """The refresh schedule of a source: ``refresh_<name>``, ``-`` (not allowed in Dagster names)
    as ``_`` (``my-blog`` -> ``refresh_my_blog``; config.py refuses two names that meet)."""
    return f"refresh_{dagster_name(source)}"


def build_schedules(cfg: PlatformConfig) -> list[dg.ScheduleDefinition]:
    """One schedule per source: its own ``schedule`` or ``pipeline.schedule``."""
    out = []
    for src in cfg.sources:
        cron = src.schedule or cfg.pipeline.schedule
        what = "Re-crawls" if src.kind == "crawl" else "Re-ingests the files of"

        def _tick(context: dg.ScheduleEvaluationContext, _name: str = src.name):
            return dg.RunRequest(partition_key=_name, tags={TRIGGER_TAG: "schedule"})

        out.append(dg.schedule(
            name=schedule_name(src.name), job=raw_refresh, cron_schedule=cron, execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"{what} source {src.name!r} ({cron} UTC; conditional requests: unchanged pages are not stored "
                        "again); the layers below refresh by themselves once the raw checks pass.",
        )(_tick))
    return out


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes each layer once an upstream layer changed and the upstream blocking checks passed.",
)


def alert_record(run: "dg.DagsterRun", error: str | None, when: dt.datetime) -> dict:
    """What an alert says about a failed run (also the webhook's JSON body)."""
    return {
        "time": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_id": run.run_id,
        "job": run.job_name,
        "trigger": run.tags.get(TRIGGER_TAG, "manual"),
        "partitions": run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start"),
        "error": (error or "").strip()[:2000],
    }


def post_webhook(url: str, body: dict, timeout: float = 10.0) -> str:
    """POST ``body`` as JSON; returns 'sent (HTTP nnn)' or why it failed (never raises)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "dataset-platform"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return f"sent (HTTP {resp.status})"
    except Exception as e:
        return f"not sent: {type(e).__name__}: {e}"


def build_run_failure_sensor(workdir: str | Path) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Records every failed run in <workdir>/alerts/run_failures.jsonl and POSTs it to "
                    f"${WEBHOOK_ENV} when that is set.",
    )
    def _sensor(context: dg.RunFailureSensorContext):
        failure = context.failure_event
        error = failure.message if failure is not None else None
        record = alert_record(context.dagster_run, error, dt.datetime.now(dt.UTC))
        url = os.environ.get(WEBHOOK_ENV)
        record["webhook"] = post_webhook(url, record) if url else "not configured"
        path = Workdir.at(workdir).alerts
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        context.log.info(f"run {record['run_id']} failed: alert recorded in {path} (webhook {record['webhook']})")

    return _sensor


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


def build_takedown_sensor(cfg: PlatformConfig, workdir: str | Path) -> dg.SensorDefinition:
    @dg.sensor(
        name="takedown_sensor",
        job=dataset_pipeline,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A takedown file (YAML/JSON) dropped into <workdir>/inbox/takedowns/ refreshes every layer and "
                    "publishes a new release at once (no crawl: the inbox files only), once per set of files; an "
                    "invalid file is reported here and no run starts.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        from dataset_platform.stages import takedown

        wd = Workdir.at(workdir)
        files = takedown.inbox_files(wd.root)
        if not files:
            return dg.SkipReason(f"no takedown file waiting in {takedown.inbox(wd.root)}")
        try:
            requests = takedown.load(cfg, wd.root)
        except takedown.TakedownError as e:
            return dg.SkipReason(f"takedown requests not valid, no refresh started; fix the file(s):\n{e}")
        # the files stay in the inbox (they are the record of the requests): the run key names
        # each (name, size, mtime), so the same files never trigger twice and a new or edited one does
        parts = sorted(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        key = "takedowns:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        return dg.RunRequest(run_key=key, tags={**all_sources_tags(cfg), TRIGGER_TAG: "inbox",
                                                "dataset_platform/takedowns": requests.fingerprint()[:16],
                                                "dataset_platform/files": ",".join(f.name for f in files)[:200]})

    return _sensor
