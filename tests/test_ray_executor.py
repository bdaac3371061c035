"""``pipeline.executor: ray``: the parts of the per-batch stages run as tasks on a real Ray
cluster started on 127.0.0.1 by the test, and the layers and the release are byte for byte the
ones a local build writes from the same inputs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pytest
from graphkit import config, document, near_copy, refresh, write_jsonl

from dataset_platform.workdir import Workdir

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # (a Ray cluster each: 2.4 min of the 9.9 min fast lane)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head node with 2 CPUs on 127.0.0.1 (``ray start --head``) with its job API, stopped
    afterwards (its own processes only: ``cluster.local_head``)."""
    if importlib.util.find_spec("ray") is None:  # (not imported here: see cluster/ray_tasks.connect)
        if os.environ.get("CI") == "true":
            pytest.fail("Ray is not installed (it is in the test extra): pip install -e '.[test]'")
        pytest.skip("Ray is not installed: pip install -e '.[test]' (the test extra has it)")
    from dataset_platform.cluster.local_head import start_head

    # token authentication with a token of this test's own (not whatever ~/.ray holds): the head,
    # the test process (its driver) and the CLI runs it starts all have it from the environment
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    head = start_head(2, Path(f"/tmp/dp-ray-{os.getpid()}"), jobs=True)  # (Ray's socket paths must stay short)
    try:
        yield head
    finally:
        import ray

        ray.shutdown()
        head.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _corpus(root: Path, n: int = 420, seed: int = 7) -> Path:
    rng = random.Random(seed)
    docs, topics = [], ["garden", "harbour", "school"]
    for i in range(n):
        text = document(rng, topics[i % 3])
        docs.append({"id": f"d{i:04d}", "url": f"https://news.example.org/{i}", "text": text})
        if i % 17 == 0:  # planted near-duplicates
            docs.append({"id": f"d{i:04d}-copy", "url": f"https://mirror.example.org/{i}", "text": near_copy(rng, text)})
        if i % 23 == 5:  # and exact ones (the same text at another URL)
            docs.append({"id": f"d{i:04d}-same", "url": f"https://copy.example.org/{i}", "text": text})
    return write_jsonl(root / "news.jsonl", docs)


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _release(wd: Workdir) -> Path:
    latest = next(wd.releases.glob("*/LATEST"))
    return latest.parent / latest.read_text().strip()


def _build(tmp_path: Path, executor: str, address: str, name: str | None = None, root: Path | None = None):
    """The whole graph (as library code) on the corpus, with ``executor``; the work folder in
    ``root`` (default ``tmp_path``)."""
    dump = tmp_path / "news.jsonl"
    if not dump.exists():
        _corpus(tmp_path)
    cfg = config(tmp_path, sources=["news"])  # (one benchmark file: its path is in the chains)
    pipeline = cfg.pipeline.model_copy(update={
        "executor": executor, "ray": cfg.pipeline.ray.model_copy(update={"address": address, "task_memory": "1GB"})})
    cfg = cfg.model_copy(update={"pipeline": pipeline})
    wd = Workdir.at((root or tmp_path) / (name or executor)).ensure()
    wd.inbox("news").mkdir(parents=True, exist_ok=True)
    shutil.copy(dump, wd.inbox("news") / "news.jsonl")
    return wd, refresh(cfg, wd)


