"""The GX worker kept warm across runs: one service per code location, or per user and code for
the CLI's runs.

A run launched from the UI or by a sensor is a new process that the code server spawns. With a
worker of its own (``gx_worker``), its first suite check waits for GX's import (2-3 s), which a
+1 % refresh pays in full: at 100k documents, 1.7 s of an 8.7 s run. The code server, unlike its
runs, lives as long as the code location: when it imports our definitions (``definitions.py``) it
starts this service (``serve``), which imports GX once and then serves every run of that code
location. The runs find it through two environment variables that the code server sets before it
spawns them (its children inherit them): the address of a Unix socket in a private temporary
folder, and a random key that both ends prove with ``multiprocessing.connection``'s handshake.

A run sends the same calls it would submit to its own worker (a picklable module-level function
and its arguments) and gets their value or their exception back. The service is a small process
that imports neither GX nor our code: it hands each call, still pickled, to one of its
``WORKERS`` GX processes (each imports GX once, when the service starts) and sends the pickled
answer back. A run keeps up to ``WORKERS`` calls in flight, one per connection: two suites a step
wrote validate side by side, and a Data Docs page on one process never delays a verdict on the
other (the run's main process is idle while its checks wait). When the service cannot be reached,
the run starts its own worker; when it goes away during a call, that call fails as a broken
worker would (``gx_worker.suite_check``). The code server's service ends when the code server
does (its parent's pid is watched: the kernel's parent-death signal would fire when the *thread*
that started it ends, and the code server may import user code on a short-lived thread), or when
the code server is reloaded, which is a new process; its GX processes watch theirs the same way.
Ending, it deletes its private folder, also when it is stopped with its process group (Ctrl-C in
``dagster dev``, a service manager's SIGTERM or SIGHUP); the folder of one killed outright (SIGKILL)
is swept when the next code server's service starts.

``dataset-platform run`` has no code server: each run is a new process, and its first suite check
waited for GX's import (at 100k documents, 0.3-1.6 s of a 13 s +1 % refresh; GX's import is 4 s).
So the CLI keeps the same service warm between its runs (``daemon``): the first run starts it as a
process of its own session that outlives the run, and the next runs of the same code find it. It
ends after ``DATASET_PLATFORM_GX_IDLE`` seconds (default 900) without a run, or at once when another
service took its address; ``DATASET_PLATFORM_GX_IDLE=0`` turns it off (each run then starts and ends
a worker of its own, as before). It is found in a folder of the user's own (``dpgx-<uid>`` in the
temporary folder, mode 0700), under a fingerprint of the code that serves: the interpreter (its
real path and prefix), GX's version, where this package is and every module of it (path, size,
modification time) and the ``DATASET_PLATFORM_*`` settings, so a run never sends its calls to a
service that runs other code. An idle service removes its address, key and log as it ends; the
files a killed one left are swept when a run starts a service for other code.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from multiprocessing.connection import Client, Listener
from pathlib import Path

ADDRESS_ENV = "DATASET_PLATFORM_GX_SERVICE"
KEY_ENV = "DATASET_PLATFORM_GX_SERVICE_KEY"
#: seconds a service that the CLI started waits for the next run before it ends; 0: no such service
IDLE_ENV = "DATASET_PLATFORM_GX_IDLE"
DEFAULT_IDLE = 900.0
#: the service's GX processes, and the calls a run keeps in flight on it
WORKERS = 2
#: seconds without a run before the service starts its GX processes after the first
WARM_AFTER_IDLE = 10.0
#: settings that are not part of the code's fingerprint (the calls carry the config and workdir)
_NOT_CODE = {ADDRESS_ENV, KEY_ENV, IDLE_ENV, "DATASET_PLATFORM_CONFIG", "DATASET_PLATFORM_WORKDIR"}
#: a code server's service folder (``dataset-platform-gx-*``) starts with this; one older than
#: ``STALE_AFTER`` seconds where no service answers is a killed service's, and is swept
PRIVATE_PREFIX = "dataset-platform-gx-"
STALE_AFTER = 60.0

_STARTED: dict[str, object] = {}


def is_code_server() -> bool:
    """True in a process that ``dagster api grpc`` started (``dagster dev`` and ``dataset-platform
    ui`` start one per code location): the process that spawns the runs of that location."""
    return sys.argv[1:3] == ["api", "grpc"]


def serve(wait: float = 30.0) -> str:
    """Start the code server's service (once per process) and publish its address to the
    processes this one will spawn; returns the address. Waits until it listens (a fraction of a
    second), not for GX's import."""
    if "address" in _STARTED:
        return str(_STARTED["address"])
    folder = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))  # (mode 0700)
    address, key_file = str(folder / "gx.sock"), folder / "gx.key"
    key, proc = _start(address, key_file, f"parent:{os.getpid()}", wait)
    if key is None:
        raise RuntimeError(f"the GX service did not start within {wait:g} s: see {key_file.with_suffix('.log')}")
    sweep_private(keep=folder)
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
        return RemotePool(address, bytes.fromhex(key))
    except (OSError, EOFError, ValueError):  # gone (the code server was reloaded), or a stale variable
        return None


