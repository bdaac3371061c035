"""The Dagster instance storage a work folder gets: Dagster's SQLite storage, same files and layout
(``history/runs.db``, ``history/runs/<run id>.db`` and ``index.db``, ``schedules/``), whose
connections are kept open and reused instead of opened, set up and closed for every statement.

Dagster 1.13's SQLite storages create a new engine and a new SQLite connection for each
transaction (``NullPool``), and the event log writes each event in up to four of them (the run's
shard, the cross-run index, an asset or check row): ~10 ms per asset check result on this project's
machines, and a run writes 100-200 events before any check reads a row. Reusing one engine per
database file, with ``synchronous=NORMAL`` (SQLite's advice for WAL databases: a commit is not
fsynced, so the last commits can be lost on power loss, never the database), it is ~2-3 ms
(``bench/dagster_checks.py``, BENCHMARKS.md). Only how connections are opened changes; the schema,
queries and files are Dagster's.

``dataset-platform`` writes it into the ``dagster.yaml`` of each work folder's ``DAGSTER_HOME``
(``storage: custom``); delete that block, or point ``storage`` at Postgres, to use another.
Overrides ``SqliteEventLogStorage._connect``: a Dagster upgrade that changes it is caught by
``tests/test_instance_storage.py``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

#: run shards whose engines stay open in one process (the webserver reads many runs; a run
#: process writes one): the least recently used is closed beyond this
MAX_OPEN_SHARDS = 8

#: every pooled storage of this process, so that a forked child drops what it inherited
_LIVE: weakref.WeakSet = weakref.WeakSet()
#: engines a forked child inherited: kept referenced, never used or closed there (closing an
#: inherited SQLite connection can release the parent's locks)
_INHERITED: list = []


def _after_fork_in_child() -> None:
    for storage in list(_LIVE):
        _INHERITED.append(storage._take_engines())


os.register_at_fork(after_in_child=_after_fork_in_child)


def _sqlite_engine(conn_string: str) -> Engine:
    engine = create_engine(conn_string, poolclass=QueuePool, pool_size=2, max_overflow=8,
                           connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log (one database per run and a cross-run index), with an engine per
    database kept open: the index's always, the :data:`MAX_OPEN_SHARDS` runs' last used."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)
        self._db_lock = threading.RLock()  # (has_table may be asked while a connection is open)
        _LIVE.add(self)

    def _take_engines(self) -> dict:
        with self._db_lock:
            taken, self._engines = dict(self._engines), OrderedDict()
        return taken

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = self._engines[shard] = _sqlite_engine(self.conn_string_for_shard(shard))
            run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
            while len(run_shards) > MAX_OPEN_SHARDS:
                self._engines.pop(run_shards.pop(0)).dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:  # (as Dagster's: one statement at a time per storage)
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        with self._connect(INDEX_SHARD_NAME) as conn:  # (Dagster's opens an engine each time)
            return bool(conn.dialect.has_table(conn, table_name))

    def dispose(self) -> None:
        super().dispose()
        for engine in self._take_engines().values():
            engine.dispose()


class PooledSqliteRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage (``runs.db``) with its engine kept open."""

    def __init__(self, conn_string: str, inst_data=None):
        self._pooled: Engine | None = None
        self._pool_lock = threading.Lock()
        super().__init__(conn_string, inst_data=inst_data)
        _LIVE.add(self)

    def _take_engines(self) -> dict:
        with self._pool_lock:
            taken, self._pooled = self._pooled, None
        return {"runs": taken} if taken is not None else {}

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._pool_lock:
            if self._pooled is None:
                self._pooled = _sqlite_engine(self._conn_string)
            engine = self._pooled
        with engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()
        for engine in self._take_engines().values():
            engine.dispose()


class WorkFolderSqliteStorage(DagsterSqliteStorage):
    """``storage: custom`` of a work folder's ``dagster.yaml``: Dagster's SQLite storage under
    ``base_dir`` (its ``DAGSTER_HOME``), the run and event log storages pooled."""

    def __init__(self, base_dir: str, inst_data=None):
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return cls.from_local(inst_data=inst_data, **config_value)



@contextmanager
def instance_at(home) -> Iterator:
    """The Dagster instance of the ``DAGSTER_HOME`` folder ``home``, closed on exit: as
    ``DagsterInstance.from_config(home)``, with ``DAGSTER_HOME`` set meanwhile (the storage block
    a work folder's ``dagster.yaml`` gets reads its folder from it)."""
    import dagster as dg

    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved
