"""The parts of a per-batch stage as Ray tasks (``pipeline.executor: ray``).

A part is the unit of work (``runner.part_task``): it reads one input part's file and writes its
output files into the layer's staging area, and returns what the part records. The runner commits
the layer once every part is staged, as it does locally; here each part is a Ray task instead of a
process of this machine. A task whose worker dies is run again by Ray (``pipeline.ray.max_retries``):
it rewrites the same staging files from the same input, and the runner records each part once, when
its result comes back, so a retried part is never committed twice. The files are on a path every
worker reads and writes (one machine, or a shared file system).

Ray is an optional dependency (``pip install 'dataset-platform[ray]'``); nothing here imports it
until a stage runs with this executor. Nothing here imports Dagster.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator

from dataset_platform.config import RaySettings, size_bytes
from dataset_platform.stages.base import Tasks


class RayUnavailable(RuntimeError):
    """``pipeline.executor`` is ``ray``, but Ray cannot be imported or reached."""


_CONNECTING = threading.Lock()  # (the run's warm-up thread and its steps may connect at once)
#: the warm-up tasks of this process (:func:`warm`); kept, never cancelled, never waited for
_WARMING: list = []


class _NotMainThread(logging.Filter):
    """Drop Ray's warning that a driver connected off the main thread keeps the process's own
    SIGTERM handler (Dagster's): that is what :func:`warm` wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


def connect(settings: RaySettings):
    """The ``ray`` module, connected to the configured cluster (once per process): the address in
    ``pipeline.ray.address``, else ``$RAY_ADDRESS``, else a Ray instance started on this machine."""
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    if address is None or is_loopback(address):
        # a cluster of this machine only (the instance started here, or one on 127.0.0.1): Ray must
        # not swap 127.0.0.1 for the machine's outward address, as it does for clusters of several
        # nodes. Read when Ray is imported: set before.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable("pipeline.executor is 'ray', but Ray is not installed: "
                             "pip install 'dataset-platform[ray]' (or set pipeline.executor: local)") from e
    if address is None or is_loopback(address):
        # the variable is read once, when Ray is first imported: too late if something imported it
        # before (the driver then sends 127.0.0.1's cluster its outward address, and fails). Ray's
        # services read this constant of its module at each call.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    with _CONNECTING:
        if not ray.is_initialized():
            if address is not None:
                _probe(address)  # (Ray itself retries an address that does not answer for minutes)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, namespace="dataset_platform")
            except (ConnectionError, RuntimeError) as e:
                raise RayUnavailable(_unreachable(address, e)) from e
    return ray


def warm(cfg) -> int:
    """Connect to the configured cluster and start, on each of its CPUs, a task that pays the
    stages' first-use costs (imports, jieba's dictionary, compiled patterns: what the first part
    of each stage would pay on that worker). Called on the run's warm-up thread
    (``runner.warm_up``): the connection (about 1 s) and the warming overlap Dagster's start and
    the reading of the first dump files, when the workers have nothing else to do. Returns the
    number of tasks started: none unless the cluster has an address (``pipeline.ray.address`` or
    ``$RAY_ADDRESS``), because a Ray instance that this process starts itself must be started on
    its main thread (its processes die with the thread that started them)."""
    settings = cfg.pipeline.ray
    if not (settings.address or os.environ.get("RAY_ADDRESS")):
        return 0
    logging.getLogger("ray._private.worker").addFilter(_NotMainThread())
    ray = connect(settings)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(_warm_worker).options(num_cpus=1, max_retries=0, name="warm-up")
    refs = [task.remote(cfg) for _ in range(cpus)]
    _WARMING[:] = refs
    return len(refs)


def _warm_worker(cfg) -> list[str]:
    """Every registered stage's ``warm``, on a Ray worker; the names of those that ran (a failure
    changes nothing: the stage's first part pays the cost itself)."""
    from dataset_platform.runner import STAGES  # (imports every stage's module)

    warmed = []
    for st in STAGES:
        if st.warm is not None:
            try:
                st.warm(st.settings(cfg.pipeline))
            except Exception:
                continue
            warmed.append(st.name)
    return warmed


