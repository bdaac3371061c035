"""Near-duplicate candidates and their verification in shards of band keys: bounded work units.

The band rows of every document (doc, band, key, part, row, new) are hash-partitioned by key into
``shards`` files (:func:`write_band_shards`): every LSH bucket (band, key) lies wholly in one
shard, so each shard's candidate pairs are exactly the pairs of its buckets. One task per shard
(:func:`shard_edges`, a plain function of a :class:`ShardTask`: it runs in this process, on a
process of this machine or on a Ray worker alike) makes the candidate pairs of its buckets that
touch a new document, verifies them against their MinHash signatures, read by position from the
index's arrays in bounded batches, and writes the verified ones (a, b, similarity) to its own
file. A pair found in two shards (its documents share buckets in both) is written by both, with
the same similarity; the reader takes it once. The files are on the path the index is on, which
every worker reads and writes; nothing is shared in memory between tasks.

Memory of a task: its shard's band rows in its own DuckDB (bounded by ``memory_limit``, beyond
which DuckDB spills to ``temp_dir``) and one batch of pairs with their signatures (bounded by
``batch``). The number of shards is chosen from the band rows and that bound
(:func:`shard_count`), never from the number of machines: the same inputs give the same shards,
and the pairs found do not depend on them.

Nothing here imports Dagster or Ray.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from dataset_platform.storage import MIN_TASK_MEMORY, memory_connection, sql_str

#: bytes a band row takes in a shard task's DuckDB while its buckets are windowed, measured with
#: bench/dedup_shards.py: 1.4M band rows (100 000 documents) in one task peaked 303 MB above a
#: process with the same imports and an empty connection (227 bytes a row); 14M rows under a 1 GB
#: limit spilled and peaked at 1.3 GB. A shard holds at most ``memory / BAND_ROW_BYTES`` rows
BAND_ROW_BYTES = 256
#: pairs verified at once: their signatures (2 x permutations x 8 bytes each) and the index pages
#: they touch are what a task holds beyond its DuckDB
PAIR_BATCH = 20_000

# Candidate pairs from LSH buckets: each member of a bucket (band, key) with the bucket's smallest
# member and with its predecessor - linear in the bucket size, never all pairs. ``{m}``: the
# member column (doc numbers in id order, or ids), ``{bands}``: band, key, member rows. (The
# refresh by difference pairs its few buckets with it too.)
BUCKET_PAIRS_SQL = """
    WITH w AS (
      SELECT {m} AS m, min({m}) OVER (PARTITION BY band, key) AS root,
             lag({m}) OVER (PARTITION BY band, key ORDER BY {m}) AS prev
      FROM {bands}
    )
    SELECT DISTINCT a, b FROM (
      SELECT root AS a, m AS b FROM w WHERE m <> root
      UNION ALL SELECT prev, m FROM w WHERE prev IS NOT NULL AND prev <> root
    )
"""
# A shard's candidate pairs: those of its buckets that hold a new document, kept when one end is
# new, with where each end's signature is. ``b`` > ``a``.
SHARD_PAIRS_SQL = """
    WITH bands AS (SELECT * FROM read_parquet({file})),
    touched AS (
      SELECT b.* FROM bands b SEMI JOIN (SELECT DISTINCT band, key FROM bands WHERE new) n
      ON n.band = b.band AND n.key = b.key
    ),
    pairs AS ({pairs}),
    docs AS (SELECT DISTINCT doc, part, row, new FROM touched)
    SELECT p.a, p.b, da.part AS a_part, da.row AS a_row, db.part AS b_part, db.row AS b_row
    FROM pairs p JOIN docs da ON da.doc = p.a JOIN docs db ON db.doc = p.b
    WHERE da.new OR db.new
    ORDER BY p.a, p.b
