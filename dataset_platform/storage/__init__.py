"""Where everything lives in a workdir, and how layers are written safely.

Storage design (see ARCHITECTURE.md): every layer is one Parquet file written by its own asset
(through a private in-memory DuckDB connection, so steps in parallel processes never contend for
a database lock), and replaced atomically (write to a temporary name, fsync, ``os.replace``).
``warehouse.duckdb`` holds only *views* over those files under the contract names; a view is
created once per layer and then points at a stable path, so the warehouse file is opened for
writing only briefly and rarely.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.contracts import schema

DEFAULT_WORKDIR = ".dataset_platform"
#: layers stored as folders of files: layer -> file pattern inside each folder. raw_pages and
#: crawl_log have one folder per source; deduplicated_documents one per part written by a run
#: (storage/parted.py), so that a refresh adds a part instead of rewriting the layer
PARTITIONED_LAYERS = {"raw_pages": "data.parquet", "crawl_log": "*.parquet", "deduplicated_documents": "data.parquet"}


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def at(cls, path: str | Path | None = None) -> "Workdir":
        p = Path(path or os.environ.get("DATASET_PLATFORM_WORKDIR") or DEFAULT_WORKDIR).expanduser().resolve()
        return cls(p)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def data_docs(self) -> Path:
        """GX Data Docs of every suite check: ``site/index.html`` and the validation results."""
        return self.root / "data_docs"

    @property
    def alerts(self) -> Path:
        """One JSON line per failed run (written by the run-failure sensor)."""
        return self.root / "alerts" / "run_failures.jsonl"

    def layer(self, name: str) -> Path:
        """The Parquet file holding a layer (for a partitioned layer: use ``layer_files``)."""
        return self.layers / name / "data.parquet"

    # The raw layer is partitioned by source: one folder per source, refreshed independently.
    def raw_partition(self, source: str) -> Path:
        """raw_pages of one source: its current state."""
        return self.layers / "raw_pages" / source / "data.parquet"

    def crawl_log_file(self, source: str, crawl_id: str) -> Path:
        """crawl_log rows of one batch (written once; a reload of the batch rewrites the same file)."""
        return self.layers / "crawl_log" / source / f"{crawl_id}.parquet"

    def layer_glob(self, name: str) -> str:
        """A read_parquet() pattern covering every file of a layer."""
        if name in PARTITIONED_LAYERS:
            return str(self.layers / name / "*" / PARTITIONED_LAYERS[name])
        return str(self.layer(name))

    def layer_files(self, name: str) -> list[Path]:
        """The files of a layer that exist, sorted."""
        if name in PARTITIONED_LAYERS:
            return sorted((self.layers / name).glob(f"*/{PARTITIONED_LAYERS[name]}"))
        return [self.layer(name)] if self.layer(name).exists() else []

    def inbox(self, source: str) -> Path:
        """Drop WARC/JSONL/Parquet files here to ingest them into ``source``."""
        return self.root / "inbox" / source

    @property
    def annotations_inbox(self) -> Path:
        """Drop Label Studio JSON exports here; the labelled layer is refreshed with them."""
        return self.root / "inbox" / "annotations"

    @property
    def annotation_export(self) -> Path:
        """Label Studio tasks (and labeling config) of the documents that most need review."""
        return self.root / "annotation" / "export"

    def crawl_state(self, source: str) -> Path:
        """Scrapy job state of an unfinished crawl of ``source`` (resumed by the next crawl)."""
        return self.root / "raw" / source / "state"

    def rejects(self, stage: str) -> Path:
        """The Parquet file of the documents one stage rejected."""
        return self.layers / "rejected" / f"{stage}.parquet"

    def raw_batches(self, source: str) -> Path:
        return self.root / "raw" / source

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def demo_site(self) -> Path:
        return self.root / "demo_site"

    def ensure(self) -> "Workdir":
        for p in (self.root, self.layers, self.releases):
            p.mkdir(parents=True, exist_ok=True)
        return self


@contextlib.contextmanager
def source_lock(wd: Workdir, source: str, log: Callable[[str], None] = lambda _m: None,
                poll_s: float = 1.0) -> Iterator[None]:
    """Hold the writer lock of one raw partition (crawl, landing and loading of ``source``).

    An OS file lock, so a writer that is killed (SIGKILL, OOM) releases it with its process and
    never blocks the next run; a second writer of the same source waits, logging once a minute.
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
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def memory_connection(threads: int | None = None, *, memory_limit: str | None = None,
                      temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection for one stage's work. With ``memory_limit`` (e.g.
    "1GB") DuckDB spills sorts, joins and tables beyond it to ``temp_dir``."""
    con = duckdb.connect(":memory:")
    if threads:
        con.sql(f"SET threads = {int(threads)}")
    if memory_limit:
        con.sql(f"SET memory_limit = {sql_str(memory_limit)}")
    if temp_dir is not None:
        con.sql(f"SET temp_directory = {sql_str(temp_dir)}")
    con.sql("SET preserve_insertion_order = true")
    return con


def sql_str(value: str | Path) -> str:
    """Quote a value as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def write_parquet(
    con: duckdb.DuckDBPyConnection, query: str, dest: Path, *, layer: str | None = None,
    label_sets: list[str] | tuple[str, ...] = (),
) -> int:
    """Write a query's rows to ``dest`` atomically; returns the row count.

    With ``layer`` the columns are cast to that layer's contract (with the label columns of
    ``label_sets`` where the layer has them), in its order. The caller's query must be
    deterministic in its order (end it with ORDER BY) for byte-identical files.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    body = f"SELECT {schema.select_list(layer, label_sets)} FROM ({query})" if layer else query
    try:
        con.sql(
            f"COPY ({body}) TO {sql_str(tmp)} "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count_rows(con, dest)


def count_rows(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    return int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(path)})").fetchall()[0][0])


def empty_layer_query(layer: str) -> str:
    """A query with the layer's columns and no rows."""
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in schema.LAYERS[layer])
    return f"SELECT {cols} WHERE false"


