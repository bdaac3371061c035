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


def test_each_source_has_its_schedule_refreshing_only_its_raw_partition(tmp_path):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - name: demo\n    kind: crawl\n    demo_site: true\n    start_urls: [/]\n"
                   "  - name: notes\n    kind: jsonl\n    schedule: '*/30 * * * *'\n"
                   "pipeline:\n  schedule: '15 4 * * 1'\n")
    defs = build_definitions(cfg, tmp_path / "w")
    repo = defs.get_repository_def()
    crons = {}
    # no instance here: a schedule context built on a temporary instance leaves Dagster's definitions-state
    # storage pointing at it after it is gone, and the next test's definitions fail to load
    for source in ("demo", "notes"):
        sched = defs.resolve_schedule_def(f"refresh_{source}")
        assert sched.execution_timezone == "UTC" and sched.default_status == dg.DefaultScheduleStatus.RUNNING
        crons[source] = sched.cron_schedule
        ctx = dg.build_schedule_context(repository_def=repo)
        (req,) = sched.evaluate_tick(ctx).run_requests
        assert req.partition_key == source and req.tags["dataset_platform/trigger"] == "schedule"
        job = defs.resolve_job_def(sched.job_name)
        assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"raw_pages", "crawl_log"}
    assert crons == {"demo": "15 4 * * 1", "notes": "*/30 * * * *"}  # pipeline.schedule is the default
    # the layers below follow by themselves: every one of them has the automation condition, the
    # automation sensor is declared and running, and the release has a freshness policy
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        cond = graph.get(key).automation_condition
        if key.to_user_string() in ("raw_pages", "crawl_log"):
            assert cond is None
        else:
            assert cond is not None and "blocking checks passed" in cond.get_label(), key
    assert defs.resolve_sensor_def("automation_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    policy = graph.get(dg.AssetKey("dataset_release")).freshness_policy
    assert policy.fail_window.to_timedelta().total_seconds() == 50 * 3600
    assert policy.warn_window.to_timedelta().total_seconds() == 26 * 3600


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
        count = lambda layer: con.sql(f"SELECT count(*) FROM {read_layer(wd, layer)}").fetchall()[0][0]
        assert (count("raw_pages"), count("crawl_log")) == (3, 3)
        assert not wd.raw_source("other").exists()  # the other source was not touched

        # the same content dropped again: a new file event, but the batch id is the content hash
        (wd.inbox("notes") / "a-again.jsonl").write_text("\n".join(lines) + "\n")
        (again,) = tick().run_requests
        assert again.run_key != req.run_key
        run(again)
        assert (count("raw_pages"), count("crawl_log")) == (3, 3)  # no duplicated rows

        # a file whose kind its name does not tell, beside a good one: refused, shown in the UI,
        # and the good one lands (issue 19, probe 2)
        (wd.inbox("notes") / "b.csv").write_text("url,body\n")
        (wd.inbox("notes") / "c.jsonl").write_text(json.dumps({"url": "https://notes.test/c", "body": "c"}) + "\n")
        third = tick().run_requests
        assert len(third) == 2  # (one per file; the first run lands both, the second finds nothing new)
        run(third[0])
        assert (count("raw_pages"), count("crawl_log")) == (4, 5)  # crawl_log: the refusal too
        md = instance.get_latest_materialization_event(dg.AssetKey("raw_pages")).asset_materialization.metadata
        assert md["files_refused"].value == 1 and "b.csv" in md["refused_files"].value
        assert (wd.inbox("notes") / "rejected" / "b.csv.reason.txt").exists()
        assert tick().run_requests == []  # nothing left to land: the refused file is out of the way
        con.close()


def _failed_run(defs, instance):
    """A real failed run: the raw refresh of a source whose dump path does not exist."""
    result = defs.resolve_job_def("raw_refresh").execute_in_process(
        partition_key="notes", instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    return run, failure


def test_a_failed_run_is_recorded_and_posted_to_the_webhook(tmp_path, monkeypatch):
    import http.server
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - name: notes\n    kind: jsonl\n    paths: [missing/*.jsonl, missing.jsonl]\n")
    wd = Workdir.at(tmp_path / "w").ensure()
    defs = build_definitions(cfg, wd.root)
    sensor = defs.resolve_sensor_def("run_failure_alert")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    try:
        with dg.instance_for_test() as instance:
            run, failure = _failed_run(defs, instance)
            # without a webhook: the alert is only written down
            monkeypatch.delenv("DATASET_PLATFORM_ALERT_WEBHOOK", raising=False)
            ctx = dg.build_run_status_sensor_context(sensor_name="run_failure_alert", dagster_event=failure,
                                                     dagster_instance=instance, dagster_run=run)
            sensor(ctx.for_run_failure())
            monkeypatch.setenv("DATASET_PLATFORM_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
            sensor(ctx.for_run_failure())
    finally:
        server.shutdown()
    lines = [json.loads(x) for x in wd.alerts.read_text().splitlines()]
    assert len(lines) == 2
    assert all(x["run_id"] == run.run_id and x["job"] == "raw_refresh" and x["partitions"] == "notes" for x in lines)
    assert "raw_layer" in lines[0]["error"]  # says which step failed
    assert lines[0]["webhook"] == "not configured" and lines[1]["webhook"] == "sent (HTTP 204)"
    assert len(received) == 1 and received[0]["run_id"] == run.run_id and received[0]["job"] == "raw_refresh"


def test_an_unreachable_webhook_never_fails_the_alert(tmp_path):
    import socket

    from dataset_platform.defs.automation import post_webhook

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = post_webhook(f"http://127.0.0.1:{port}/hook", {"run_id": "x"}, timeout=2)
    assert out.startswith("not sent: ") and ("Connection refused" in out or "URLError" in out), out
