"""How layers are read and written safely: DuckDB connections, Parquet writes, warehouse views,
writer locks. Paths are :class:`~dataset_platform.workdir.Workdir`'s.

Storage design (see ARCHITECTURE.md): every layer is Parquet written through a private in-memory
DuckDB connection (so steps in parallel processes never contend for a database lock) and replaced
atomically (``atomic.py``); layers stored by batch are folders of parts with a manifest as
their commit point (``storage.batched``). ``warehouse.duckdb`` holds only *views* over those
files under the contract names; a view points at a stable pattern and is published again only when
that changes, by writing a new warehouse file and renaming it over the old one (``ensure_view``):
a reader holding the warehouse open never delays a run or keeps it from publishing. The views'
paths are relative to the work folder (a moved work folder keeps working): open the warehouse with
``warehouse_connection``, which sets DuckDB's ``file_search_path`` to the work folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from dataset_platform import atomic
from dataset_platform.atomic import replacing
from dataset_platform.contracts import schema
from dataset_platform.workdir import BATCHED, DEFAULT_WORKDIR, Workdir  # noqa: F401  (DEFAULT_WORKDIR: callers)


@contextlib.contextmanager
def source_lock(wd: Workdir, source: str, log: Callable[[str], None] = lambda _m: None,
                poll_s: float = 1.0) -> Iterator[int]:
    """Hold the writer lock of one raw partition (crawl, landing and loading of ``source``);
    yields the lock file's descriptor.

    An OS file lock, so a writer that is killed (SIGKILL, OOM) releases it with its process and
    never blocks the next run; a second writer of the same source waits, logging once a minute.
    A child given the descriptor (the crawl process) holds the lock too, until both have ended.
    """
    path = wd.raw_batches(source) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited % 60 == 0:
                    log(f"waiting for another run that is writing source {source!r} (lock {path})")
                time.sleep(poll_s)
                waited += poll_s
        try:
            yield fh.fileno()
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


#: set by the executor for the length of a task on a cluster (bytes): the task's memory less what
#: its worker process held when the task started (see :func:`within_task_memory`)
TASK_MEMORY_LEFT_ENV = "DATASET_PLATFORM_TASK_MEMORY_LEFT"
#: the least DuckDB memory a task is given, however small its bound (below it DuckDB cannot run)
MIN_TASK_MEMORY = 128 * 10**6


def task_memory_limit(memory_bytes: int) -> str:
    """A task's DuckDB ``memory_limit``: ``memory_bytes``, not less than :data:`MIN_TASK_MEMORY`."""
    return f"{max(memory_bytes, MIN_TASK_MEMORY) // 10**6}MB"


@contextlib.contextmanager
def scratch(folder: Path) -> Iterator[Path]:
    """``folder`` emptied for a run of tasks' intermediate files (on a path every worker reaches),
    and removed when the run ends, whether it succeeds or fails."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def within_task_memory(memory_limit: str) -> str:
    """``memory_limit``, or half of what the running task may still take when that is less (not
    under :data:`MIN_TASK_MEMORY`). A task's DuckDB gets half of its task's memory, the other half
    being the stage's own batches; a worker that already holds modules and caches of earlier tasks
    leaves the task less than its memory, and its DuckDB then spills sooner instead of pushing the
    task past its bound. Outside a task (no :data:`TASK_MEMORY_LEFT_ENV`), ``memory_limit``."""
    left = os.environ.get(TASK_MEMORY_LEFT_ENV, "")
    if not left.isdigit():
        return memory_limit
    from dataset_platform.config import size_bytes

    share = int(left) // 2
    return memory_limit if size_bytes(memory_limit) <= max(share, MIN_TASK_MEMORY) else task_memory_limit(share)


def memory_connection(threads: int | None = None, *, memory_limit: str | None = None,
                      temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection for one stage's work. With ``memory_limit`` (e.g.
    "1GB") DuckDB spills sorts, joins and tables beyond it to ``temp_dir``; in a task on a cluster,
    within what the task has left (:func:`within_task_memory`)."""
    con = duckdb.connect(":memory:")
    if threads:
        con.sql(f"SET threads = {int(threads)}")
    if memory_limit:
        con.sql(f"SET memory_limit = {sql_str(within_task_memory(memory_limit))}")
    if temp_dir is not None:
        con.sql(f"SET temp_directory = {sql_str(temp_dir)}")
    con.sql("SET preserve_insertion_order = true")
    return con


_SHARED: list[duckdb.DuckDBPyConnection] = []  # this process's shared in-memory database, once opened
_SHARED_LOCK = threading.Lock()
#: shared databases a forked child inherited: kept referenced, never used or closed there
_INHERITED: list[duckdb.DuckDBPyConnection] = []