def test_parts_run_as_ray_tasks_and_give_the_local_layers_and_release_byte_for_byte(tmp_path, ray_cluster, monkeypatch):
    from dataset_platform.release import split_shards
    from dataset_platform.stages.dedup import components, exact

    # a row "weighs" 5 MB: the few hundred documents here take exact dedup's shards and the split's
    # (~100 rows a task)
    monkeypatch.setattr(exact, "EXACT_ROW_BYTES", 5 * 10**6)
    monkeypatch.setattr(split_shards, "SPLIT_ROW_BYTES", 5 * 10**6)
    shards: list[int] = []  # (shards of each round, per call: only the Ray build calls it)
    rank_in_shards = exact.rank_in_shards
    monkeypatch.setattr(exact, "rank_in_shards", lambda *a, **k: shards.append(rank_in_shards(*a, **k)) or shards[-1])
    split: list[int] = []
    allocate = split_shards.allocate_in_shards
    monkeypatch.setattr(split_shards, "allocate_in_shards", lambda *a, **k: split.append(allocate(*a, **k)) or split[-1])
    # and an edge 10 MB: the components of the split's groups in shard tasks (dedup's few near-duplicate
    # edges fit one task: tests/test_dedup_shards.py takes them into shards)
    monkeypatch.setattr(components, "EDGE_BYTES", 10**7)
    graphs: list[int] = []
    in_shards = components.components_in_shards
    monkeypatch.setattr(components, "components_in_shards",
                        lambda con, edges, *a, **k: graphs.append(con.sql(f"SELECT count(*) FROM ({edges})").fetchall()[0][0])
                        or in_shards(con, edges, *a, **k))
    # and dedup's scan of the texts as a task per input part (more parts than the cluster's CPUs)
    from dataset_platform.stages.dedup import stage as dedup_stage

    scans: list[int] = []
    scan_in_tasks = dedup_stage._scan_in_tasks
    monkeypatch.setattr(dedup_stage, "_scan_in_tasks", lambda con, select, files, *a: scans.append(len(files))
                        or scan_in_tasks(con, select, files, *a))
    # and its signing in batches of 50 texts, each input part's read and signed by a task of its own
    import functools

    monkeypatch.setattr(dedup_stage, "run_dedup", functools.partial(dedup_stage.run_dedup, batch_size=50))
    signing: list[int] = []
    sign_tasks = dedup_stage._sign_tasks
    monkeypatch.setattr(dedup_stage, "_sign_tasks", lambda *a: signing.append(len(r := sign_tasks(*a))) or r)
    (local_wd, local), (ray_wd, on_ray) = _build(tmp_path, "local", ray_cluster.address), _build(tmp_path, "ray", ray_cluster.address)
    assert len(shards) == 1 and shards[0] >= 4
    assert scans == [on_ray["deduplicated_documents"].counters["parts_computed"]]  # (a file per part)
    assert signing == scans  # (every part has texts to sign; the local build signs here, its index the same bytes)
    assert len(split) == 1 and split[0] >= 3  # the split's allocation in shards, on the cluster
    # the split's graph: an edge per document's URL, and one per cluster
    assert len(graphs) == 1 and graphs[0] >= sum(on_ray["dataset_release"].rows.values())
    per_batch = ["extracted_documents", "cleaned_documents", "labelled_documents", "decontaminated_documents"]
    for layer in per_batch:
        ran = on_ray[layer].counters
        assert ran["parts_computed"] >= 4  # 100 rows per part
        assert ran["ray"]["tasks"] == ran["parts_computed"]  # every part a Ray task...
        assert "ray" not in local[layer].counters
        assert _files(local_wd.layer_dir(layer)) == _files(ray_wd.layer_dir(layer)), layer  # ... the same bytes
    # the global dedup stage: its shards of band keys as Ray tasks, at least one per CPU of the
    # cluster, its exact ranking's two rounds of shards, and its decision applied to each output
    # part as a Ray task
    dedup = on_ray["deduplicated_documents"].counters
    assert dedup["parts_computed"] >= 4 and dedup["ray"]["tasks"] >= 2 + 2 * shards[0] + dedup["parts_computed"]
    assert "ray" not in local["deduplicated_documents"].counters
    for layer in ("deduplicated_documents", "duplicate_clusters"):
        assert _files(local_wd.layer_dir(layer)) == _files(ray_wd.layer_dir(layer)), layer
    assert duckdb.sql(f"SELECT count(DISTINCT kind) FROM read_parquet('{ray_wd.layer('duplicate_clusters')}') "
                      "WHERE kind IN ('near', 'exact')").fetchall()[0][0] == 2  # (both kinds were found there)
    workers = {on_ray[layer].counters["ray"]["workers"] for layer in per_batch}
    assert max(workers) >= 2  # the parts were spread over the cluster's worker processes
    for layer in per_batch:  # each task's worker stayed under the task's memory (1 GB here)
        ran = on_ray[layer].counters["ray"]
        assert 50 < ran["peak_task_rss_mb"] < ran["task_memory_mb"] == round(10**9 / 2**20, 1)
    assert local["dataset_release"].rows == on_ray["dataset_release"].rows and sum(local["dataset_release"].rows.values()) > 0
    local_release, ray_release = _release(local_wd), _release(ray_wd)
    assert local_release.name == ray_release.name  # the version is a digest of the content and the config
    assert _files(local_release) == _files(ray_release)  # every data file, the card and the manifest


