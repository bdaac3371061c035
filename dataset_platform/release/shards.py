"""A release's shards, written by difference with the previous version, in bounded memory.

Layout of a version's data (what ``release/publish.py`` publishes)::

    <version>/data/<split>-NNNNN-of-NNNNN.parquet   the shards (Hugging Face's naming)
    <version>/index.parquet               one row per released row: id, split, _shard (its file),
                                          _fp (row fingerprint), n_chars, augmented_from, _ops
                                          (augmentation), source, lang, the label values; the
                                          reused shards' rows first, then the written ones
    .<version>.parts.parquet, .parts.json beside the versions: the input part each document was
                                          taken from, its split group key (splits by difference)
                                          and the parts' chains (run bookkeeping, not content:
                                          crawl ids are times, so it stays out of the version,
                                          whose files depend on its content only)

Rules:

* A shard holds rows of one split and at most ``release.max_shard_bytes`` bytes of text and
  title (a document larger than the bound gets a shard of its own). An augmented copy comes
  right after its original, in the original's shard.
* A shard of the previous version is **reused** when every document in it is still released, in
  the same split, with the same row fingerprint, and the layout (the columns, the bound, the
  augmentation settings, this module's version) is unchanged: its file is hard-linked into the new
  version under its new name (copied where the file system refuses links); its sha256, rows,
  bytes and Arrow bytes (what ``datasets`` counts, :func:`arrow_bytes`) are taken from the
  previous manifest, not computed again.
* A shard that lost a document, or one of whose documents changed or moved, is **rewritten**: its
  unchanged rows (with their copies) are read back from the old shard; new and changed documents
  are read from the input parts. Each split's rows to write are packed into new shards: the old
  shards' survivors first (in shard order), then the input parts in key order (rows in part order:
  parts are in id order), a shard closed when the next document would take it past the bound.
* **Folding**: when a split gets rows to write and already holds ``FOLD_AT`` (8) or more reused
  shards under half the bound, those small shards are rewritten together with the new rows, so a
  history of small refreshes leaves at most about ``FOLD_AT`` small shards per split.
* Numbering: the reused shards first, in their previous order, then the new ones.
* A document is known unchanged without reading it when the input part it sits in has the chain
  the previous release consumed (``.<version>.parts.json``: same chain, same row for an id, see
  ``storage/batched.py``) and the previous release took it from that part; other documents
  that were released before are read once to fingerprint them; documents never released are read
  only to be written. The text of an unchanged document is read only when its shard is rewritten
  (from the old shard).
* Deterministic: the same inputs and the same history give the same bytes. A rebuild from
  scratch packs every split anew, so its shards may be cut elsewhere than those of a history of
  refreshes: the rows of each split are the same either way, and a document's split keeps its
  history (``split_assignments``).

Memory: rows stream from Parquet in batches of ``BATCH_ROWS`` into one writer per split (row
groups of at most ``ROW_GROUP_BYTES`` of text); DuckDB holds narrow columns only (ids, keys,
fingerprints). Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_platform.contracts import schema
from dataset_platform.storage import sql_str

#: bump when the packing rules change (a new version then rewrites every shard once)
LAYOUT_VERSION = "1"
#: bump when the row fingerprint's definition changes
FINGERPRINT_VERSION = "1"
INDEX = "index.parquet"
#: a split keeps at most about this many shards under half the bound before they are folded
FOLD_AT = 8
BATCH_ROWS = 4096
ROW_GROUP_BYTES = 32 << 20
ROW_GROUP_ROWS = 50_000
_NEW = "data/.new-"  # temporary names of the shards being written


@dataclass(frozen=True)
class SourcePart:
    """One part of the release's input: ``sql`` a FROM-able relation of its rows; ``chain`` how they
    were computed (``storage.batched.PartInfo.chain``; None: unknown, every row is read); ``file``
    the Parquet file it is, when it is one (rows are then matched by position, not by id)."""

    key: str
    sql: str
    chain: str | None = None
    rows: int | None = None
    file: Path | None = None

    @classmethod
    def parquet(cls, key: str, file: Path, chain: str | None = None, rows: int | None = None) -> SourcePart:
        return cls(key, f"read_parquet({sql_str(file)})", chain, rows, Path(file))


# ---------------------------------------------------------------- columns, fingerprints, layout


def data_columns(label_sets=()) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a shard: the release's columns without ``split``."""
    return [(n, t) for n, t in schema.layer_columns("dataset_release", label_sets) if n != "split"]