def _forget_shared_in_child() -> None:
    _INHERITED.extend(_SHARED)
    _SHARED.clear()


os.register_at_fork(after_in_child=_forget_shared_in_child)


def query_connection() -> duckdb.DuckDBPyConnection:
    """A connection for short queries over files (checks, metadata, profiles): a cursor on one
    in-memory DuckDB database shared by this process, with DuckDB's default settings. Opening a
    new in-memory database costs ~13 ms (its catalog of built-in functions is set up each time:
    20-35 ms beside a run's other work on 2 cores); a cursor ~10 µs. A +1 % refresh at 100k
    opened ~34 databases for its checks, suites and metadata. Close it when done, as any connection.

    What a cursor creates is its own only when it is temporary (``CREATE TEMP``, ``register``):
    settings (``SET``), ``ATTACH`` and persistent tables or views would be seen by every other
    user of the process's database. Work that needs them, or its own memory or thread bounds,
    takes :func:`memory_connection`."""
    with _SHARED_LOCK:
        if not _SHARED:
            db = duckdb.connect(":memory:")
            db.sql("SET preserve_insertion_order = true")
            _SHARED.append(db)
        return _SHARED[0].cursor()


def sql_str(value: str | Path) -> str:
    """Quote a value as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def write_parquet(
    con: duckdb.DuckDBPyConnection, query: str, dest: Path, *, layer: str | None = None,
    label_sets: list[str] | tuple[str, ...] = (), unless_same: bool = False,
) -> int:
    """Write a query's rows to ``dest`` atomically; returns the row count.

    With ``layer`` the columns are cast to that layer's contract (with the label columns of
    ``label_sets`` where the layer has them), in its order. The caller's query must be
    deterministic in its order (end it with ORDER BY) for byte-identical files. ``unless_same``:
    leave ``dest`` untouched when it already holds these rows in this order (for small files a
    refresh would otherwise rewrite every time: its readers see no change, its mtime stays).
    """
    body = f"SELECT {schema.select_list(layer, label_sets)} FROM ({query})" if layer else query
    if unless_same and dest.exists() and _digest(con, f"({body})") == _digest(con, f"read_parquet({sql_str(dest)})"):
        return parquet_rows(dest)  # the same rows in the same order: the file stays as it is
    with replacing(dest) as tmp:
        con.sql(f"COPY ({body}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")
    return parquet_rows(dest)


def _digest(con: duckdb.DuckDBPyConnection, rel: str) -> tuple:
    """Row count and an order-sensitive fingerprint of a relation's rows (within one DuckDB build)."""
    return tuple(con.sql(f"SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0) "
                         f"FROM (SELECT *, row_number() OVER () AS _n FROM {rel}) r").fetchall()[0])


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer (nothing else is read)."""
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def count_rows(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    return parquet_rows(path)


def empty_layer_query(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> str:
    """A query with the layer's columns and no rows."""
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in schema.layer_columns(layer, label_sets))
    return f"SELECT {cols} WHERE false"


def files_sql(files: list[Path]) -> str:
    """read_parquet() over a list of files (at least one)."""
    return "read_parquet([" + ", ".join(sql_str(f) for f in files) + "])"


def read_layer(wd: Workdir, layer: str, file: str = "data.parquet") -> str:
    """SQL for reading a layer's Parquet file(s); a clear error if it was never materialised."""
    files = wd.layer_files(layer, file)
    if not files:
        if layer in BATCHED and (wd.layer_dir(layer) / "manifest.json").exists() and file == "data.parquet":
            return f"({empty_layer_query(layer)})"  # materialised, and empty
        raise FileNotFoundError(
            f"layer {layer!r} has not been materialised yet (no {wd.layer_glob(layer, file)}): materialise it "
            "first, e.g. `dataset-platform demo` or from the Dagster UI"
        )
    return files_sql(files)


def count_layer(con: duckdb.DuckDBPyConnection, wd: Workdir, layer: str) -> int:
    """Rows of a layer (0 if it has no file yet), from the files' footers."""
    return sum(parquet_rows(f) for f in wd.layer_files(layer))