@pytest.fixture
def network_folder(tmp_path):
    """A folder on a network file system: an SFTP server (OpenSSH's sshd) on 127.0.0.1, started by
    the test with keys of its own, mounted with sshfs (FUSE). What a cluster's shared storage is
    to its workers: every write and read crosses the network protocol, renames and links included."""
    sshd, sshfs = "/usr/sbin/sshd", shutil.which("sshfs")
    missing = [what for what, ok in (("sshd (openssh-server)", os.path.exists(sshd)), ("sshfs", sshfs),
                                     ("/dev/fuse", os.path.exists("/dev/fuse"))) if not ok]
    if missing:
        why = f"no network file system to test on: {', '.join(missing)} missing (apt-get install openssh-server sshfs)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    import subprocess

    from dataset_platform.cluster.local_head import free_port

    base = Path(f"/tmp/dp-nfs-{os.getpid()}-{secrets.token_hex(3)}")  # (short, outside the export)
    export, mount = base / "export", base / "mnt"
    export.mkdir(parents=True)
    mount.mkdir()
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)], check=True)
    shutil.copy(base / "user.pub", base / "authorized_keys")
    port = free_port()
    (base / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {base / 'host'}\nAuthorizedKeysFile {base / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"UsePAM no\nStrictModes no\nPidFile {base / 'sshd.pid'}\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # (its privilege separation folder)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(base / "sshd_config")], stderr=subprocess.PIPE)
    try:
        for _ in range(50):  # (until it listens)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        user = os.environ.get("USER") or "root"
        subprocess.run([sshfs, "-p", str(port), "-o", f"IdentityFile={base / 'user'},StrictHostKeyChecking=no,"
                        "UserKnownHostsFile=/dev/null,BatchMode=yes", f"{user}@127.0.0.1:{export}", str(mount)],
                       check=True, timeout=30)
        try:
            assert os.path.ismount(mount)
            yield mount, export
        finally:
            subprocess.run([shutil.which("fusermount3") or "fusermount", "-u", str(mount)], check=False)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def test_a_work_folder_on_a_network_file_system_gives_the_local_release(tmp_path, ray_cluster, network_folder):
    """The work folder that the run's process and every Ray worker share, on a network file
    system (SFTP through FUSE): the same layers and release, byte for byte, as a local build on
    this machine's disk; nothing is kept in memory maps across processes or by absolute path."""
    mount, export = network_folder
    local_wd, _ = _build(tmp_path, "local", ray_cluster.address)
    ray_wd, on_ray = _build(tmp_path, "ray", ray_cluster.address, root=mount)
    assert (export / "ray" / "layers").is_dir()  # (written through the network file system)
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
                  "decontaminated_documents"):
        assert on_ray[layer].counters["ray"]["tasks"] >= 2, layer
        assert _files(local_wd.layer_dir(layer)) == _files(ray_wd.layer_dir(layer)), layer
    assert _files(_release(local_wd)) == _files(_release(ray_wd))


def _processes_naming(text: str) -> list[int]:
    """Processes whose command line holds ``text``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def _ray_task_processes(title: str) -> list[int]:
    """Ray worker processes running a task named ``title`` (Ray puts ``ray::<name>`` in argv)."""
    return _processes_naming(f"ray::{title}")


def test_a_ray_worker_killed_mid_stage_gives_the_same_layers_and_each_part_once(tmp_path, ray_cluster):
    """SIGKILL of the worker running a clean part (as the OOM killer would): Ray runs the task again,
    the part is staged anew and committed once, and everything is as a local build writes it."""
    killed: list[int] = []
    done = threading.Event()

    def kill_first_clean_task() -> None:
        while not done.is_set() and not killed:
            for pid in _ray_task_processes("clean-part"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    local_wd, _local = _build(tmp_path, "local", ray_cluster.address)
    killer = threading.Thread(target=kill_first_clean_task, daemon=True)
    killer.start()
    try:
        ray_wd, on_ray = _build(tmp_path, "ray", ray_cluster.address)
    finally:
        done.set()
        killer.join(5)
    assert killed, "no Ray worker ran a clean part while the test watched"
    ran = on_ray["cleaned_documents"].counters
    assert ran["ray"]["tasks"] == ran["parts_computed"]  # one result per part, the retried one included
    for layer in ("extracted_documents", "cleaned_documents", "labelled_documents", "decontaminated_documents"):
        assert _files(local_wd.layer_dir(layer)) == _files(ray_wd.layer_dir(layer)), layer
        assert not [p for p in (ray_wd.layer_dir(layer) / ".staging").rglob("*") if p.is_file()]  # nothing left
    assert _files(_release(local_wd)) == _files(_release(ray_wd))


def test_dedup_signs_its_documents_on_the_cluster_with_the_local_signatures(tmp_path, ray_cluster):
    """With the Ray executor the MinHash signing (dedup's work per document) runs as Ray tasks, a
    window of batches at a time, and writes the index part and the decision a local run writes."""
    from dataset_platform.cluster.ray_tasks import tasks
    from dataset_platform.stages.dedup.index import MinHashIndex
    from dataset_platform.stages.dedup.stage import run_dedup

    dump = _corpus(tmp_path)
    cfg = config(tmp_path, sources=["news"])
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={
        "executor": "ray", "ray": cfg.pipeline.ray.model_copy(update={"address": ray_cluster.address})})})
    out = {}
    for where in ("local", "ray"):
        con = duckdb.connect()
        index = MinHashIndex(tmp_path / f"index-{where}")
        placement: dict = {}
        on = tasks(cfg, "dedup", placement) if where == "ray" else None
        res = run_dedup(con, f"read_json('{dump}')", cfg.pipeline.dedup, batch_size=40, index=index, tasks=on)
        index.commit(con)
        signed = sorted(index.path.glob("part-*.parquet"))
        out[where] = (res.rejected_rows, con.sql("SELECT * FROM clusters ORDER BY doc_id").fetchall(),
                      [duckdb.sql(f"SELECT * FROM '{f}' ORDER BY row").fetchall() for f in signed]
                      + [f.read_bytes() for f in sorted(index.path.glob("part-*.npy"))], len(placement))
        con.close()
    (rejected, clusters, signatures, _), (rejected_r, clusters_r, signatures_r, ray_tasks) = out["local"], out["ray"]
    n = sum(len(part) for part in signatures if isinstance(part, list))
    assert n > 400 and rejected > 0 and any(c[4] == "near" for c in clusters)
    assert (rejected_r, clusters_r, signatures_r) == (rejected, clusters, signatures)
    assert ray_tasks >= -(-n // 40) + 2  # a task per batch of 40 documents, and the shards of band keys


def test_a_dump_file_lands_in_ranges_as_ray_tasks_with_the_local_raw_layer(tmp_path, ray_cluster, monkeypatch):
    """With the Ray executor a dump file lands as Ray tasks, one per byte range of it, and the raw
    layer (raw_pages and crawl_log) is byte for byte the one a local landing writes."""
    from dataset_platform.ingest import files as landing
    from dataset_platform.ingest.refresh import materialise_raw

    dump = _corpus(tmp_path)
    monkeypatch.setattr(landing, "RANGE_BYTES", 20_000)
    ranges = landing.jsonl_ranges(dump)
    assert len(ranges) >= 4
    base = config(tmp_path, sources=["news"])
    built = {}
    for executor in ("local", "ray"):
        cfg = base.model_copy(update={"pipeline": base.pipeline.model_copy(update={
            "executor": executor, "ray": base.pipeline.ray.model_copy(update={"address": ray_cluster.address})})})
        wd = Workdir.at(tmp_path / executor).ensure()
        wd.inbox("news").mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, wd.inbox("news") / "news.jsonl")
        built[executor] = (wd, materialise_raw(cfg, wd).counters["sources"]["news"])
    (local_wd, local), (ray_wd, on_ray) = built["local"], built["ray"]
    assert "ray" not in local and on_ray["ray"]["tasks"] == len(ranges)  # a Ray task per range
    parts = len(list(ray_wd.raw_source("news").rglob("data.parquet")))
    assert parts > 1 and "ray_merge" not in local  # and the merge's: a scatter per range, a gather per part
    assert on_ray["ray_merge"]["tasks"] == len(ranges) + parts
    for layer in ("raw_pages", "crawl_log"):
        assert _files(local_wd.layer_dir(layer)) == _files(ray_wd.layer_dir(layer)), layer
    assert sum(on_ray["outcomes"].values()) == sum(local["outcomes"].values()) > 400


def test_a_run_connects_and_warms_every_cpu_of_the_cluster_on_its_warm_up_thread(tmp_path, ray_cluster):
    """``runner.warm_up`` (called when a run starts) connects to the cluster on its thread and
    pays the stages' first-use costs once per CPU of the cluster, on its workers; the run's own
    thread then uses the same connection."""
    import ray  # (imported before the platform connects: its loopback address must stay one)

    from dataset_platform import runner
    from dataset_platform.cluster import ray_tasks

    base = config(tmp_path, sources=["news"])
    cfg = base.model_copy(update={"pipeline": base.pipeline.model_copy(update={
        "executor": "ray", "ray": base.pipeline.ray.model_copy(update={"address": ray_cluster.address})})})
    if ray.is_initialized():
        ray.shutdown()
    runner.warm_up(cfg).join(timeout=120)
    assert ray.is_initialized()  # connected on the warm-up thread
    warmed = ray.get(list(ray_tasks._WARMING), timeout=120)
    assert len(warmed) == 2 and all("clean" in names for names in warmed)  # a task per CPU, each warmed clean
    assert list(ray_tasks.tasks(cfg, "after-warm-up").run(abs, [-1, -2])) == [1, 2]


def test_a_tasks_duckdb_gets_half_of_what_its_worker_does_not_hold_already(tmp_path, ray_cluster):
    """A worker that holds every stage's modules and what earlier tasks cached leaves a task less
    than its memory: the task's DuckDB gets half of what is left, not half of the task's memory."""
    from dataset_platform.cluster import ray_tasks
    from dataset_platform.config import size_bytes
    from dataset_platform.storage import TASK_MEMORY_LEFT_ENV, within_task_memory

    base = config(tmp_path, sources=["news"])
    cfg = base.model_copy(update={"pipeline": base.pipeline.model_copy(update={
        "executor": "ray", "ray": base.pipeline.ray.model_copy(update={"address": ray_cluster.address})})})
    memory = size_bytes(cfg.pipeline.ray.task_memory)
    placement: dict = {}
    tasks = ray_tasks.tasks(cfg, "memory", placement)
    left = [int(v) for v in tasks.run(os.getenv, [TASK_MEMORY_LEFT_ENV] * 2)]
    held = [w[3] for w in placement.values()]
    assert all(h > 50 * 2**20 for h in held)  # (a worker holds at least its interpreter and Ray)
    assert [v + h for v, h in zip(left, held, strict=True)] == [memory, memory]
    limits = list(tasks.run(within_task_memory, ["100GB", "64MB"]))
    assert size_bytes(limits[0]) < memory // 2 and limits[1] == "64MB"  # (less than half: only lowered)
    assert os.environ.get(TASK_MEMORY_LEFT_ENV) is None  # (this process is no task: its limits stay)


def test_within_a_task_a_duckdb_connection_keeps_to_half_of_what_is_left(monkeypatch):
    from dataset_platform.storage import MIN_TASK_MEMORY, TASK_MEMORY_LEFT_ENV, memory_connection, within_task_memory

    monkeypatch.delenv(TASK_MEMORY_LEFT_ENV, raising=False)
    assert within_task_memory("2GB") == "2GB"  # outside a task: as configured
    monkeypatch.setenv(TASK_MEMORY_LEFT_ENV, str(1_200 * 10**6))
    assert within_task_memory("2GB") == "600MB"
    assert within_task_memory("256MB") == "256MB"  # already under half of what is left
    con = memory_connection(1, memory_limit="2GB")
    try:  # (DuckDB shows its limit in MiB: 600 MB is 572.2 MiB)
        assert con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == "572.2 MiB"
    finally:
        con.close()
    monkeypatch.setenv(TASK_MEMORY_LEFT_ENV, "0")  # a worker already at its task's memory
    assert within_task_memory("2GB") == f"{MIN_TASK_MEMORY // 10**6}MB"


def test_a_tasks_peak_is_its_own_not_the_workers_since_it_started():
    """A worker runs many tasks: the peak RSS a task reports is the highest resident memory during
    that task (the worker's peak is reset when it starts, and what earlier tasks left handed back)."""
    import numpy as np

    from dataset_platform.cluster import ray_tasks

    big = np.ones(400 * 2**20 // 8)  # an earlier task's 400 MiB, gone before the next starts
    del big
    before = ray_tasks._peak(False)  # (the process's peak so far: that task's)
    ray_tasks._release_memory()
    reset = ray_tasks._reset_peak()
    assert reset  # (Linux: clear_refs)
    small = ray_tasks._peak(reset)
    assert before - small > 300 * 2**20  # the new task's peak starts from what the worker holds now
    held = np.ones(100 * 2**20 // 8)
    assert ray_tasks._peak(reset) - small > 90 * 2**20 and held.sum() > 0  # and sees what the task takes


def test_a_cluster_or_job_address_of_this_machine_is_told_without_connecting():
    """Loopback clusters keep 127.0.0.1 as their address (the driver and a job's environment):
    one rule for a GCS ``host:port`` and a job API URL. Nothing here connects."""
    from dataset_platform.cluster.ray_tasks import is_loopback

    for address in ("127.0.0.1:6379", "127.0.0.2:6379", "localhost:6379", "http://127.0.0.1:8265",
                    "http://[::1]:8265/", "http://localhost:8265"):
        assert is_loopback(address), address
    for address in ("ray-head:6379", "http://ray-head.internal:8265", "http://[fd00::1]:8265", "auto"):
        assert not is_loopback(address), address


def test_a_parts_duckdb_gets_at_most_half_of_the_tasks_memory():
    from dataset_platform.cluster.ray_tasks import task_config
    from dataset_platform.config import parse_config

    def cfg(memory_limit: str, task_memory: str):
        return parse_config({"sources": [{"name": "news", "kind": "jsonl", "paths": []}],
                             "pipeline": {"memory_limit": memory_limit, "ray": {"task_memory": task_memory}}})

    assert task_config(cfg("2GB", "1GB")).pipeline.memory_limit == "500MB"
    small = cfg("256MB", "4GB")
    assert task_config(small) is small  # already under half of it


def test_without_ray_reachable_the_error_says_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from dataset_platform.cluster.ray_tasks import RayUnavailable, connect
    from dataset_platform.config import RaySettings

    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RayUnavailable, match=r"127\.0\.0\.1:\d+ cannot be reached.*ray start --head"):
        connect(RaySettings(address=f"127.0.0.1:{port}"))  # at once, not after Ray's minutes of retries
    assert not ray.is_initialized()


@pytest.mark.slow
def test_the_demo_run_with_executor_ray_publishes_the_local_release(tmp_path, ray_cluster):
    """`dataset-platform demo --executor ray` (the Ray address from RAY_ADDRESS), through Dagster,
    against the same command without it: the same release version, every file the same bytes but
    the manifest's lineage (the Dagster run ids)."""
    import json

    from test_cli import cli, release_dir, release_files

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    first = cli("demo", "--workdir", str(local), env={"DAGSTER_HOME": ""})
    assert first.returncode == 0, first.stderr[-3000:]
    second = cli("demo", "--workdir", str(on_ray), "--executor", "ray",
                 env={"DAGSTER_HOME": "", "RAY_ADDRESS": ray_cluster.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert second.returncode == 0, second.stderr[-3000:]
    assert release_dir(local).name == release_dir(on_ray).name
    files_local, files_ray = release_files(local), release_files(on_ray)
    differing = sorted(k for k in files_local.keys() | files_ray.keys() if files_local.get(k) != files_ray.get(k))
    assert differing == ["manifest.json"], differing
    man_local, man_ray = (json.loads((release_dir(w) / "manifest.json").read_text()) for w in (local, on_ray))
    assert man_local.pop("lineage") != man_ray.pop("lineage") and man_local == man_ray
    # the parts were Ray tasks: the run's log says so for each per-batch stage
    for stage in ("extract", "clean", "dedup", "label", "decontaminate"):  # (dedup: its shards)
        assert re.search(rf"\b{stage}: \d+ part\(s\) computed.* \d+ Ray task\(s\) on \d+ worker",
                         second.stderr + second.stdout), stage
    assert "Ray task(s)" not in first.stderr + first.stdout
    import dagster as dg  # ... and so do the materialisations' metadata in the UI

    from dataset_platform.defs.instance_storage import instance_at

    with instance_at(str(on_ray / "dagster_home")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("cleaned_documents"))
        md = event.asset_materialization.metadata
        assert md["ray_tasks"].value == md["parts_computed"].value >= 1 and md["ray_workers"].value >= 1


def test_each_stage_step_as_a_ray_job_through_pipes_gives_the_local_layers_and_release(tmp_path, ray_cluster):
    """``pipeline.ray.submit: job``: through Dagster (``materialize()``), every stage's step submits
    a Ray job with dagster-ray's PipesRayJobClient; the job runs the stage (its parts as Ray tasks)
    and its log lines and result come back to the step. Layers and release: the local bytes."""
    import dagster as dg
    import yaml

    from dataset_platform.definitions import build_definitions
    from dataset_platform.defs.ingestion import all_sources_tags

    local_wd, _local = _build(tmp_path, "local", ray_cluster.address)
    cfg = config(tmp_path, sources=["news"])
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={
        "executor": "ray", "ray": cfg.pipeline.ray.model_copy(update={
            "address": ray_cluster.address, "task_memory": "1GB", "submit": "job", "job_address": ray_cluster.jobs,
                                                                      "job_python": sys.executable})})})
    cfg_path = tmp_path / "sources.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_defaults=True)))
    wd = Workdir.at(tmp_path / "jobs").ensure()
    wd.inbox("news").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "news.jsonl", wd.inbox("news") / "news.jsonl")
    defs = build_definitions(cfg_path, wd.root)
    with dg.instance_for_test() as instance:
        result = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                                raise_on_error=False, tags=all_sources_tags(cfg))
        assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
        logs = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
        md = instance.get_latest_materialization_event(
            dg.AssetKey("cleaned_documents")).asset_materialization.metadata
    jobs = {m.split()[3] for m in logs if re.match(r"\[pipes\] Ray job \S+ started", m)}
    from dataset_platform.stages.registry import STAGES

    assert len(jobs) == len(STAGES)  # one job per stage step
    from ray.job_submission import JobSubmissionClient

    entrypoints = {j.submission_id: j.entrypoint for j in JobSubmissionClient(ray_cluster.jobs).list_jobs()}
    assert {entrypoints[j] for j in jobs} == {f"{sys.executable} -m dataset_platform.cluster.ray_job"}  # job_python
    for stage in (st.name for st in STAGES):
        # the job's own log lines (the runner's summary of the stage, its tasks on the cluster)
        assert any(re.match(rf"{stage}: \d+ part\(s\) computed.* \d+ Ray task\(s\) on \d+ worker", m) for m in logs), \
            stage
    assert md["ray_tasks"].value == md["parts_computed"].value >= 4  # the metadata from the job's result
    for layer in ("extracted_documents", "cleaned_documents", "scored_documents", "deduplicated_documents",
                  "duplicate_clusters", "labelled_documents", "decontaminated_documents"):
        assert _files(local_wd.layer_dir(layer)) == _files(wd.layer_dir(layer)), layer
    local_release, job_release = _release(local_wd), _release(wd)
    assert local_release.name == job_release.name
    differing = {k for k, v in _files(local_release).items() if _files(job_release).get(k) != v}
    assert differing <= {"manifest.json"}  # (its lineage names the Dagster run)


def test_a_layer_result_crosses_pipes_as_json_unchanged(tmp_path):
    """What a stage's Ray job sends back to its step (``LayerResult.to_json``) is what a local step
    has, once through JSON."""
    import json

    from dataset_platform.runner import LayerResult
    from dataset_platform.stages.base import StageResult

    res = LayerResult("cleaned_documents", 41, tmp_path / "layer",
                      StageResult("clean", 50, 41, 9, {"c4.lorem_ipsum": 9}, {"pii_redacted": 3}),
                      {"parts_computed": 2, "ray": {"tasks": 2, "workers": 2}, "prepared": {}}, 1.5)
    back = LayerResult.from_json(json.loads(json.dumps(res.to_json())))
    assert back == res


def test_submit_job_without_a_job_api_address_says_what_to_set(tmp_path, monkeypatch):
    from dataset_platform.cluster.ray_tasks import RayUnavailable
    from dataset_platform.defs.ray_jobs import JOB_ADDRESS_ENV, materialise_as_ray_job
    from dataset_platform.stages.registry import stage

    monkeypatch.delenv(JOB_ADDRESS_ENV, raising=False)
    cfg = config(tmp_path, sources=["news"])
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={
        "executor": "ray", "ray": cfg.pipeline.ray.model_copy(update={"submit": "job"})})})
    with pytest.raises(RayUnavailable, match=r"no job API address: set pipeline\.ray\.job_address"):
        materialise_as_ray_job(None, stage("clean"), "sources.yaml", str(tmp_path), cfg)