""".replace("{pairs}", BUCKET_PAIRS_SQL.format(m="doc", bands="touched"))


@dataclass(frozen=True)
class ShardTask:
    """One shard's work: read ``bands`` (Parquet files, a glob: doc, band, key, part, row, new), write
    the verified pairs to ``out`` (a, b, similarity; a Parquet file)."""

    shard: int
    bands: str
    out: str
    index: str  # the index folder (its part-<k>.sig.npy arrays)
    permutations: int
    threshold: float
    memory_limit: str = "1GB"
    threads: int = 1
    temp_dir: str | None = None


@dataclass(frozen=True)
class ShardResult:
    shard: int
    band_rows: int
    candidates: int
    verified: int


def shard_count(band_rows: int, memory_limit_bytes: int) -> int:
    """Shards for ``band_rows`` so that one shard's rows fit a task's DuckDB memory."""
    per_shard = max(1, memory_limit_bytes // BAND_ROW_BYTES)
    return max(1, math.ceil(band_rows / per_shard))


def cut(rows: int, memory_bytes: int, row_bytes: int, min_tasks: int = 1) -> int:
    """Shards for ``rows`` rows of ``row_bytes`` each so that one shard fits a task's memory (not
    less than :data:`MIN_TASK_MEMORY`), at least ``min_tasks``: the cut of the exact ranking's,
    the split's and the components' shard tasks."""
    per_shard = max(1, max(memory_bytes, MIN_TASK_MEMORY) // row_bytes)
    return max(1, math.ceil(rows / per_shard), min_tasks)


def write_band_shards(con: duckdb.DuckDBPyConnection, bands_sql: str, folder: Path, shards: int) -> list[str]:
    """Hash-partition the rows of ``bands_sql`` (doc, band, key, part, row, new) by key into
    ``shards`` folders under ``folder`` (emptied first); returns a glob of each shard that holds
    rows, in shard order. The shard of a bucket is ``key % shards``: band keys are hashes, so
    shards are even."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    con.sql(
        f"COPY (SELECT doc, band, key, part, row, new, (key % {int(shards)})::INTEGER AS shard FROM ({bands_sql})) "
        f"TO {sql_str(folder / 'bands')} (FORMAT parquet, PARTITION_BY (shard), COMPRESSION zstd)"
    )
    return [str(folder / "bands" / f"shard={s}" / "*.parquet") for s in range(shards)
            if (folder / "bands" / f"shard={s}").is_dir()]


class SignatureReader:
    """Signatures by (part, row) from an index folder's ``part-<k>.sig.npy`` arrays. Each call maps
    the arrays it reads and unmaps them before it returns: a task's memory holds the rows of one
    batch, not the pages of every part it has read."""

    def __init__(self, index: str | Path, permutations: int):
        self.index, self.permutations = Path(index), permutations

    def rows(self, part: np.ndarray, row: np.ndarray) -> np.ndarray:
        out = np.empty((part.size, self.permutations), np.uint64)
        for p in np.unique(part):
            at = np.flatnonzero(part == p)
            arr = np.load(self.index / f"part-{int(p):05d}.sig.npy", mmap_mode="r")
            try:
                order = np.argsort(row[at], kind="stable")  # (read in file order)
                out[at[order]] = arr[np.asarray(row[at][order], np.int64)]
            finally:
                del arr
        return out

    def similarity(self, a_part, a_row, b_part, b_row) -> np.ndarray:
        """Estimated Jaccard similarity of each pair: the share of equal signature values."""
        if len(a_part) == 0:
            return np.zeros(0)
        sa = self.rows(np.asarray(a_part), np.asarray(a_row))
        sb = self.rows(np.asarray(b_part), np.asarray(b_row))
        return (sa == sb).mean(axis=1)


def task_connection(memory_limit: str, threads: int, temp_dir: str | None) -> duckdb.DuckDBPyConnection:
    """The DuckDB of one shard task (here and in ``exact.py``): ``storage.memory_connection`` with
    the task's memory bound and threads, spilling to ``temp_dir`` (made here)."""
    if temp_dir:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
    return memory_connection(max(1, int(threads)), memory_limit=memory_limit,
                             temp_dir=Path(temp_dir) if temp_dir else None)


def shard_edges(task: ShardTask) -> ShardResult:
    """The verified candidate pairs of one shard (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = task_connection(task.memory_limit, task.threads, task.temp_dir)
    sigs = SignatureReader(task.index, task.permutations)
    schema = pa.schema([("a", pa.int32()), ("b", pa.int32()), ("similarity", pa.float64())])
    candidates = verified = 0
    try:
        band_rows = con.sql(f"SELECT count(*) FROM read_parquet({sql_str(task.bands)})").fetchall()[0][0]
        con.sql(f"CREATE TABLE pairs AS {SHARD_PAIRS_SQL.format(file=sql_str(task.bands))}")
        reader = con.sql("SELECT * FROM pairs").to_arrow_reader(PAIR_BATCH)
        out = Path(task.out)
        tmp = out.with_name(out.name + ".tmp")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in reader:
                cols = {name: batch.column(name).to_numpy() for name in batch.schema.names}
                sim = sigs.similarity(cols["a_part"], cols["a_row"], cols["b_part"], cols["b_row"])
                ok = np.flatnonzero(sim >= task.threshold)
                candidates += batch.num_rows
                verified += ok.size
                if ok.size:
                    writer.write_table(pa.table({"a": pa.array(cols["a"][ok].astype(np.int32)),
                                                 "b": pa.array(cols["b"][ok].astype(np.int32)),
                                                 "similarity": pa.array(sim[ok].round(4))}, schema=schema))
        tmp.replace(out)  # (a retried task writes the same file again)
    finally:
        con.close()
    return ShardResult(task.shard, int(band_rows), int(candidates), int(verified))