def layer_view_sql(wd: Workdir, layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> str:
    """What a layer's warehouse view selects from: a glob over its files (a stable pattern), or
    an empty relation with its columns while it has none."""
    if wd.layer_files(layer):
        return f"read_parquet({sql_str(wd.layer_glob(layer))})"
    return f"({empty_layer_query(layer, label_sets)})"


def relative_to_workdir(wd: Workdir, sql: str) -> str:
    """``sql`` with each string literal that names a path inside the work folder made relative to
    it (``'<root>/layers/...'`` becomes ``'layers/...'``), so a view still reads its files when the
    work folder is moved or mounted elsewhere; a reader resolves them with DuckDB's
    ``file_search_path`` set to the work folder (:func:`warehouse_connection`), or by running from
    inside it. A work folder whose path holds a comma keeps absolute paths (``file_search_path`` is
    a comma-separated list, so it cannot name that folder)."""
    root = str(wd.root)
    if "," in root:
        return sql
    return sql.replace(sql_str(root)[:-1] + "/", "'")


def search_path_sql(wd: Workdir) -> str:
    """The statement that makes the warehouse's relative paths resolve against the work folder,
    whatever the current folder (a no-op where :func:`relative_to_workdir` keeps paths absolute)."""
    root = str(wd.root)
    return "SELECT 1" if "," in root else f"SET file_search_path = {sql_str(root)}"


def warehouse_connection(wd: Workdir, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse whose views read their files relative to the work folder.
    Users opening ``warehouse.duckdb`` themselves do the same with
    ``SET file_search_path = '<workdir>'`` (or open it from inside the work folder)."""
    con = duckdb.connect(str(wd.warehouse), read_only=read_only)
    try:
        con.sql(search_path_sql(wd))
    except BaseException:
        con.close()
        raise
    return con


def ensure_view(wd: Workdir, name: str, target_sql: str, *, wait_s: float = 60.0) -> None:
    """Publish ``name`` as a view in the warehouse file (``CREATE VIEW name AS SELECT * FROM
    target_sql``).

    The warehouse holds the platform's views only, listed in ``warehouse.views.json`` beside it.
    A new or changed view is published by writing a new warehouse file with every view and
    renaming it over the old one, under a lock of the work folder: a reader holding the old file
    open (an analyst's notebook, a DuckDB shell) neither delays the run nor makes its views stale;
    it keeps the views it opened, and its next connection sees the new ones. An unchanged view
    costs a read of the list, no DuckDB connection. A warehouse changed by someone else since the
    last publish (a view dropped by hand) is written again from the list. ``wait_s``: how long to
    wait for another run publishing at the same moment.

    Paths inside the work folder are written relative to it (:func:`relative_to_workdir`): the
    warehouse file holds no absolute path of the work folder, and views of a list written before
    that are rewritten relative when the file is next written."""
    stmt = relative_to_workdir(wd, f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {target_sql}")
    wd.ensure()
    registry = wd.warehouse.with_name(wd.warehouse.name.replace(".duckdb", ".views.json"))
    state = _read_json(registry)
    if state.get("views", {}).get(name) == stmt and state.get("file") == _file_id(wd.warehouse):
        return  # as published, and the file as this platform left it
    with _lock(registry.with_name(f".{registry.name}.lock"), wait_s):
        state = _read_json(registry)
        views = {v: relative_to_workdir(wd, sql) for v, sql in (state.get("views") or _existing_views(wd.warehouse)).items()}
        if views.get(name) == stmt and state.get("file") == _file_id(wd.warehouse):
            return  # (another run published it meanwhile)
        views[name] = stmt
        fresh = wd.warehouse.with_name(f".{wd.warehouse.name}.{os.getpid()}.new")
        fresh.unlink(missing_ok=True)
        con = duckdb.connect(str(fresh))
        try:
            con.sql(search_path_sql(wd))  # (the views bind their relative paths here)
            for view, sql in sorted(views.items()):
                try:
                    con.sql(sql)
                except duckdb.Error:
                    if view == name:
                        raise
                    del views[view]  # (a view of an older version whose files are gone)
        finally:
            con.close()
        Path(f"{wd.warehouse}.wal").unlink(missing_ok=True)  # (never the old file's log on the new one)
        os.replace(fresh, wd.warehouse)
        atomic.write_text(registry, json.dumps({"views": views, "file": _file_id(wd.warehouse)}, indent=1,
                                               sort_keys=True) + "\n")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _file_id(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _existing_views(path: Path) -> dict[str, str]:
    """The views of a warehouse written before the list existed (none when it cannot be read)."""
    if not path.exists():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return {}
    try:
        return {n: f"CREATE OR REPLACE VIEW {n} AS {sql.split(' AS ', 1)[1].rstrip(';')}" for n, sql in con.sql(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall() if " AS " in sql}
    finally:
        con.close()


@contextlib.contextmanager
def _lock(path: Path, wait_s: float) -> Iterator[None]:
    with open(path, "a+") as fh:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run has been publishing warehouse views for {wait_s:g} s "
                                       f"(lock {path}); run again once it has finished") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