def select_list(available, label_sets=()) -> str:
    """The shard's columns cast to their types, from a relation with columns ``available``
    (``augmented_from`` is NULL when the relation has none)."""
    out = []
    for n, t in data_columns(label_sets):
        if n in available:
            out.append(f'CAST("{n}" AS {t}) AS "{n}"')
        elif n == "augmented_from":
            out.append(f'CAST(NULL AS {t}) AS "{n}"')
        else:
            raise ValueError(f"release input lacks column {n!r} (has: {', '.join(sorted(available))})")
    return ", ".join(out)


def fingerprint_sql(label_sets=(), present=None) -> str:
    """SQL of a row's fingerprint: 64 bits of md5 over every released field but the id (NULL and
    the empty string told apart), over the shard's columns. ``present``: the columns the relation
    has (the others count as NULL: a previous release with other columns)."""
    cols = [n for n, _ in data_columns(label_sets) if n != "id"]
    fields = ", ".join(f'coalesce(CAST("{c}" AS VARCHAR), chr(30))' if present is None or c in present else "chr(30)"
                       for c in cols)
    return f"md5_number_upper(concat_ws(chr(31), {fields}))"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def layout_of(label_sets, max_shard_bytes: int, augment, split_settings=None) -> dict:
    """``row``: what a row fingerprint covers (fingerprints of two releases compare when equal);
    ``layout``: that plus what decides a shard's bytes (shards are reused only when equal);
    ``split``: the settings the group keys were computed with (splits by difference)."""
    row = _digest({"fingerprint": FINGERPRINT_VERSION, "columns": data_columns(label_sets)})
    aug = augment.model_dump(mode="json") if augment is not None else None
    out = {"row": row, "layout": _digest({"row": row, "version": LAYOUT_VERSION, "max_shard_bytes": max_shard_bytes,
                                          "augment": aug, "pyarrow": pa.__version__.split(".")[0]})}
    if split_settings is not None:
        out["split"] = _digest(split_settings)
    return out


def index_schema(label_sets=()) -> pa.Schema:
    """The index's columns."""
    s = pa.string()
    return pa.schema([("id", s), ("split", s), ("_shard", s), ("_fp", pa.uint64()),
                      ("n_chars", pa.int64()), ("augmented_from", s), ("_ops", s), ("source", s), ("lang", s),
                      *[(name, s) for name in label_sets]])


def arrow_schema(con: duckdb.DuckDBPyConnection, label_sets=()) -> pa.Schema:
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in data_columns(label_sets))
    return con.sql(f"SELECT {cols} WHERE false").to_arrow_table().schema


# ---------------------------------------------------------------- the previous version


@dataclass
class Previous:
    """What the previous version offers: ``comparable`` its index's fingerprints compare with
    ours (the diff needs no texts); ``reusable`` its shards may be reused."""

    path: Path | None = None
    manifest: dict = field(default_factory=dict)
    comparable: bool = False
    reusable: bool = False

    #: input part key -> {"chain", "rows"} of the parts it consumed (empty when unknown)
    source_parts: dict = field(default_factory=dict)
    #: its documents' split group keys are known (``_prev_parts``)
    groups: bool = False


def parts_files(dataset_dir: Path, version: str) -> tuple[Path, Path]:
    """Where the run bookkeeping of ``version`` lives: the input part of each document, the
    chains of the parts."""
    return dataset_dir / f".{version}.parts.parquet", dataset_dir / f".{version}.parts.json"


def write_parts(con: duckdb.DuckDBPyConnection, dataset_dir: Path, version: str, parts: list[SourcePart]) -> None:
    """Record which input part each document of ``version`` was taken from and its split group
    key (needs ``_new``)."""
    from dataset_platform import atomic
    from dataset_platform.storage import write_parquet

    rows, meta = parts_files(dataset_dir, version)
    write_parquet(con, "SELECT id, _part, group_key AS _group FROM _new", rows)
    atomic.write_text(meta, json.dumps({p.key: {"chain": p.chain, "rows": p.rows} for p in parts
                                        if p.chain is not None}, sort_keys=True) + "\n")


