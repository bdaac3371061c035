"""The Dagster code location (loaded by ``dagster dev -w workspace.yaml`` and by the CLI).

Reads two environment variables: DATASET_PLATFORM_CONFIG (default: the embedded demo config)
and DATASET_PLATFORM_WORKDIR (default: ./.dataset_platform).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from dataset_platform.config import demo_config_path, load_config
from dataset_platform.defs import automation, curation, ingestion, inspect, release
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.workdir import Workdir


def build_definitions(config_path: str | Path | None = None, workdir: str | Path | None = None) -> dg.Definitions:
    cfg_path = str(Path(config_path or os.environ.get("DATASET_PLATFORM_CONFIG") or demo_config_path()).resolve())
    cfg = load_config(cfg_path)  # a bad config fails the code location with a message naming the field
    wd = Workdir.at(workdir)
    return dg.Definitions(
        assets=[*ingestion.build_assets(cfg), *curation.build_assets(), *release.build_assets(cfg)],
        # (no asset_checks: every check is a check_spec of the asset step that writes its layer)
        jobs=[automation.dataset_pipeline, automation.raw_refresh, automation.annotation_refresh,
              inspect.trace_document_job],
        schedules=automation.build_schedules(cfg),
        sensors=[automation.build_config_sensor(cfg, cfg_path), automation.build_inbox_sensor(cfg, wd.root),
                 automation.build_annotation_sensor(wd.root), automation.build_takedown_sensor(cfg, wd.root),
                 automation.automation_sensor, automation.build_run_failure_sensor(wd.root)],
        resources={"platform": PlatformResource(config_path=cfg_path, workdir=str(wd.root))},
        # one process per run, steps in order: every stage already uses all cores (DuckDB threads,
        # process pools; a crawl is its own OS process), and a process per step would re-import
        # GX, scikit-learn and trafilatura ~40 times per run (the demo took minutes instead of ~1)
        executor=dg.in_process_executor,
    )


def _start_gx() -> None:
    """GX's import takes 2-3 s; a run's first suite check should not wait for it.

    Dagster's code server (``dagster api grpc``) starts the GX worker that its runs share
    (``checks/gx_service.py``): it stays warm from one launched run to the next. A run launched
    from the UI or by a sensor executes in a process that the code server spawns and that imports
    this module before anything else: it connects to that worker now, or starts its own when there
    is none (``dataset-platform run`` starts its own before importing Dagster)."""
    import multiprocessing as mp

    from dataset_platform.checks import gx_service

    if gx_service.is_code_server() and mp.parent_process() is None:
        gx_service.serve()
    elif mp.parent_process() is not None and mp.current_process().name.startswith("SpawnProcess"):
        from dataset_platform.checks import gx_worker

        gx_worker.start()


_start_gx()
defs = build_definitions()
