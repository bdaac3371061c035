"""The persistent MinHash index beside the deduplicated layer: what a refresh reuses.

A folder of Parquet files::

    index.json            the commit point: settings tag, verification threshold, generation, parts
    docs-<gen>.parquet    every document of the last run that took part in near-dedup:
                          id, content_hash, part (where its signature is), kept (bool)
    edges-<gen>.parquet   verified near-duplicate edges of the last run: a_id, b_id, similarity
    hashes-<gen>.parquet  every input document of the last run: id, raw_hash (DuckDB ``hash(text)``),
                          content_hash (md5 of the normalised text), so that a refresh normalises
                          and hashes only new or changed texts
    part-<k>.parquet      signatures written by one run, only for the documents it signed:
                          part, id, content_hash, sig (permutations x 8 bytes), keys (band keys)

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

import json
import os
import uuid
from pathlib import Path

import duckdb

from dataset_platform.storage import sql_str

FORMAT = 1


def _write(con: duckdb.DuckDBPyConnection, query: str, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        con.sql(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


class MinHashIndex:
    """Load (into tables on a connection), add a part, commit. One writer at a time (the
    deduplicated layer's asset)."""

    #: parts are compacted when they hold more than twice the live rows and more than this many
    COMPACT_MIN_ROWS = 10_000

    def __init__(self, path: Path):
        self.path = Path(path)
        self.generation = 0
        self.tag, self.threshold = "", 0.0
        self.new_part: int | None = None
        self.reuse_edges = False

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
        """Create ``_index_docs`` and ``_index_edges`` on ``con`` (empty when there is no usable
        index for these settings)."""
        meta = self._read_meta()
        self.generation = int(meta.get("generation", 0))
        usable = bool(meta) and meta.get("params") == tag
        self.tag, self.threshold = tag, float(threshold)
        self.empty_tables(con)
        if meta.get("hashes"):  # the content-hash cache holds whatever the settings
            con.sql(f"CREATE OR REPLACE TABLE _index_hashes AS SELECT id, raw_hash, content_hash "
                    f"FROM read_parquet({sql_str(self.path / meta['hashes'])})")
        if usable:
            docs, edges = self.path / meta["docs"], self.path / meta["edges"]
            con.sql(f"CREATE OR REPLACE TABLE _index_docs AS SELECT id, content_hash, part, kept "
                    f"FROM read_parquet({sql_str(docs)})")
            self.reuse_edges = float(meta.get("threshold", -1)) == float(threshold)
            con.sql(f"CREATE OR REPLACE TABLE _index_edges AS SELECT a_id, b_id, similarity "
                    f"FROM read_parquet({sql_str(edges)}) WHERE {str(self.reuse_edges).upper()}")
        else:
            self.reuse_edges = False
        self.new_part = int(meta.get("next_part", 1))  # never a number a committed part has

    @staticmethod
    def empty_tables(con: duckdb.DuckDBPyConnection) -> None:
        """The tables :meth:`load` creates, empty (a run without history)."""
        con.sql("CREATE OR REPLACE TABLE _index_hashes (id VARCHAR, raw_hash UBIGINT, content_hash VARCHAR)")
        con.sql("CREATE OR REPLACE TABLE _index_docs (id VARCHAR, content_hash VARCHAR, part INTEGER, kept BOOLEAN)")
        con.sql("CREATE OR REPLACE TABLE _index_edges (a_id VARCHAR, b_id VARCHAR, similarity DOUBLE)")

    def part_path(self, part: int) -> Path:
        return self.path / f"part-{part:05d}.parquet"

    def parts_sql(self, parts: list[int]) -> str:
        """FROM-able union of the given parts (part, id, content_hash, sig, keys)."""
        files = [self.part_path(p) for p in parts if self.part_path(p).exists()]
        if not files:
            return ("(SELECT NULL::INTEGER AS part, NULL::VARCHAR AS id, NULL::VARCHAR AS content_hash, "
                    "NULL::BLOB AS sig, NULL::UBIGINT[] AS keys WHERE false)")
        return "read_parquet([" + ", ".join(sql_str(f) for f in files) + "])"

    # ------------------------------------------------------------------ writing
    def commit(self, con: duckdb.DuckDBPyConnection) -> None:
        """Persist ``_index_docs_out`` (id, content_hash, part, kept) and ``_index_edges_out``
        (a_id, b_id, similarity) left on ``con`` by the dedup stage. Call after the layer itself
        has been written."""
        self.path.mkdir(parents=True, exist_ok=True)
        parts = [r[0] for r in con.sql("SELECT DISTINCT part FROM _index_docs_out ORDER BY 1").fetchall()]
        live = con.sql("SELECT count(*) FROM _index_docs_out").fetchall()[0][0]
        stored = sum(
            con.sql(f"SELECT count(*) FROM read_parquet({sql_str(self.part_path(p))})").fetchall()[0][0]
            for p in parts if self.part_path(p).exists()
        )
        next_part = self.new_part + 1
        if stored > 2 * live and stored > self.COMPACT_MIN_ROWS:  # mostly replaced signatures: compact
            compact = next_part
            next_part += 1
            _write(con, f"SELECT {compact}::INTEGER AS part, p.id, p.content_hash, p.sig, p.keys "
                        f"FROM {self.parts_sql(parts)} p JOIN _index_docs_out d ON d.id = p.id AND d.part = p.part "
                        "ORDER BY p.id", self.part_path(compact))
            con.sql(f"UPDATE _index_docs_out SET part = {compact}")
            parts = [compact]
        gen = int(self.generation) + 1
        docs, edges, hashes = f"docs-{gen:06d}.parquet", f"edges-{gen:06d}.parquet", f"hashes-{gen:06d}.parquet"
        _write(con, "SELECT id, raw_hash, content_hash FROM _index_hashes_out ORDER BY id", self.path / hashes)
        _write(con, "SELECT id, content_hash, part, kept FROM _index_docs_out ORDER BY id", self.path / docs)
        _write(con, "SELECT a_id, b_id, similarity FROM _index_edges_out ORDER BY a_id, b_id", self.path / edges)
        meta = {"format": FORMAT, "params": self.tag, "threshold": self.threshold, "generation": gen,
                "docs": docs, "edges": edges, "hashes": hashes, "parts": parts, "next_part": next_part}
        tmp = self.path / f".index.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / "index.json")
        keep = {"index.json", docs, edges, hashes, *(self.part_path(p).name for p in parts)}
        for f in self.path.iterdir():
            if f.name not in keep and not f.name.startswith("."):
                f.unlink()
        self.generation = gen