def load_previous(con: duckdb.DuckDBPyConnection, path: Path | None, layout: dict, label_sets=()) -> Previous:
    """Read the previous version's manifest; its index as view ``_prev_index`` (empty when there is
    none usable), its rows' (id, split, fingerprint) as ``_prev_basis`` for the diff and its run
    bookkeeping as ``_prev_parts`` (id, _part, _group; empty when unknown)."""
    prev = Previous(path)
    if path is not None and (path / "manifest.json").exists():
        prev.manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    meta = prev.manifest.get("layout", {})
    has_index = path is not None and (path / INDEX).exists()
    prev.comparable = has_index and meta.get("row") == layout["row"]
    prev.reusable = prev.comparable and meta.get("layout") == layout["layout"]
    if prev.comparable:
        index = f"read_parquet({sql_str(path / INDEX)})"
        con.sql(f"CREATE OR REPLACE TABLE _prev_basis AS SELECT id, split, _fp FROM {index}")
        con.sql(f"CREATE OR REPLACE VIEW _prev_index AS SELECT * FROM {index}" + ("" if prev.reusable else " WHERE false"))
    else:
        empty = ", ".join(f'CAST(NULL AS {_duck(t)}) AS "{n}"' for n, t in zip(index_schema(label_sets).names,
                                                                          index_schema(label_sets).types))
        con.sql(f"CREATE OR REPLACE VIEW _prev_index AS SELECT {empty} WHERE false")
        if path is not None and any((path / "data").glob("*.parquet")):
            # a version written before the index (or with other columns): its rows are read once
            from dataset_platform.release.publish import release_view_sql

            view = release_view_sql(path)
            present = set(con.sql(f"SELECT * FROM {view} LIMIT 0").columns)
            con.sql(f"CREATE OR REPLACE TABLE _prev_basis AS SELECT id, split, "
                    f"{fingerprint_sql(label_sets, present)} AS _fp FROM {view}")
        else:
            con.sql("CREATE OR REPLACE TABLE _prev_basis (id VARCHAR, split VARCHAR, _fp UBIGINT)")
    rows, meta = parts_files(path.parent, path.name) if path is not None else (None, None)
    if prev.reusable and rows.exists() and meta.exists():
        prev.source_parts = json.loads(meta.read_text(encoding="utf-8"))
        con.sql(f"CREATE OR REPLACE TABLE _prev_parts AS SELECT id, _part, _group FROM read_parquet({sql_str(rows)})")
        prev.groups = True
    else:  # nothing is known unchanged without reading it
        con.sql("CREATE OR REPLACE TABLE _prev_parts (id VARCHAR, _part VARCHAR, _group VARCHAR)")
    return prev


def _duck(t: pa.DataType) -> str:
    return {pa.string(): "VARCHAR", pa.uint64(): "UBIGINT", pa.int64(): "BIGINT"}[t]


# ---------------------------------------------------------------- what changed (narrow columns)


def scan(con: duckdb.DuckDBPyConnection, parts: list[SourcePart], prev: Previous, keys: list[str]) -> None:
    """Table ``_docs``: one row per input document with its part, the narrow columns ``keys``
    (id, url, cluster and stratification columns), ``_was`` (released before) and ``_known``
    (the previous release took it from a part with the same chain: the same row), then with its
    fingerprint (``_fp``; NULL while unknown)."""
    cols = ", ".join(f'"{k}"' for k in keys)
    union = " UNION ALL ".join(f"SELECT {sql_str(p.key)} AS _part, {cols} FROM {p.sql}" for p in parts)
    rest = "".join(f', "{k}"' for k in keys if k != "id")
    same = [p.key for p in parts if p.chain is not None and prev.source_parts.get(p.key, {}).get("chain") == p.chain]
    con.register("_same_chain_arrow", pa.table({"_part": pa.array(same, pa.string())}))
    con.sql("CREATE OR REPLACE TEMP TABLE _same_chain AS SELECT * FROM _same_chain_arrow")
    con.unregister("_same_chain_arrow")
    con.sql(f"""
        CREATE OR REPLACE TABLE _docs AS
        SELECT d.*, CASE WHEN w._part = d._part AND s._part IS NOT NULL THEN p._fp END AS _fp,
               p.id IS NOT NULL AS _was, coalesce(w._part = d._part AND s._part IS NOT NULL, false) AS _known
        FROM (SELECT _part, CAST(id AS VARCHAR) AS id{rest} FROM ({union})) d
        LEFT JOIN (SELECT id, _fp FROM _prev_index WHERE augmented_from IS NULL) p USING (id)
        LEFT JOIN _prev_parts w ON w.id = p.id
        LEFT JOIN _same_chain s ON s._part = d._part
    """)


def last_run_sql(prev: Previous, layout: dict) -> str | None:
    """(id, group_key, clean) of the previous release's documents for a split by difference
    (``release/split.py``): clean when unchanged since (same part, same chain: the same keys and
    stratify value); None when the previous release cannot tell (other settings, no index)."""
    if not prev.groups or prev.manifest.get("layout", {}).get("split") != layout.get("split"):
        return None
    return ("(SELECT w.id, w._group AS group_key, coalesce(d._known, false) AS clean FROM _prev_parts w "
            "LEFT JOIN _docs d USING (id))")


