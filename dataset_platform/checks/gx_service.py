"""The GX worker kept warm across runs, for runs that Dagster's code server launches.

A run launched from the UI or by a sensor is a new process that the code server spawns. With a
worker of its own (``gx_worker``), its first suite check waits for GX's import (2-3 s), which a
+1 % refresh pays in full: at 100k documents, 1.7 s of an 8.7 s run. The code server, unlike its
runs, lives as long as the code location: when it imports our definitions (``definitions.py``) it
starts this service, one process that imports GX once and then serves every run of that code
location. The runs find it through two environment variables that the code server sets before it
spawns them (its children inherit them): the address of a Unix socket in a private temporary
folder, and a random key that both ends prove with ``multiprocessing.connection``'s handshake.

A run sends the same calls it would submit to its own worker (a picklable module-level function
and its arguments) and gets their value or their exception back. One call runs at a time, as on a
worker process of its own. When the service cannot be reached, the run starts its own worker; when
it goes away during a call, that call fails as a broken worker would (``gx_worker.suite_check``).
The service ends when the code server does (its parent's pid is watched: the kernel's parent-death
signal would fire when the *thread* that started it ends, and the code server may import user code
on a short-lived thread), or when the code server is reloaded, which is a new process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from multiprocessing.connection import Client, Listener

ADDRESS_ENV = "DATASET_PLATFORM_GX_SERVICE"
KEY_ENV = "DATASET_PLATFORM_GX_SERVICE_KEY"

_STARTED: dict[str, object] = {}


def is_code_server() -> bool:
    """True in a process that ``dagster api grpc`` started (``dagster dev`` and ``dataset-platform
    ui`` start one per code location): the process that spawns the runs of that location."""
    return sys.argv[1:3] == ["api", "grpc"]


def serve() -> str:
    """Start the service (once per process) and publish its address to the processes this one
    will spawn; returns the address. Does not wait for GX's import."""
    if "address" in _STARTED:
        return str(_STARTED["address"])
    folder = tempfile.mkdtemp(prefix="dataset-platform-gx-")  # (mode 0700)
    address = os.path.join(folder, "gx.sock")
    key = os.urandom(32)
    ctx = get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve, args=(address, key, os.getpid(), ready), name="dataset-platform-gx",
                       daemon=True)
    proc.start()
    ready.wait(30)  # the socket is bound (milliseconds): a run spawned next can connect
    os.environ[ADDRESS_ENV] = address
    os.environ[KEY_ENV] = key.hex()
    _STARTED.update(address=address, process=proc)
    return address


def connect() -> RemotePool | None:
    """A pool whose calls run on the service, or None when this process has none to reach."""
    address, key = os.environ.get(ADDRESS_ENV), os.environ.get(KEY_ENV)
    if not address or not key:
        return None
    try:
        return RemotePool(Client(address, family="AF_UNIX", authkey=bytes.fromhex(key)))
    except (OSError, EOFError, ValueError):  # gone (the code server was reloaded), or a stale variable
        return None


class RemotePool:
    """The part of ``ProcessPoolExecutor`` that ``gx_worker`` uses, over one connection."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="gx-service")

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._calls.submit(self._call, fn, args, kwargs)

    def _call(self, fn, args, kwargs):
        try:
            self._conn.send((fn, args, kwargs))
            ok, value = self._conn.recv()
        except (OSError, EOFError) as e:
            raise BrokenProcessPool(f"the GX service ended during a call: {type(e).__name__}: {e}") from e
        if ok:
            return value
        raise value

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._calls.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._conn.close()


def _serve(address: str, key: bytes, parent: int, ready) -> None:
    from dataset_platform.checks import gx_worker

    listener = Listener(address, family="AF_UNIX", authkey=key)
    ready.set()
    one_at_a_time = threading.Lock()

    def warm() -> None:
        with one_at_a_time:
            gx_worker._warm()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    threading.Thread(target=warm, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except Exception:  # a client that failed the handshake: serve the next one
            continue
        threading.Thread(target=_answer, args=(conn, one_at_a_time), daemon=True).start()


def _answer(conn, one_at_a_time: threading.Lock) -> None:
    with conn:
        while True:
            try:
                fn, args, kwargs = conn.recv()
            except (OSError, EOFError):
                return  # the run ended
            except Exception as e:  # a call whose function this code cannot load
                _send(conn, (False, RuntimeError(f"the GX service cannot read the call: {type(e).__name__}: {e}")))
                continue
            try:
                with one_at_a_time:
                    answer = (True, fn(*args, **kwargs))
            except BaseException as e:  # the caller's exception, as a worker process returns it
                answer = (False, e)
            if not _send(conn, answer):
                return


def _send(conn, answer: tuple) -> bool:
    try:
        conn.send(answer)
    except (OSError, EOFError):
        return False
    except Exception as e:  # a value or exception that does not pickle: say what it was
        ok, value = answer
        what = "value" if ok else f"exception {type(value).__name__}: {value}"
        try:
            conn.send((False, RuntimeError(f"the GX service could not send back the call's {what}: {e}"[:2000])))
        except (OSError, EOFError):
            return False
    return True
