"""The persistent MinHash index beside the deduplicated layer: what a refresh reuses.

A folder of Parquet files (and, per part, arrays for lookups by position)::

    index.json            the commit point: settings tag, verification threshold, generation, parts
    state-<gen>.parquet   every input document of the last run: id, raw_hash (the input's text_hash,
                          DuckDB ``hash(text)``), row_hash (fingerprint of the row), content_hash
                          (md5 of the normalised text), url_key, source, url, lang, q, f: what a
                          refresh compares its input with, so that it reads, normalises and signs
                          only new or changed documents
    docs-<gen>.parquet    every document of the last run that took part in near-dedup (the exact
                          keepers): id, content_hash, part and row (where its signature is), kept
    edges-<gen>.parquet   verified near-duplicate edges of the last run: a_id, b_id, similarity
    exact-<gen>.parquet   the last run's exact duplicates (cluster_id, doc_id, keeper_id, ..., rule)
    near-<gen>.parquet    the last run's near-duplicates (doc_id, keeper_id, similarity): its
                          clusters, each a keeper and the documents dropped for it
    flipped-<gen>.parquet ids whose kept/dropped state the last run changed
    part-<k>.parquet      signatures written by one run, only for the documents it signed:
                          part, row, id, content_hash, sig (permutations x 8 bytes), keys (band keys)
    part-<k>.sig.npy      the same signatures as a rows x permutations uint64 array (read by
                          position, memory-mapped: a refresh reads the few it compares)
    part-<k>.bkeys.npy    per band, the part's band keys sorted (bands x rows with shingles), and
    part-<k>.brows.npy    the row of each: a refresh finds the buckets of its new documents by
                          binary search instead of a pass over every key

A refresh signs only documents whose (id, content hash) is not in ``docs`` (new or changed
text); the others' signatures and band keys are read from their part. Parts are only ever added
(cost proportional to the new documents); when they hold more than twice the live rows, the live
rows are compacted into one part. ``index.json`` is written last and atomically, after the
layer's own files, so a run that fails before that leaves the previous index as it was; files the
committed ``index.json`` does not name are removed at the next commit.

Settings that change signatures (n-grams, bands x rows, seed) make the index unusable: the next
run signs everything again. A changed threshold keeps the signatures but re-verifies every edge.
Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import duckdb

from dataset_platform import atomic
from dataset_platform.storage import sql_str

FORMAT = 2  # 1: no state/exact/near files, no arrays per part (read as no index: signed again once)
#: the tables a run leaves for :meth:`MinHashIndex.commit` as ``_index_<name>_out`` and rewrites
#: whole, with the order of their files (columns: :data:`EMPTY_TABLES`)
OUT_TABLES = {"edges": "a_id, b_id", "exact": "doc_id", "near": "doc_id", "flipped": "id"}
#: kept as a base file and deltas (see :meth:`MinHashIndex.commit`)
LOGGED = ("state", "docs")
EMPTY_TABLES = {
    "_index_state": "id VARCHAR, raw_hash UBIGINT, row_hash UBIGINT, content_hash VARCHAR, url_key VARCHAR, "
                    "source VARCHAR, url VARCHAR, lang VARCHAR, q DOUBLE, f TIMESTAMPTZ",
    "_index_docs": "id VARCHAR, content_hash VARCHAR, part INTEGER, row INTEGER, kept BOOLEAN",
    "_index_edges": "a_id VARCHAR, b_id VARCHAR, similarity DOUBLE",
    "_index_exact": "cluster_id VARCHAR, doc_id VARCHAR, keeper_id VARCHAR, similarity DOUBLE, kind VARCHAR, rule VARCHAR",
    "_index_near": "doc_id VARCHAR, keeper_id VARCHAR, similarity DOUBLE",
    "_index_flipped": "id VARCHAR",
}


def _cols(table: str) -> str:
    return ", ".join(c.split()[0] for c in EMPTY_TABLES[table].split(", "))


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return con.sql(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{table}'").fetchall()[0][0] > 0


def _write(con: duckdb.DuckDBPyConnection, query: str, dest: Path) -> None:
    with atomic.replacing(dest) as tmp:
        con.sql(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")


class PartArrays:
    """Writes one part's signatures and its sorted band keys as ``.npy`` arrays, batch by batch
    (rows in the order of the part's ``row`` column); the band keys are the signatures'. After
    :meth:`close`, ``keys`` (rows x bands) and ``has`` (the row has shingles) stay readable."""

    def __init__(self, index: MinHashIndex, part: int, rows: int, params):
        import numpy as np

        self.index, self.part, self.params = index, part, params
        # the arrays are written under temporary names and put in place together by close(); a
        # run that fails before leaves temporary files, removed by the next commit
        self._files = contextlib.ExitStack()
        # written in order through a file (a memory map would count its pages in this process's memory)
        self.sig = open(self._temporary("sig"), "wb")
        np.lib.format.write_array_header_1_0(self.sig, {"descr": np.dtype(np.uint64).str, "fortran_order": False,
                                                        "shape": (rows, params.permutations)})
        self.rows = rows
        self.keys = np.zeros((rows, params.bands), np.uint64)
        self.has = np.zeros(rows, bool)  # the document has shingles (its keys go into buckets)
        self.done = 0

    def _temporary(self, what: str) -> Path:
        return self._files.enter_context(atomic.replacing(self.index.array_path(self.part, what)))

    def add(self, sig) -> None:
        """The next rows' signatures (documents x permutations uint64)."""
        import numpy as np

        from dataset_platform.stages.dedup.minhash import EMPTY, band_keys

        n = sig.shape[0]
        self.sig.write(np.ascontiguousarray(sig, np.uint64).tobytes())
        self.keys[self.done : self.done + n] = band_keys(sig, self.params)
        self.has[self.done : self.done + n] = ~(sig == EMPTY).all(axis=1)
        self.done += n

    def close(self) -> None:
        import numpy as np

        self.sig.close()
        with self._files:  # every array in place when the block ends; none of them if it raises
            if self.done != self.rows:
                raise RuntimeError(f"index part {self.part}: {self.done} of {self.rows} signatures written")
            rows = np.flatnonzero(self.has).astype(np.int32)
            bkeys = np.empty((self.params.bands, rows.size), np.uint64)
            brows = np.empty((self.params.bands, rows.size), np.int32)
            for b in range(self.params.bands):
                k = self.keys[rows, b]
                order = np.argsort(k, kind="stable")
                bkeys[b], brows[b] = k[order], rows[order]
            for what, arr in (("bkeys", bkeys), ("brows", brows)):
                with open(self._temporary(what), "wb") as f:
                    np.save(f, arr)


class MinHashIndex:
    """Load (into tables on a connection), add a part, commit. One writer at a time (the
    deduplicated layer's asset)."""

    #: parts are compacted when they hold more than twice the live rows and more than this many
    COMPACT_MIN_ROWS = 10_000
    #: state and docs get a new base file when their deltas hold more than this share of the rows
    DELTA_SHARE = 0.25
    #: ... or number more than this
    MAX_DELTAS = 16

    def __init__(self, path: Path):
        self.path = Path(path)
        self.generation = 0
        self.tag, self.threshold = "", 0.0
        self.new_part: int | None = None
        self.reuse_edges = False
        self.parts: list[int] = []
        self.logged: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ reading
    def _read_meta(self) -> dict:
        f = self.path / "index.json"
        if not f.exists():
            return {}
        try:
            meta = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if meta.get("format") == FORMAT else {}

    def load(self, con: duckdb.DuckDBPyConnection, tag: str, threshold: float) -> None:
        """Create the ``_index_*`` tables of :data:`EMPTY_TABLES` on ``con`` (empty when there is
        no usable index for these settings; the state is read whatever the settings)."""
        meta = self._read_meta()
        self.generation = int(meta.get("generation", 0))
        usable = bool(meta) and meta.get("params") == tag
        self.tag, self.threshold = tag, float(threshold)
        self.empty_tables(con)
        # base file, then deltas (one name: a base alone)
        self.logged = {name: [meta[name]] if isinstance(meta.get(name), str) else list(meta.get(name) or [])
                       for name in LOGGED}
        if meta.get("state"):  # the content-hash cache holds whatever the settings
            self._read_logged(con, "state")
        self.reuse_edges = usable and float(meta.get("threshold", -1)) == float(threshold)
        if not usable:
            self.logged["docs"] = []
        if usable:
            self._read_logged(con, "docs")
            if self.reuse_edges:
                for table in ("edges", "exact", "near", "flipped"):
                    self._read(con, f"_index_{table}", meta[table])
        self.parts = [int(p) for p in meta.get("parts", [])] if usable else []
        self.new_part = int(meta.get("next_part", 1))  # never a number a committed part has

    def _read(self, con: duckdb.DuckDBPyConnection, table: str, name: str) -> None:
        con.sql(f"INSERT INTO {table} SELECT {_cols(table)} FROM read_parquet({sql_str(self.path / name)})")

    def _read_logged(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """A table kept as a base file and deltas (rows that replace the rows of their id, or
        delete them): read the base, apply each delta in order."""
        table = f"_index_{name}"
        base, *deltas = self.logged[name]
        self._read(con, table, base)
        for delta in deltas:
            self._apply(con, table, f"read_parquet({sql_str(self.path / delta)})")

    @staticmethod
    def _apply(con: duckdb.DuckDBPyConnection, table: str, delta_sql: str) -> None:
        con.sql(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {delta_sql})")
        con.sql(f"INSERT INTO {table} SELECT {_cols(table)} FROM {delta_sql} WHERE NOT deleted")

    @staticmethod
    def empty_tables(con: duckdb.DuckDBPyConnection) -> None:
        """The tables :meth:`load` creates, empty (a run without history)."""
        for table, cols in EMPTY_TABLES.items():
            con.sql(f"CREATE OR REPLACE TABLE {table} ({cols})")

    def part_path(self, part: int) -> Path:
        return self.path / f"part-{part:05d}.parquet"

    def array_path(self, part: int, what: str) -> Path:
        return self.path / f"part-{part:05d}.{what}.npy"

    def arrays(self, part: int, what: str):
        """A part's array (``sig``, ``bkeys`` or ``brows``), memory-mapped."""
        import numpy as np

        return np.load(self.array_path(part, what), mmap_mode="r")

    def part_arrays(self, part: int, rows: int, params) -> PartArrays:
        return PartArrays(self, part, rows, params)

    def parts_sql(self, parts: list[int]) -> str:
        """FROM-able union of the given parts (part, row, id, content_hash, sig, keys)."""
        files = [self.part_path(p) for p in parts if self.part_path(p).exists()]
        if not files:
            return ("(SELECT NULL::INTEGER AS part, NULL::INTEGER AS row, NULL::VARCHAR AS id, "
                    "NULL::VARCHAR AS content_hash, NULL::BLOB AS sig, NULL::UBIGINT[] AS keys WHERE false)")
        return "read_parquet([" + ", ".join(sql_str(f) for f in files) + "])"

    # ------------------------------------------------------------------ writing
    def commit(self, con: duckdb.DuckDBPyConnection, params=None) -> None:
        """Persist what the dedup stage left on ``con``: the ``_index_<name>_out`` tables of
        :data:`OUT_TABLES`; for ``state`` and ``docs`` (:data:`LOGGED`) either ``_index_<name>_out`` (every row: a
        new base file) or ``_index_<name>_delta`` (the rows that changed, with a ``deleted``
        flag: appended as a delta file, so a refresh writes in proportion to its changes; folded
        into a new base when the deltas hold more than :attr:`DELTA_SHARE` of the rows or number
        more than :attr:`MAX_DELTAS`). Call after the layer itself has been written. ``params``
        (MinHashParams) is needed only to compact parts."""
        self.path.mkdir(parents=True, exist_ok=True)
        current = {}
        for name in LOGGED:  # the whole table as it now is: the run's, or the loaded one + the delta
            if _exists(con, f"_index_{name}_out"):
                current[name] = f"_index_{name}_out"
            else:
                self._apply(con, f"_index_{name}", f"_index_{name}_delta")
                current[name] = f"_index_{name}"
        docs = current["docs"]
        parts = [r[0] for r in con.sql(f"SELECT DISTINCT part FROM {docs} ORDER BY 1").fetchall()]
        live = con.sql(f"SELECT count(*) FROM {docs}").fetchall()[0][0]
        stored = sum(
            con.sql(f"SELECT count(*) FROM read_parquet({sql_str(self.part_path(p))})").fetchall()[0][0]
            for p in parts if self.part_path(p).exists()
        )
        next_part = self.new_part + 1
        rebase = {name: current[name].endswith("_out") for name in LOGGED}
        if stored > 2 * live and stored > self.COMPACT_MIN_ROWS:  # mostly replaced signatures: compact
            compact = next_part
            next_part += 1
            self._compact(con, parts, compact, params, docs)
            parts = [compact]
            rebase["docs"] = True  # every row moved
        gen = int(self.generation) + 1
        meta = {"format": FORMAT, "params": self.tag, "threshold": self.threshold, "generation": gen,
                "parts": parts, "next_part": next_part}
        for name in LOGGED:
            files = self.logged.get(name) or []
            rows = con.sql(f"SELECT count(*) FROM {current[name]}").fetchall()[0][0]
            in_deltas = sum(self._rows(f) for f in files[1:]) if files else 0
            delta_rows = 0 if rebase[name] else con.sql(f"SELECT count(*) FROM _index_{name}_delta").fetchall()[0][0]
            if rebase[name] or not files or len(files) > self.MAX_DELTAS or \
                    in_deltas + delta_rows > self.DELTA_SHARE * max(rows, 1):
                meta[name] = [f"{name}-{gen:06d}.parquet"]
                _write(con, f"SELECT {_cols(f'_index_{name}')} FROM {current[name]} ORDER BY id",
                       self.path / meta[name][0])
            else:
                meta[name] = [*files, f"{name}-{gen:06d}.parquet"]
                _write(con, f"SELECT {_cols(f'_index_{name}')}, deleted FROM _index_{name}_delta ORDER BY id",
                       self.path / meta[name][-1])
        for name, order in OUT_TABLES.items():
            meta[name] = f"{name}-{gen:06d}.parquet"
            _write(con, f"SELECT {_cols(f'_index_{name}')} FROM _index_{name}_out ORDER BY {order}",
                   self.path / meta[name])
        atomic.write_text(self.path / "index.json", json.dumps(meta, indent=1) + "\n")
        keep = {"index.json", *(f for name in LOGGED for f in meta[name]), *(meta[name] for name in OUT_TABLES)}
        keep |= {self.part_path(p).name for p in parts}
        keep |= {self.array_path(p, w).name for p in parts for w in ("sig", "bkeys", "brows")}
        for f in self.path.iterdir():  # older generations, and what a failed run left
            if f.name not in keep and (not f.name.startswith(".") or atomic.is_temporary(f.name)):
                f.unlink()
        self.generation = gen
        self.logged = {name: list(meta[name]) for name in LOGGED}

    def _rows(self, name: str) -> int:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.path / name).metadata.num_rows

    def _compact(self, con: duckdb.DuckDBPyConnection, parts: list[int], compact: int, params, docs: str) -> None:
        """The live rows of ``parts`` into one new part (id order), with its arrays."""
        import pyarrow.parquet as pq

        from dataset_platform.stages.dedup.minhash import MinHashParams, sig_matrix

        params = params or MinHashParams()
        _write(con, f"SELECT {compact}::INTEGER AS part, (row_number() OVER (ORDER BY p.id) - 1)::INTEGER AS row, "
                    f"p.id, p.content_hash, p.sig, p.keys "
                    f"FROM {self.parts_sql(parts)} p JOIN {docs} d ON d.id = p.id AND d.part = p.part "
                    "ORDER BY p.id", self.part_path(compact))
        f = pq.ParquetFile(self.part_path(compact))
        arrays = self.part_arrays(compact, f.metadata.num_rows, params)
        for batch in f.iter_batches(columns=["sig"], batch_size=50_000):
            arrays.add(sig_matrix(batch.column(0), params.permutations))
        arrays.close()
        con.sql(f"UPDATE {docs} SET part = {compact}, row = p.row "
                f"FROM read_parquet({sql_str(self.part_path(compact))}) p WHERE p.id = {docs}.id")