def fingerprint_unknown(con: duckdb.DuckDBPyConnection, parts: list[SourcePart], label_sets) -> int:
    """Fingerprint the documents released before whose fingerprint is not known (their part's
    chain changed, or they moved part): only they are read. Returns how many."""
    todo = dict(con.sql("SELECT _part, count(*) FROM _docs WHERE _was AND _fp IS NULL GROUP BY 1").fetchall())
    if not todo:
        return 0
    con.sql("CREATE OR REPLACE TEMP TABLE _fp_read (_part VARCHAR, id VARCHAR, _fp UBIGINT)")
    for p in parts:
        if p.key not in todo:
            continue
        available = con.sql(f"SELECT * FROM {p.sql} LIMIT 0").columns
        con.sql(f"""
            INSERT INTO _fp_read
            SELECT {sql_str(p.key)}, id, {fingerprint_sql(label_sets)}
            FROM (SELECT {select_list(available, label_sets)} FROM {p.sql})
            WHERE id IN (SELECT id FROM _docs WHERE _part = {sql_str(p.key)} AND _was AND _fp IS NULL)
        """)
    con.sql("UPDATE _docs SET _fp = f._fp FROM _fp_read f WHERE f.id = _docs.id AND f._part = _docs._part")
    return sum(todo.values())


# ---------------------------------------------------------------- the plan


@dataclass
class Plan:
    #: old shard name -> split, for the shards reused as they are
    reused: dict[str, str] = field(default_factory=dict)
    #: old shards whose surviving rows are read back (in order)
    reread: list[tuple[str, str]] = field(default_factory=list)
    #: input part -> documents to read from it
    from_parts: dict[str, int] = field(default_factory=dict)
    folded: int = 0
    rows_reused: int = 0


