"""The Dagster instance a work folder gets (defs/instance_storage.py): Dagster's SQLite storage with
its connections kept open. Real Dagster runs on real SQLite files; what another process reads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import dagster as dg
import pytest

from dataset_platform.defs import instance_storage as ist


def _asset(n_checks: int = 3):
    specs = [dg.AssetCheckSpec(f"check_{i}", asset="layer", blocking=True) for i in range(n_checks)]

    @dg.asset(name="layer", check_specs=specs)
    def layer():
        yield dg.MaterializeResult(metadata={"rows": 7})
        for i in range(n_checks):
            yield dg.AssetCheckResult(check_name=f"check_{i}", passed=i != 1, metadata={"i": i})

    return layer


@pytest.fixture
def home(tmp_path, monkeypatch):
    from dataset_platform.cli import _prepare_instance
    from dataset_platform.workdir import Workdir

    monkeypatch.setenv("DAGSTER_HOME", "")  # (restored after the test: _prepare_instance sets it)
    return _prepare_instance(Workdir.at(tmp_path / "w").ensure())


def test_a_work_folders_instance_pools_its_connections_and_another_process_reads_every_event(home):
    text = (home / "dagster.yaml").read_text(encoding="utf-8")
    assert "class: WorkFolderSqliteStorage" in text and "env: DAGSTER_HOME" in text
    with ist.instance_at(home) as instance:
        assert isinstance(instance.event_log_storage, ist.PooledSqliteEventLogStorage)
        assert isinstance(instance.run_storage, ist.PooledSqliteRunStorage)
        connects = []
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def count(*_):
            connects.append(1)

        event.listen(Engine, "connect", count)
        try:
            results = [dg.materialize([_asset()], instance=instance, raise_on_error=False) for _ in range(3)]
        finally:
            event.remove(Engine, "connect", count)
        # Dagster's own storage opens a connection per transaction (~4 per event, ~100 events here)
        assert len(connects) <= 12, len(connects)
        events = len(instance.get_records_for_run(results[-1].run_id, limit=1000).records)
        assert events >= 15
        # every run's shard engine is kept; reads use them again
        assert set(instance.event_log_storage._engines) >= {r.run_id for r in results}
    # what the runs wrote is in the files: another process (Dagster's own storage) reads all of it
    probe = (
        "import sys, dagster as dg\n"
        "from dagster._core.storage.sqlite_storage import DagsterSqliteStorage\n"
        "home = sys.argv[1]\n"
        "s = DagsterSqliteStorage.from_local(home)\n"
        "runs = s.run_storage.get_runs()\n"
        "ev = [len(s.event_log_storage.get_records_for_run(r.run_id, limit=1000).records) for r in runs]\n"
        "checks = s.event_log_storage.get_latest_asset_check_execution_by_key(\n"
        "    [dg.AssetCheckKey(dg.AssetKey('layer'), f'check_{i}') for i in range(3)])\n"
        "print(len(runs), min(ev), sorted((k.name, v.status.value) for k, v in checks.items()))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(home)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n_runs, min_events, latest = out.stdout.split(maxsplit=2)
    assert int(n_runs) == 3 and int(min_events) == events
    assert latest.strip() == "[('check_0', 'SUCCEEDED'), ('check_1', 'FAILED'), ('check_2', 'SUCCEEDED')]"


def test_the_open_run_shards_are_bounded_and_a_closed_one_opens_again(home, monkeypatch):
    monkeypatch.setattr(ist, "MAX_OPEN_SHARDS", 2)
    with ist.instance_at(home) as instance:
        runs = [dg.materialize([_asset(1)], instance=instance).run_id for _ in range(4)]
        storage = instance.event_log_storage
        open_runs = [s for s in storage._engines if s != "index"]
        assert open_runs == runs[-2:] and "index" in storage._engines
        first = storage.get_records_for_run(runs[0], limit=1000).records  # closed: opened again
        assert len(first) >= 10 and runs[0] in storage._engines and runs[2] not in storage._engines


def test_threads_share_the_pooled_storage(home):
    with ist.instance_at(home) as instance:
        run_id = dg.materialize([_asset(2)], instance=instance, raise_on_error=False).run_id
        expected = len(instance.get_records_for_run(run_id, limit=1000).records)
        seen, errors = [], []

        def read():
            try:
                for _ in range(20):
                    seen.append(len(instance.get_records_for_run(run_id, limit=1000).records))
                    assert instance.get_run_by_id(run_id) is not None
            except Exception as e:  # (reported below)
                errors.append(e)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and seen == [expected] * 80


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(home):
    with ist.instance_at(home) as instance:
        run_id = dg.materialize([_asset(1)], instance=instance).run_id
        before = dict(instance.event_log_storage._engines)
        pid = os.fork()
        if pid == 0:  # the child: nothing inherited is used; its own connections work
            ok = (not instance.event_log_storage._engines and instance.run_storage._pooled is None
                  and len(instance.get_records_for_run(run_id, limit=1000).records) >= 10)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert instance.event_log_storage._engines == before  # the parent's own, still in use
        assert dg.materialize([_asset(1)], instance=instance).success