class RemotePool:
    """The part of ``ProcessPoolExecutor`` that ``gx_worker`` uses: up to ``WORKERS`` calls in
    flight, each on a connection of its own (opened on first use by each calling thread)."""

    def __init__(self, address: str, key: bytes) -> None:
        self._address, self._key = address, key
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns = [self._open()]  # (one now: the service is there, or this raises)
        self._spare = self._conns[0]  # (handed to the first calling thread)
        self._calls = ThreadPoolExecutor(WORKERS, thread_name_prefix="gx-service")

    def _open(self):
        return Client(self._address, family="AF_UNIX", authkey=self._key)

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                conn, self._spare = self._spare, None
                if conn is None:
                    conn = self._open()
                    self._conns.append(conn)
            self._local.conn = conn
        return conn

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._calls.submit(self._call, fn, args, kwargs)

    def _call(self, fn, args, kwargs):
        try:
            conn = self._conn()
            conn.send_bytes(pickle.dumps((fn, args, kwargs)))
            ok, value = pickle.loads(conn.recv_bytes())
        except (OSError, EOFError) as e:
            raise BrokenProcessPool(f"the GX service ended during a call: {type(e).__name__}: {e}") from e
        if ok:
            return value
        raise value

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._calls.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            for conn in self._conns:
                conn.close()


# ---------------------------------------------------------------------------------------------
# the service process (``python -m dataset_platform.checks.gx_service``)


class _Activity:
    """The connections open on a service and when the last one closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.since = time.monotonic()

    def begin(self) -> None:
        with self.lock:
            self.open += 1

    def end(self) -> None:
        with self.lock:
            self.open -= 1
            self.since = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            return 0.0 if self.open else time.monotonic() - self.since


def _watch(parent: int, remove: Path | None = None) -> None:
    """End this process once its parent has (polled: see the module docstring); ``remove``: a
    folder of this process's own, deleted first (the code server's service: its address, key and log)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _end_on_stop(remove: Path) -> None:
    """Delete ``remove`` and end when stopped by a signal to the process group (see ``serve``)."""
    def end(signum, frame) -> None:
        shutil.rmtree(remove, ignore_errors=True)
        os._exit(0)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, end)


def sweep_private(keep: Path | None = None, stale_after: float = STALE_AFTER) -> list[Path]:
    """Delete the folders of this user's code-server services that are gone (killed outright, or
    the machine stopped): older than ``stale_after`` seconds (a service being started is younger)
    and no service answering in them. Returns the folders deleted."""
    swept, now = [], time.time()
    for folder in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*"):
        try:
            st = os.lstat(folder)
        except OSError:
            continue
        if (folder == keep or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
                or now - st.st_mtime < stale_after):
            continue
        if _reachable(str(folder / "gx.sock"), folder / "gx.key") is not None:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        swept.append(folder)
    return swept


def _worker_init(parent: int) -> None:
    """A GX process of the service: ends with the service; imports GX now."""
    _watch(parent)
    from dataset_platform.checks import gx_worker

    gx_worker._warm()