def _unreachable(address: str | None, why: object) -> str:
    return (f"pipeline.executor is 'ray', but the Ray cluster at {address or '(local)'} cannot be reached: {why}. "
            "Start one (`ray start --head`), or set pipeline.ray.address / RAY_ADDRESS to a running cluster")


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    return host.strip("[]"), port


def is_loopback(address: str) -> bool:
    """Whether a cluster's ``host:port`` or a URL (its job API) names this machine's loopback."""
    import ipaddress

    host, _port = _host_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail at once, with what to do, when nothing answers at a ``host:port`` address."""
    import socket

    host, port = _host_port(address)
    if not host or not port.isdigit():
        return  # ('auto', or a form Ray resolves itself)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(_unreachable(address, e)) from e


def task_config(cfg):
    """``cfg`` as a part's task runs it: its DuckDB may use at most half of the task's memory
    (``pipeline.ray.task_memory``; the other half is the stage's Python batches), or
    ``pipeline.memory_limit`` when that is less; in the task, less again when its worker already
    holds some of that memory (``storage.within_task_memory``). (Not in any fingerprint: where and
    with how much memory a part runs does not change what it writes.)"""
    bound = size_bytes(cfg.pipeline.ray.task_memory) // 2
    if size_bytes(cfg.pipeline.memory_limit) <= bound:
        return cfg
    return cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"memory_limit": f"{bound // 10**6}MB"})})


def _part(stage_name, cfg, *args) -> tuple:
    """``runner.part_task`` as a Ray task runs it (its DuckDB within the task's memory)."""
    from dataset_platform.runner import part_task

    return part_task(stage_name, task_config(cfg), *args)


def run_parts(stage_name: str, cfg, root: str, folder: str, label_sets, state, todo: list,
              placement: dict | None = None) -> Iterator[tuple]:
    """``runner.part_task`` of each ``(part, chain, old)`` in ``todo``, as Ray tasks; yields their
    results in the order of ``todo`` (the task of a later part runs while an earlier one is read).
    ``placement`` receives, per part key, the node and the worker process that computed it and
    the task's peak RSS (see :func:`placement_summary`)."""
    settings = cfg.pipeline.ray
    ray = connect(settings)
    task = _options(ray, _task_on_ray, settings, f"{stage_name}-part")
    shared = ray.put(state)  # (a trained model once, not once per part)
    refs = [task.remote(_part, stage_name, cfg, root, folder, label_sets, shared, part, chain, old)
            for part, chain, old in todo]
    yield from _in_order(ray, refs, [part.key for part, _c, _o in todo], placement)


def _options(ray, fn, settings: RaySettings, name: str):
    return ray.remote(fn).options(
        num_cpus=1, memory=size_bytes(settings.task_memory), max_retries=settings.max_retries,
        retry_exceptions=False,  # an error in the data fails the same way again: report it at once
        name=name,
    )


def _in_order(ray, refs: list, keys: list, placement: dict | None) -> Iterator:
    """The results of ``refs``, in order; on an error (or when the caller stops reading) the tasks
    whose results were not read are cancelled. Those read are never cancelled: cancelling a task
    that has finished can crash the driver (Ray 2.60's core worker fails a check when the task's
    reply arrives after the cancel)."""
    read = 0
    try:
        for key, ref in zip(keys, refs, strict=True):
            try:
                result, where = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the task's own exception, as it is raised locally
                read += 1  # (it has ended)
                raise e.as_instanceof_cause() from None
            read += 1
            if placement is not None:
                placement[key] = where
            yield result
    except BaseException:
        for ref in refs[read:]:  # a failed task: the others are not left running behind the error
            ray.cancel(ref, force=True)
        raise


def _task_on_ray(fn, *args) -> tuple:
    """``fn(*args)`` on a Ray worker, and where it ran (node id, worker pid) with the task's peak
    RSS (bytes): the worker's resident memory at its highest during the task, what the worker held
    when the task started included; and what it held then. Before the task, the worker hands back
    what earlier tasks left (collected objects, Arrow's and the C allocator's free pages), so a task
    is not charged for them; what it still holds (every stage's modules, models cached by earlier
    tasks) is taken off what the task's DuckDB may use (``storage.within_task_memory``)."""
    import ray

    from dataset_platform.stages.base import CPUS_ENV
    from dataset_platform.storage import TASK_MEMORY_LEFT_ENV

    ctx = ray.get_runtime_context()
    resources = ctx.get_assigned_resources()
    # the task's stage starts no more processes or threads than the CPUs Ray gave the task
    os.environ[CPUS_ENV] = str(max(1, int(resources.get("CPU", 1))))
    _release_memory()
    held = _rss()
    if resources.get("memory"):  # its DuckDB stays within what the task may take beyond what the worker holds
        os.environ[TASK_MEMORY_LEFT_ENV] = str(max(0, int(resources["memory"]) - held))
    since_start = _reset_peak()
    try:
        result = fn(*args)
    finally:
        os.environ.pop(TASK_MEMORY_LEFT_ENV, None)
    return result, (ctx.get_node_id(), os.getpid(), _peak(since_start), held)


def _release_memory() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # (an allocator without the call)
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # (not glibc)
        pass


def _rss() -> int:
    """This process's resident memory now (bytes; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``clear_refs`` 5); False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak(since_reset: bool) -> int:
    """The peak RSS since :func:`_reset_peak` (``VmHWM``), or else since the process started."""
    if since_reset:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # (Linux: KiB)


def tasks(cfg, stage_name: str, placement: dict | None = None) -> Tasks:
    """Where a global stage's tasks run with this executor (:class:`~dataset_platform.stages.base.Tasks`):
    each a Ray task of one CPU and ``pipeline.ray.task_memory``, whose DuckDB may use half of that
    (as a part's, :func:`task_config`); the work is cut into at least as many tasks as the cluster
    has CPUs. ``placement`` receives, per task, where it ran (see :func:`placement_summary`)."""
    settings = cfg.pipeline.ray
    ray = connect(settings)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    numbers = itertools.count()  # (tasks of several calls of ``run`` are told apart in ``placement``)

    def run(fn, items: list) -> Iterator:
        task = _options(ray, _task_on_ray, settings, f"{stage_name}-task")
        refs = [task.remote(fn, item) for item in items]
        name = getattr(fn, "__name__", "task")
        yield from _in_order(ray, refs, [f"{stage_name}-{name}-{next(numbers)}" for _ in items], placement)

    return Tasks(memory_bytes=task_memory_bytes(cfg), threads=1, run=run, min_tasks=cpus, where="ray")


def task_memory_bytes(cfg) -> int:
    """The memory a global stage's task gives its DuckDB: half of ``pipeline.ray.task_memory``."""
    return size_bytes(cfg.pipeline.ray.task_memory) // 2


def placement_summary(placement: dict, settings: RaySettings) -> dict:
    """What :func:`run_parts` recorded, for the log and the materialisation's metadata: tasks,
    nodes, worker processes, and the largest peak RSS of a task (which task, and what its worker
    held when it started) against the task memory."""
    where = list(placement.values())
    top = max(placement, key=lambda k: placement[k][2], default="")
    return {"tasks": len(where), "nodes": len({w[0] for w in where}),
            "workers": len({(w[0], w[1]) for w in where}),
            "peak_task_rss_mb": round(placement[top][2] / 2**20, 1) if where else 0.0,
            "peak_task": str(top), "peak_task_held_mb": round(placement[top][3] / 2**20, 1) if where else 0.0,
            "task_memory_mb": round(size_bytes(settings.task_memory) / 2**20, 1)}