def plan(con: duckdb.DuckDBPyConnection, prev: Previous, max_bytes: int) -> Plan:
    """Decide, from ids, splits and fingerprints only, which old shards are reused, which are read
    back, and which documents come from the input parts (tables ``_reused``, ``_keep_old``,
    ``_todo``). Needs ``_docs`` and ``split_docs`` (the assignment)."""
    out = Plan()
    con.sql("CREATE OR REPLACE TEMP TABLE _new AS SELECT d._part, d.id, s.split, d._fp, s.group_key "
            "FROM _docs d JOIN split_docs s USING (id)")
    shards = []
    if prev.reusable:
        shards = con.sql("""
            SELECT p._shard, min(p.split), count(*) FILTER (WHERE p.augmented_from IS NULL),
                   bool_and(p.augmented_from IS NOT NULL OR (n.id IS NOT NULL AND n.split = p.split AND n._fp = p._fp)),
                   count(*)
            FROM _prev_index p LEFT JOIN _new n ON n.id = p.id AND p.augmented_from IS NULL
            GROUP BY p._shard ORDER BY 1
        """).fetchall()
    files = prev.manifest.get("files", {})
    readable = {s for s, *_ in shards if prev.path is not None and "text_bytes" in files.get(s, {})
                and _size(prev.path / s) == files[s].get("bytes")}
    # a shard's text bytes (what the bound counts) as the previous manifest records them
    intact = {s: (split, docs, files[s].get("text_bytes", 0), rows) for s, split, docs, ok, rows in shards
              if ok and s in readable}
    per_split = dict(con.sql("SELECT split, count(*) FROM _new GROUP BY 1").fetchall())
    for split in schema.SPLITS:
        mine = {s: v for s, v in intact.items() if v[0] == split}
        pending = per_split.get(split, 0) - sum(v[1] for v in mine.values())
        small = [s for s, v in mine.items() if v[2] < max_bytes / 2]
        if pending > 0 and len(small) >= FOLD_AT:
            out.folded += len(small)
            for s in small:
                mine.pop(s)
        for s, v in sorted(mine.items()):
            out.reused[s] = split
            out.rows_reused += v[3]
    _table(con, "_reused", {"_shard": list(out.reused)})
    _table(con, "_readable", {"_shard": sorted(readable)})
    con.sql("""
        CREATE OR REPLACE TEMP TABLE _origin AS
        SELECT n.*, p._shard AS prev_shard,
               CASE WHEN r._shard IS NOT NULL THEN 'reused'
                    WHEN p.id IS NOT NULL AND k._shard IS NOT NULL AND p.split = n.split AND p._fp = n._fp THEN 'old'
                    ELSE 'parts' END AS origin
        FROM _new n
        LEFT JOIN (SELECT * FROM _prev_index WHERE augmented_from IS NULL) p USING (id)
        LEFT JOIN _reused r ON r._shard = p._shard
        LEFT JOIN _readable k ON k._shard = p._shard
    """)
    con.sql("""
        CREATE OR REPLACE TEMP TABLE _keep_old AS
        SELECT p._shard, p.split, p.id, p._fp, p._ops, p.n_chars AS _nchars
        FROM _prev_index p JOIN _origin o
          ON o.id = coalesce(p.augmented_from, p.id) AND o.origin = 'old' AND o.prev_shard = p._shard
    """)
    con.sql("CREATE OR REPLACE TEMP TABLE _todo AS SELECT _part, id, split FROM _origin WHERE origin = 'parts'")
    con.sql("DROP TABLE _origin")
    con.sql("DROP TABLE _docs")
    out.reread = [(s, sp) for s, sp in con.sql("SELECT DISTINCT _shard, split FROM _keep_old ORDER BY 2, 1").fetchall()]
    out.from_parts = dict(con.sql("SELECT _part, count(*) FROM _todo GROUP BY 1").fetchall())
    return out


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, list]) -> None:
    con.register(f"{name}_arrow", pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}))
    con.sql(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


# ---------------------------------------------------------------- writing


class _IndexSink:
    """The index rows of the rows written, streamed to a Parquet file."""

    def __init__(self, path: Path, schema_: pa.Schema):
        self.path, self.schema = path, schema_
        self._w = pq.ParquetWriter(path, schema_, compression="zstd")
        self._buf: list[pa.Table] = []
        self._n = 0

    def add(self, t: pa.Table) -> None:
        self._buf.append(t)
        self._n += t.num_rows
        if self._n >= 100_000:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._w.write_table(pa.concat_tables(self._buf).cast(self.schema))
            self._buf, self._n = [], 0

    def close(self) -> None:
        self.flush()
        self._w.close()


#: what the writers carry beside a shard's columns: fingerprint, input part, augmentation, characters
_PRIVATE = ("_fp", "_ops", "_nchars")
#: long, nearly unique strings: no dictionary encoding (it is tried and abandoned on every page)
#: and no min/max statistics
_PLAIN = ("url", "title", "text")


def _parquet_writer(path: Path, schema_: pa.Schema) -> pq.ParquetWriter:
    coded = [n for n in schema_.names if n not in _PLAIN]
    return pq.ParquetWriter(path, schema_, compression="zstd", use_dictionary=coded, write_statistics=coded)


def _row_bytes(t: pa.Table) -> np.ndarray:
    def blen(col: str) -> np.ndarray:
        return pc.fill_null(pc.binary_length(t.column(col)), 0).to_numpy(zero_copy_only=False).astype(np.int64)

    return blen("text") + blen("title")


class SplitWriter:
    """Packs one split's rows into new shard files (see the module docstring): ``add`` tables
    with the shard's columns plus ``_fp``, ``_ops`` and ``_nchars``; an original and the copies that
    follow it are never cut apart (the last unit of an ``add`` waits for the next)."""

    def __init__(self, folder: Path, split: str, schema_: pa.Schema, max_bytes: int, sink: _IndexSink, label_sets):
        self.folder, self.split, self.schema, self.max_bytes, self.sink = folder, split, schema_, max_bytes, sink
        self.label_sets = list(label_sets)
        self.files: list[tuple[str, int, int]] = []  # (temporary relative name, rows, text bytes), in order
        self._writer: pq.ParquetWriter | None = None
        self._name = ""
        self._rows = 0
        self._text = 0
        self._fill = 0
        self._buf: list[pa.Table] = []
        self._buf_bytes = 0
        self._buf_rows = 0
        self._carry: pa.Table | None = None

    def add(self, t: pa.Table) -> None:
        if t.num_rows == 0:
            return
        t = t.select([*self.schema.names, *_PRIVATE])
        if self._carry is not None:
            t = pa.concat_tables([self._carry, t])
            self._carry = None
        starts = np.flatnonzero(t.column("augmented_from").is_null().to_numpy(zero_copy_only=False))
        if starts.size == 0 or starts[0] != 0:
            starts = np.concatenate([[0], starts])
        self._carry = t.slice(int(starts[-1]))
        if starts[-1] > 0:
            self._place(t.slice(0, int(starts[-1])), starts[:-1])

    def close(self) -> None:
        if self._carry is not None:
            self._place(self._carry, np.zeros(1, np.int64))
            self._carry = None
        self._close_file()

    def _place(self, t: pa.Table, starts: np.ndarray) -> None:
        nb = _row_bytes(t)
        units = np.add.reduceat(nb, starts).tolist()
        seg = 0
        for s, ub in zip(starts.tolist(), units):
            if self._fill and self._fill + ub > self.max_bytes:
                self._emit(t.slice(seg, s - seg), nb[seg:s])
                self._close_file()
                seg = s
            self._fill += ub
        self._emit(t.slice(seg), nb[seg:])

    def _emit(self, t: pa.Table, nb: np.ndarray) -> None:
        n = t.num_rows
        if n == 0:
            return
        if self._writer is None:
            self._name = f"{_NEW}{self.split}-{len(self.files):05d}.parquet"
            self._writer = _parquet_writer(self.folder / self._name, self.schema)
            self._rows = self._text = 0
        self.sink.add(pa.table({
            "id": t.column("id"), "split": pa.array([self.split] * n, pa.string()),
            "_shard": pa.array([self._name] * n, pa.string()), "_fp": t.column("_fp"),
            "n_chars": t.column("_nchars"),
            "augmented_from": t.column("augmented_from"), "_ops": t.column("_ops"), "source": t.column("source"),
            "lang": t.column("lang"), **{name: t.column(name) for name in self.label_sets},
        }))
        self._buf.append(t.select(self.schema.names).cast(self.schema))
        self._buf_bytes += int(nb.sum())
        self._buf_rows += n
        self._rows += n
        self._text += int(nb.sum())
        if self._buf_bytes >= ROW_GROUP_BYTES or self._buf_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            t = pa.concat_tables(self._buf)
            self._writer.write_table(t, row_group_size=t.num_rows)
            self._buf, self._buf_bytes, self._buf_rows = [], 0, 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self.files.append((self._name, self._rows, self._text))
            self._writer = None
        self._fill = 0


@dataclass
class Written:
    files: dict[str, dict]  # final relative name -> {sha256, rows, bytes, text_bytes, arrow_bytes}
    rows: dict[str, int]  # per split
    reused: int = 0
    written: int = 0
    folded: int = 0
    rows_reused: int = 0
    rows_written: int = 0
    augmentation: dict | None = None


def write(con: duckdb.DuckDBPyConnection, parts: list[SourcePart], prev: Previous, the_plan: Plan, tmp: Path,
          label_sets, max_bytes: int, augment=None) -> Written:
    """Write the new shards into ``tmp/data``, link the reused ones, and write ``tmp/index.parquet``
    (needs :func:`plan`'s tables)."""
    schema_ = arrow_schema(con, label_sets)
    sink = _IndexSink(tmp / ".written-index.parquet", index_schema(label_sets))
    writers = {s: SplitWriter(tmp, s, schema_, max_bytes, sink, label_sets) for s in schema.SPLITS}
    extra = [pa.field("_fp", pa.uint64()), pa.field("_ops", pa.string()), pa.field("_nchars", pa.int64())]
    # 1) the surviving rows of old shards that are not reused, as they were written
    for shard, split in the_plan.reread:
        keep = con.sql(f"SELECT id, _fp, _ops, _nchars FROM _keep_old WHERE _shard = {sql_str(shard)}"
                       ).to_arrow_table()
        for b in pq.ParquetFile(prev.path / shard).iter_batches(batch_size=BATCH_ROWS, columns=schema_.names):
            t = pa.Table.from_batches([b]).cast(schema_)
            pos = pc.index_in(t.column("id"), value_set=keep.column("id"))
            mask = pc.is_valid(pos)
            t, pos = t.filter(mask), pos.filter(mask)
            for f in extra:
                t = t.append_column(f, keep.column(f.name).take(pos))
            writers[split].add(t)
    # 2) new and changed documents from the input parts, each part read once, in key order
    aug = _Augmenter(con, augment, label_sets) if augment is not None else None
    fp = fingerprint_sql(label_sets)
    codes = {s: k for k, s in enumerate(schema.SPLITS)}
    try:
        for p in parts:
            if p.key not in the_plan.from_parts:
                continue
            available = con.sql(f"SELECT * FROM {p.sql} LIMIT 0").columns
            nchars = '"n_chars"' if "n_chars" in available else "length(text)"
            inner = f"SELECT {select_list(available, label_sets)}, CAST({nchars} AS BIGINT) AS _nchars"
            if p.file is not None:  # the split of each row to write, by its position in the file
                where = sql_str(p.file)
                rows = con.sql(f"SELECT f.file_row_number, t.split FROM read_parquet({where}, file_row_number = true) f "
                               f"JOIN _todo t ON t.id = f.id::VARCHAR AND t._part = {sql_str(p.key)}").fetchall()
                n = con.sql(f"SELECT count(*) FROM read_parquet({where})").fetchall()[0][0]
                by_row = np.full(int(n), -1, np.int8)
                if rows:
                    by_row[np.array([r for r, _ in rows], np.int64)] = [codes[x] for _, x in rows]
                query = f"{inner}, file_row_number AS _row FROM read_parquet({where}, file_row_number = true)"
            else:  # a relation: the split of each row by id
                split_of = {i: codes[x] for i, x in
                            con.sql(f"SELECT id, split FROM _todo WHERE _part = {sql_str(p.key)}").fetchall()}
                query = f"{inner} FROM {p.sql}"
            reader = con.sql(f"SELECT *, {fp} AS _fp FROM ({query})").to_arrow_reader(BATCH_ROWS)
            for b in reader:
                t = pa.Table.from_batches([b])
                if p.file is not None:
                    code = by_row[t.column("_row").to_numpy()]
                else:
                    code = np.array([split_of.get(i, -1) for i in t.column("id").to_pylist()], np.int8)
                if (code < 0).any():
                    t, code = t.filter(pa.array(code >= 0)), code[code >= 0]
                if t.num_rows == 0:
                    continue
                t = t.append_column(extra[1], pa.nulls(t.num_rows, pa.string()))
                for s, k in codes.items():
                    sub = t.filter(pa.array(code == k))
                    if sub.num_rows and s == "train" and aug is not None:
                        sub = aug.add_copies(sub)
                    writers[s].add(sub)
            del reader
    finally:
        if aug is not None:
            aug.close()
    for w in writers.values():
        w.close()
    sink.close()
    return _finish(prev, the_plan, writers, tmp, schema_, label_sets)


class _Augmenter:
    def __init__(self, con: duckdb.DuckDBPyConnection, settings, label_sets):
        from dataset_platform.release.augment import synonyms_of

        self.con, self.settings, self.synonyms = con, settings, synonyms_of(settings)
        self.fp = fingerprint_sql(label_sets)
        self.cur = con.cursor()  # the parts stream on ``con``

    def close(self) -> None:
        self.cur.close()

    def add_copies(self, t: pa.Table) -> pa.Table:
        """``t`` with each original's augmented copies right after it."""
        from dataset_platform.release.augment import augment_batch

        pos, ids, texts, ops = augment_batch(t.column("id").to_pylist(), t.column("text").to_pylist(),
                                             self.settings, self.synonyms)
        if not pos:
            return t
        copies = t.take(pa.array(pos, pa.int64()))
        names = copies.column_names
        originals = copies.column("id")
        for name, arr in (("id", pa.array(ids, pa.string())), ("text", pa.array(texts, pa.string())),
                          ("augmented_from", originals),
                          ("_ops", pa.array(ops, pa.string())),
                          ("_nchars", pc.utf8_length(pa.array(texts, pa.string())).cast(pa.int64()))):
            copies = copies.set_column(names.index(name), name, arr)
        data = copies.select([c for c in names if not c.startswith("_")]).append_column(
            "_pos", pa.array(range(len(pos)), pa.int64()))
        self.cur.register("_aug_batch", data)
        fps = self.cur.sql(f"SELECT {self.fp} AS f FROM _aug_batch ORDER BY _pos").to_arrow_table().column("f")
        self.cur.unregister("_aug_batch")
        copies = copies.set_column(names.index("_fp"), "_fp", fps.cast(pa.uint64()))
        order, j, n = [], 0, t.num_rows
        for i in range(n):
            order.append(i)
            while j < len(pos) and pos[j] == i:
                order.append(n + j)
                j += 1
        return pa.concat_tables([t, copies]).take(pa.array(order, pa.int64()))


def _link(src: Path, dest: Path) -> None:
    """A hard link (no copy, no rewrite); a copy where the file system refuses links."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def arrow_bytes(path: Path) -> int:
    """The bytes Hugging Face ``datasets`` counts for this Parquet file once loaded (its share of
    ``SplitInfo.num_bytes``, the card's ``dataset_info``): the sum of ``pyarrow.Table.nbytes`` over
    the record batches its Parquet builder reads (batches of at most the first row group's rows,
    ``datasets/packaged_modules/parquet``), read the same way here. A file with no row group
    counts 0. Deterministic for a given file and pyarrow version; one row group in memory at a time."""
    import pyarrow.dataset as pds

    with open(path, "rb") as f:
        fragment = pds.ParquetFileFormat().make_fragment(f)
        if not fragment.row_groups:
            return 0
        batch = fragment.row_groups[0].num_rows or 1
        return sum(pa.Table.from_batches([b]).combine_chunks().nbytes
                   for b in fragment.to_batches(batch_size=batch, batch_readahead=0, fragment_readahead=0))


def shard_file(split: str, i: int, n: int) -> str:
    return f"data/{split}-{i:05d}-of-{n:05d}.parquet"


def _finish(prev: Previous, the_plan: Plan, writers: dict[str, SplitWriter], tmp: Path, schema_: pa.Schema,
            label_sets) -> Written:
    """Name the shards (reused first, in their order; then the new ones), link or rename them into
    place, and write the version's index."""
    out = Written(files={}, rows={}, folded=the_plan.folded)
    names: dict[str, str] = {}
    old_files = prev.manifest.get("files", {})
    for split in schema.SPLITS:
        reused = sorted(s for s, sp in the_plan.reused.items() if sp == split)
        new = writers[split].files
        n = len(reused) + len(new)
        out.rows[split] = 0
        if n == 0:  # an empty split still gets its (empty) file: loaders expect every split
            rel = shard_file(split, 0, 1)
            # no row group at all: ``datasets`` reads a file's batches by its first row group's
            # rows, and an empty row group makes that 0 (pyarrow refuses a batch size of 0)
            _parquet_writer(tmp / rel, schema_).close()
            out.files[rel] = {"sha256": sha256_file(tmp / rel), "rows": 0, "bytes": (tmp / rel).stat().st_size,
                              "text_bytes": 0, "arrow_bytes": 0}
            out.written += 1
            continue
        for i, old in enumerate(reused):
            rel = names[old] = shard_file(split, i, n)
            _link(prev.path / old, tmp / rel)
            meta = old_files[old]
            out.files[rel] = {k: meta[k] for k in ("sha256", "rows", "bytes", "text_bytes")}
            # a version written before ``arrow_bytes`` was recorded: measured once
            out.files[rel]["arrow_bytes"] = int(meta["arrow_bytes"]) if "arrow_bytes" in meta else arrow_bytes(tmp / rel)
            out.reused += 1
            out.rows_reused += int(meta["rows"])
        for i, (name, rows, text) in enumerate(new, len(reused)):
            rel = names[name] = shard_file(split, i, n)
            os.replace(tmp / name, tmp / rel)
            out.files[rel] = {"sha256": sha256_file(tmp / rel), "rows": rows, "bytes": (tmp / rel).stat().st_size,
                              "text_bytes": text, "arrow_bytes": arrow_bytes(tmp / rel)}
            out.written += 1
            out.rows_written += rows
        out.rows[split] = sum(out.files[shard_file(split, i, n)]["rows"] for i in range(n))
    _write_index(prev, the_plan, names, tmp, label_sets)
    if any(True for _ in (tmp / "data").glob(".*")):
        raise RuntimeError(f"{tmp / 'data'}: a shard was written but not named")
    return out


def _write_index(prev: Previous, the_plan: Plan, names: dict[str, str], tmp: Path, label_sets) -> None:
    """``tmp/index.parquet``: the reused shards' rows as the previous index has them (their shard
    renamed), then the rows written; streamed (no sort: the order is deterministic)."""
    schema_ = index_schema(label_sets)
    old = pa.array(list(names), pa.string())
    new = pa.array(list(names.values()), pa.string())

    def renamed(t: pa.Table) -> pa.Table:
        i = schema_.get_field_index("_shard")
        return t.set_column(i, "_shard", new.take(pc.index_in(t.column("_shard"), value_set=old)))

    written = tmp / ".written-index.parquet"
    reused = pa.array(sorted(the_plan.reused), pa.string())
    w = pq.ParquetWriter(tmp / INDEX, schema_, compression="zstd")
    try:
        if len(reused):
            for b in pq.ParquetFile(prev.path / INDEX).iter_batches(batch_size=100_000, columns=schema_.names):
                t = pa.Table.from_batches([b]).cast(schema_)
                t = t.filter(pc.is_in(t.column("_shard"), value_set=reused))
                if t.num_rows:
                    w.write_table(renamed(t))
        for b in pq.ParquetFile(written).iter_batches(batch_size=100_000):
            w.write_table(renamed(pa.Table.from_batches([b]).cast(schema_)))
    finally:
        w.close()
    written.unlink()