def _run_call(blob: bytes) -> bytes:
    """On a GX process: a pickled call, its pickled answer ((True, value) or (False, exception))."""
    try:
        fn, args, kwargs = pickle.loads(blob)
    except Exception as e:  # a call whose function this code cannot load
        return pickle.dumps((False, RuntimeError(f"the GX service cannot read the call: {type(e).__name__}: {e}")))
    try:
        answer = (True, fn(*args, **kwargs))
    except BaseException as e:  # the caller's exception, as a worker process returns it
        answer = (False, e)
    try:
        return pickle.dumps(answer)
    except Exception as e:  # a value or exception that does not pickle: say what it was
        ok, value = answer
        what = "value" if ok else f"exception {type(value).__name__}: {value}"
        return pickle.dumps((False, RuntimeError(f"the GX service could not send back the call's {what}: {e}"[:2000])))


class _Workers:
    """The service's GX processes (started now, each importing GX); a new set when they broke."""

    def __init__(self, activity: _Activity) -> None:
        self.lock = threading.Lock()
        self.activity = activity
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        """The GX processes, one after the other: the first now (a run that started the service
        waits for its import), the others once it is warm and no run has been connected for
        ``WARM_AFTER_IDLE`` seconds (GX's import would take a core from a run's stages: the CLI's
        service warms them after its first run, unless the next run follows at once)."""
        pool = ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn"), initializer=_worker_init,
                                   initargs=(os.getpid(),))

        def start() -> None:  # (a task while every process is busy starts the next process)
            try:
                for n in range(1, WORKERS + 1):
                    while n > 1 and self.activity.idle_for() < WARM_AFTER_IDLE:
                        time.sleep(0.2)
                    for f in [pool.submit(time.sleep, 0.2) for _ in range(n)]:
                        f.result()
            except Exception:  # (broken or shut: ``run`` starts a new set)
                pass

        threading.Thread(target=start, daemon=True).start()
        return pool

    def run(self, blob: bytes) -> bytes:
        with self.lock:
            pool = self.pool
        try:
            return pool.submit(_run_call, blob).result()
        except BrokenProcessPool as e:
            with self.lock:
                if self.pool is pool:
                    self.pool = self._new()
            return pickle.dumps((False, BrokenProcessPool(f"a GX process of the service ended during a call: {e}")))