def read_layer(wd: Workdir, layer: str) -> str:
    """SQL for reading a layer's Parquet file(s); a clear error if it was never materialised."""
    files = wd.layer_files(layer)
    if not files:
        raise FileNotFoundError(
            f"layer {layer!r} has not been materialised yet (no {wd.layer_glob(layer)}): materialise it "
            "first, e.g. `dataset-platform demo` or from the Dagster UI"
        )
    if layer in PARTITIONED_LAYERS:
        return "read_parquet([" + ", ".join(sql_str(f) for f in files) + "])"
    return f"read_parquet({sql_str(files[0])})"


def count_layer(con: duckdb.DuckDBPyConnection, wd: Workdir, layer: str) -> int:
    """Rows of a layer (0 if it has no file yet)."""
    if not wd.layer_files(layer):
        return 0
    return int(con.sql(f"SELECT count(*) FROM {read_layer(wd, layer)}").fetchall()[0][0])


def ensure_view(wd: Workdir, name: str, target_sql: str, *, wait_s: float = 60.0) -> bool:
    """Create (or replace) ``name`` as a view in the warehouse file.

    Views point at stable paths, so a layer's view is created once. The file may be locked by
    another process (a parallel step or a user's DuckDB shell): retry with back-off for ``wait_s``
    seconds, then give up and return False (the layer itself is written; only the view is stale).
    """
    wd.ensure()
    stmt = f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {target_sql}"
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(wd.warehouse))
        except duckdb.IOException:
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        try:
            existing = con.sql(
                "SELECT sql FROM duckdb_views() WHERE view_name = ? AND NOT internal", params=[name]
            ).fetchall()
            if not existing or target_sql not in existing[0][0]:
                con.sql(stmt)
            return True
        finally:
            con.close()