def test_stopping_a_local_head_leaves_other_ray_clusters_running(ray_cluster):
    """``ray stop`` would stop every Ray process of the machine (a developer's own cluster, or the
    tests' while a benchmark ends); a head of ``cluster.local_head`` stops only its own."""
    from dataset_platform.cluster.local_head import start_head

    tmp_before = set(Path(tempfile.gettempdir()).glob("pymp-*"))
    other = start_head(1, Path(f"/tmp/dp-ray-other-{os.getpid()}"), jobs=True)
    try:
        assert _processes_naming(str(other.temp)) and other.address != ray_cluster.address
        # each head's agents on ports of their own: the second head runs jobs too (with Ray's fixed
        # agent port it had no job agent while the first held that port)
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(other.jobs)
        deadline = time.monotonic() + 90
        while True:
            try:
                job = client.submit_job(entrypoint=f"{sys.executable} -c 'print(42)'")
                break
            except RuntimeError as e:  # (its agent registers seconds after `ray start` returns)
                assert "No available agent" in str(e) and time.monotonic() < deadline, e
                time.sleep(1)
        while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED and "42" in client.get_job_logs(job)
    finally:  # (stopped even when an assertion fails: no head is left running)
        other.stop()
    assert not _processes_naming(str(other.temp)) and not other.temp.exists()
    # (its dashboard's multiprocessing folder went with its temp folder, not left in /tmp)
    assert set(Path(tempfile.gettempdir()).glob("pymp-*")) <= tmp_before
    assert _processes_naming(str(ray_cluster.temp))  # the first cluster is still up ...
    import ray

    from dataset_platform.cluster.ray_tasks import connect
    from dataset_platform.config import RaySettings

    ray.shutdown()
    assert connect(RaySettings(address=ray_cluster.address)).cluster_resources()["CPU"] == 2  # ... and answers