def _service_main(address: str, key_file: str, mode: str) -> None:
    key = Path(key_file).read_bytes()
    listener = Listener(address, family="AF_UNIX", authkey=key)
    activity = _Activity()
    workers = _Workers(activity)
    if mode.startswith("parent:"):  # the code server's: ends with it, and its folder (``serve``) with it
        _watch(int(mode.split(":", 1)[1]), remove=Path(address).parent)
        _end_on_stop(Path(address).parent)
    else:  # the CLI's: ends when idle, or when another service took its address
        threading.Thread(target=_watch_idle, args=(address, key_file, float(mode), activity), daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except Exception:  # a client that failed the handshake: serve the next one
            continue
        activity.begin()
        threading.Thread(target=_answer, args=(conn, workers, activity), daemon=True).start()


def _watch_idle(address: str, key_file: str, idle: float, activity: _Activity) -> None:
    mine = os.stat(address).st_ino
    while True:
        time.sleep(min(1.0, idle / 4))
        try:
            taken = os.stat(address).st_ino != mine
        except FileNotFoundError:
            taken = True
        if taken:  # another service has this address now
            os._exit(0)
        if activity.idle_for() >= idle:
            for path in (address, key_file, str(Path(key_file).with_suffix(".log"))):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            os._exit(0)


def _answer(conn, workers: _Workers, activity: _Activity) -> None:
    try:
        with conn:
            while True:
                try:
                    blob = conn.recv_bytes()
                except (OSError, EOFError):
                    return  # the run ended
                try:
                    conn.send_bytes(workers.run(blob))
                except (OSError, EOFError):
                    return
    finally:
        activity.end()


# ---------------------------------------------------------------------------------------------
# the service the CLI's runs share (``daemon``)


def idle_seconds() -> float:
    """How long a service that the CLI started waits for the next run (``IDLE_ENV``)."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_IDLE
    except ValueError:
        raise ValueError(f"{IDLE_ENV}={raw!r}: give the seconds a warm GX service waits for the next run "
                         "(0 turns it off)") from None


def fingerprint() -> str:
    """What the service's answers depend on besides a call's arguments (see the module docstring)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        gx_version = version("great_expectations")
    except PackageNotFoundError:  # pragma: no cover
        gx_version = "?"
    package = Path(__file__).resolve().parents[1]
    # (the interpreter by its real path: `python3` and `python3.11` are one; a venv by its prefix)
    h = hashlib.sha256(f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{sys.version}\0{gx_version}\0"
                       f"{package}".encode())
    for path in sorted(package.rglob("*.py")):
        st = path.stat()
        h.update(f"\0{path.relative_to(package)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    for name in sorted(os.environ):
        if name.startswith("DATASET_PLATFORM_") and name not in _NOT_CODE:
            h.update(f"\0{name}={os.environ[name]}".encode())
    return h.hexdigest()[:16]


def _own_folder() -> Path | None:
    """``dpgx-<uid>`` in the temporary folder: made 0700, and used only when it is this user's own."""
    folder = Path(tempfile.gettempdir()) / f"dpgx-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


def daemon(wait: float = 10.0) -> str | None:
    """Point this process's GX calls (``gx_worker``) at the warm service for this code, starting it
    when there is none; returns its address, or None when there is no such service to use (turned
    off with ``IDLE_ENV=0``, no private folder, or it did not start within ``wait`` seconds: the
    run then starts a worker of its own)."""
    if os.environ.get(ADDRESS_ENV):  # (a run that Dagster's code server launched: its service)
        return os.environ[ADDRESS_ENV]
    idle = idle_seconds()
    folder = _own_folder() if idle > 0 else None
    if folder is None:
        return None
    fp = fingerprint()
    address, key_file = str(folder / f"{fp}.sock"), folder / f"{fp}.key"
    if len(address.encode()) > 100:  # (the limit of a Unix socket's address, 108 bytes)
        return None
    with open(folder / f"{fp}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # (two runs at once start one service)
        key = _reachable(address, key_file)
        if key is None:
            key, _ = _start(address, key_file, str(idle), wait)
            _sweep(folder, keep=fp)
    if key is None:
        return None
    os.environ[ADDRESS_ENV] = address
    os.environ[KEY_ENV] = key.hex()
    return address


def _sweep(folder: Path, keep: str) -> None:
    """Remove the files of services that are gone (killed, or their machine restarted: an idle one
    removes its own) for code other than ``keep``: a service's address, key, log and lock, when no
    process holds its lock (none is starting it) and nothing answers at its address."""
    for lock_path in folder.glob("*.lock"):
        fp = lock_path.stem
        if fp == keep:
            continue
        try:
            with open(lock_path, "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # (a run is starting that service now)
                if _reachable(str(folder / f"{fp}.sock"), folder / f"{fp}.key") is not None:
                    continue
                for suffix in (".sock", ".key", ".log", ".lock"):
                    try:
                        os.unlink(folder / f"{fp}{suffix}")
                    except FileNotFoundError:
                        pass
        except OSError:  # (another run swept it first)
            continue


def _reachable(address: str, key_file: Path) -> bytes | None:
    """The key of the service listening at ``address``, if one is."""
    try:
        key = key_file.read_bytes()
        Client(address, family="AF_UNIX", authkey=key).close()
    except Exception:  # none there, gone, or another key (AuthenticationError)
        return None
    return key


def _start(address: str, key_file: Path, mode: str, wait: float) -> tuple[bytes | None, subprocess.Popen]:
    """Start a service at ``address`` (``mode``: ``parent:<pid>``, or the seconds it waits idle)
    with a new key in ``key_file`` (0600); its key once it answers within ``wait`` seconds."""
    key = os.urandom(32)
    for stale in (address, str(key_file)):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    env = {k: v for k, v in os.environ.items() if k not in _NOT_CODE}
    with open(key_file.with_suffix(".log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dataset_platform.checks.gx_service", address, str(key_file),
                                 mode], stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=env,
                                start_new_session=not mode.startswith("parent:"), close_fds=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None:
        if _reachable(address, key_file) is not None:
            return key, proc
        time.sleep(0.02)
    return None, proc


if __name__ == "__main__":  # (by its module's name: what the GX processes are given pickles by it)
    from dataset_platform.checks import gx_service

    gx_service._service_main(sys.argv[1], sys.argv[2], sys.argv[3])
