"""The schedule and the sensor: real evaluations against a real (temporary) Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dataset_platform.config import demo_config_path
from dataset_platform.definitions import build_definitions


def _config(tmp_path: Path, schedule: str = "0 3 * * *") -> Path:
    p = tmp_path / "sources.yaml"
    p.write_text(
        "sources:\n  - name: demo\n    kind: crawl\n    demo_site: true\n    start_urls: [/]\n"
        f"pipeline:\n  schedule: '{schedule}'\n"
    )
    return p


def test_schedule_follows_config_and_targets_the_whole_graph(tmp_path):
    defs = build_definitions(_config(tmp_path, "15 4 * * 1"), tmp_path / "w")
    sched = defs.resolve_schedule_def("refresh_schedule")
    assert sched.cron_schedule == "15 4 * * 1" and sched.execution_timezone == "UTC"
    assert sched.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance)
        data = sched.evaluate_tick(ctx)
        assert len(data.run_requests) == 1
    job = defs.resolve_job_def(sched.job_name)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"raw_pages", "dataset_release", "rejected_documents"} <= keys


def test_config_sensor_fires_once_per_change(tmp_path):
    cfg = _config(tmp_path)
    defs = build_definitions(cfg, tmp_path / "w")
    sensor = defs.resolve_sensor_def("config_change_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, definitions=defs)
        first = sensor.evaluate_tick(ctx)
        assert first.run_requests == [] and first.cursor  # first look only records the digest
        ctx = dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
        same = sensor.evaluate_tick(ctx)
        assert same.run_requests == [] and same.cursor == first.cursor
        cfg.write_text(cfg.read_text().replace("0 3 * * *", "0 5 * * *"))
        ctx = dg.build_sensor_context(instance=instance, cursor=same.cursor, definitions=defs)
        changed = sensor.evaluate_tick(ctx)
        assert len(changed.run_requests) == 1 and changed.cursor != first.cursor
        assert changed.run_requests[0].tags["trigger"] == "config_change"
        ctx = dg.build_sensor_context(instance=instance, cursor=changed.cursor, definitions=defs)
        assert sensor.evaluate_tick(ctx).run_requests == []  # re-evaluating with no change: no run


def test_demo_config_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("DATASET_PLATFORM_CONFIG", raising=False)
    defs = build_definitions(None, tmp_path)
    assert defs.resources["platform"].config_path == str(demo_config_path().resolve())
