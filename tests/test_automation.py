"""The schedule and the sensor: real evaluations against a real (temporary) Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb

from dataset_platform.config import demo_config_path
from dataset_platform.definitions import build_definitions
from dataset_platform.storage import Workdir, read_layer


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
        tags = data.run_requests[0].tags
        assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == ("demo", "demo")
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
        assert changed.run_requests[0].tags["dataset_platform/trigger"] == "config_change"
        assert changed.run_requests[0].tags["dagster/asset_partition_range_start"] == "demo"  # every source
        ctx = dg.build_sensor_context(instance=instance, cursor=changed.cursor, definitions=defs)
        assert sensor.evaluate_tick(ctx).run_requests == []  # re-evaluating with no change: no run


def test_demo_config_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("DATASET_PLATFORM_CONFIG", raising=False)
    defs = build_definitions(None, tmp_path)
    assert defs.resources["platform"].config_path == str(demo_config_path().resolve())


def test_inbox_file_refreshes_its_source_partition_exactly_once(tmp_path):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - name: notes\n    kind: jsonl\n    fields: {text: body}\n"
                   "  - name: other\n    kind: jsonl\n")
    wd = Workdir.at(tmp_path / "w").ensure()
    defs = build_definitions(cfg, wd.root)
    sensor = defs.resolve_sensor_def("inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    raw_layer = next(a for a in defs.assets if "raw_pages" in {k.to_user_string() for k in a.keys})
    lines = [json.dumps({"url": f"https://notes.test/{i}", "body": f"note number {i}"}) for i in range(3)]
    with dg.instance_for_test() as instance:
        def tick():
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))

        assert tick().run_requests == []  # empty inbox
        wd.inbox("notes").mkdir(parents=True)
        (wd.inbox("notes") / "a.jsonl").write_text("\n".join(lines) + "\n")
        (req,) = tick().run_requests
        assert req.partition_key == "notes" and req.tags["dataset_platform/trigger"] == "inbox"
        assert [r.run_key for r in tick().run_requests] == [req.run_key]  # same file: same key, Dagster runs it once

        def run(request):
            result = dg.materialize([raw_layer], partition_key=request.partition_key, tags=request.tags,
                                    resources=defs.resources, instance=instance)
            assert result.success
            return result

        run(req)
        assert tick().run_requests == []  # the file moved to processed/
        assert (wd.inbox("notes") / "processed" / "a.jsonl").exists()
        con = duckdb.connect()
        count = lambda layer: con.sql(f"SELECT count(*) FROM {read_layer(wd, layer)}").fetchall()[0][0]  # noqa: E731
        assert (count("raw_pages"), count("crawl_log")) == (3, 3)
        assert not wd.raw_partition("other").exists()  # the other source was not touched

        # the same content dropped again: a new file event, but the batch id is the content hash
        (wd.inbox("notes") / "a-again.jsonl").write_text("\n".join(lines) + "\n")
        (again,) = tick().run_requests
        assert again.run_key != req.run_key
        run(again)
        assert (count("raw_pages"), count("crawl_log")) == (3, 3)  # no duplicated rows
        con.close()
