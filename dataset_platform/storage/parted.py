"""A layer stored as immutable parts, so that a refresh writes what is new, not the whole layer.

::

    <folder>/parts.json             the commit point: generation, the live parts, the map file
    <folder>/map-<gen>.parquet      id, row_hash, part of every stored row
    <folder>/p<gen>/data.parquet    one part: the rows one run added (in id order)
    <folder>/.staging/p<gen>/       a part written by a run that has not committed yet

The layer is the union of the live parts (``<folder>/*/data.parquet``). A run states the rows the
layer must hold: a table of (id, row_hash), ``row_hash`` a fingerprint of everything the row
carries. Rows already stored under the same fingerprint stay where they are; new or changed rows
go into one new part; a part holding a row that must go (dropped, changed, vanished upstream) is
*dirty*: its rows that stay are copied into the new part and it is deleted. So a refresh costs in
proportion to the new rows and the dirty parts, not the layer. When more than ``max_parts`` parts
would be live, the smallest are folded into the new part too (amortised compaction).

Order of a write: the new part goes to ``.staging/``; ``parts.json`` is replaced atomically (the
commit); then the dirty parts are deleted and the new part moved in. A run that fails before the
commit leaves the layer as it was; one that fails after it is completed by the next :meth:`load`
(a committed part still in staging is moved in, folders no commit names are removed). Readers of
the folder may, for the instant between the two renames, miss the rows being moved. Nothing here
imports Dagster.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb

from dataset_platform.storage import sql_str, write_parquet

DATA = "data.parquet"


class PartedLayer:
    #: live parts before the smallest are folded into a run's new part
    MAX_PARTS = 24

    def __init__(self, folder: Path, layer: str):
        self.folder = Path(folder)
        self.layer = layer
        self.generation = 0
        self.parts: list[str] = []
        self._plan: dict | None = None

    # ------------------------------------------------------------------ reading
    def _meta(self) -> dict:
        f = self.folder / "parts.json"
        try:
            return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
        except (OSError, ValueError):
            return {}

    def part_file(self, part: str) -> Path:
        return self.folder / part / DATA

    def _staged(self, part: str) -> Path:
        return self.folder / ".staging" / part / DATA

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Finish a committed write that was interrupted, drop what no commit names, and create
        ``_layer_map`` (id, row_hash, part) on ``con``."""
        meta = self._meta()
        self.generation = int(meta.get("generation", 0))
        self.parts = list(meta.get("parts", []))
        for part in self.parts:  # committed but not yet moved in
            if not self.part_file(part).exists() and self._staged(part).exists():
                self._move_in(part)
        if meta:  # (the single file of the old layout stays until the first commit replaces it)
            self._remove_unnamed(meta)
        missing = [p for p in self.parts if not self.part_file(p).exists()]
        if missing:
            raise FileNotFoundError(f"{self.folder}: committed parts {missing} are missing; delete parts.json "
                                    "to rebuild the layer from its input")
        if meta.get("map"):
            con.sql(f"CREATE OR REPLACE TABLE _layer_map AS SELECT id, row_hash, part "
                    f"FROM read_parquet({sql_str(self.folder / meta['map'])})")
        else:
            con.sql("CREATE OR REPLACE TABLE _layer_map (id VARCHAR, row_hash UBIGINT, part VARCHAR)")

    def _remove_unnamed(self, meta: dict) -> None:
        if not self.folder.is_dir():
            return
        named = {*self.parts, "parts.json", meta.get("map")}
        for p in self.folder.iterdir():
            if p.name in named or p.name.startswith("."):
                continue
            if (p.is_dir() and (p / DATA).exists()) or p.name == DATA or p.name.startswith("map-"):
                _remove(p)  # a part no commit names, or the single file of the old layout
        staging = self.folder / ".staging"
        if staging.is_dir():
            for p in staging.iterdir():
                if p.name not in self.parts:
                    _remove(p)

    # ------------------------------------------------------------------ writing
    def write(self, con: duckdb.DuckDBPyConnection, want: str, rows_for: Callable[[str], str],
              log: Callable[[str], None] = lambda _m: None) -> int:
        """Stage the new part. ``want``: a table or query of (id, row_hash), the rows the layer
        must hold after this run. ``rows_for(ids_sql)``: SQL of those rows (the layer's columns)
        for the ids of ``ids_sql`` (``None``: all of ``want``). Returns the rows staged; call
        :meth:`commit` once everything else of the run is written."""
        con.sql(f"CREATE OR REPLACE TABLE _layer_want AS SELECT id, row_hash FROM ({want})")
        con.sql("CREATE OR REPLACE TABLE _layer_new AS SELECT w.id FROM _layer_want w "
                "ANTI JOIN _layer_map m ON m.id = w.id AND m.row_hash = w.row_hash")
        sizes = dict(con.sql("SELECT part, count(*) FROM _layer_map GROUP BY 1").fetchall())
        dirty = {r[0] for r in con.sql("SELECT DISTINCT m.part FROM _layer_map m ANTI JOIN _layer_want w "
                                       "ON w.id = m.id AND w.row_hash = m.row_hash").fetchall()}
        clean = sorted((p for p in self.parts if p not in dirty), key=lambda p: (sizes.get(p, 0), p))
        while len(clean) + 1 > self.MAX_PARTS:  # fold the smallest parts into the new one
            dirty.add(clean.pop(0))
        new_rows = con.sql("SELECT count(*) FROM _layer_new").fetchall()[0][0]
        part = f"p{self.generation + 1:06d}"
        self._plan = {"part": part, "dirty": sorted(dirty), "clean": sorted(clean), "written": None}  # rows staged
        if new_rows == 0 and not dirty and self.parts:
            log(f"{self.layer}: nothing new; the {len(self.parts)} stored part(s) stay as they are")
            return 0
        if not self.parts:  # no history: every row is new
            query = rows_for(None)
        else:
            query = rows_for("SELECT id FROM _layer_new")
            if dirty:
                files = ", ".join(sql_str(self.part_file(p)) for p in sorted(dirty))
                query = (f"SELECT * FROM ({query}) UNION ALL BY NAME SELECT o.* FROM read_parquet([{files}]) o "
                         "SEMI JOIN _layer_want w ON w.id = o.id ANTI JOIN _layer_new n ON n.id = o.id")
            query = f"SELECT * FROM ({query}) ORDER BY id"
        staged = self._staged(part)
        if staged.parent.exists():
            _remove(staged.parent)
        n = write_parquet(con, query, staged, layer=self.layer)
        self._plan["written"] = n
        log(f"{self.layer}: new part {part} with {n} rows ({new_rows} new or changed"
            + (f", {n - new_rows} moved from {len(dirty)} rewritten part(s)" if dirty else "") + f"); "
            f"{len(clean)} part(s) untouched")
        return n

    def commit(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make the staged part live (see the module docstring for the order)."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("commit() without write()")
        if plan["written"] is None:
            return
        part, gen = plan["part"], self.generation + 1
        live = plan["clean"] + [part]
        map_name = f"map-{gen:06d}.parquet"
        clean_list = ", ".join(sql_str(p) for p in plan["clean"]) or "NULL"
        rows = write_parquet(
            con,
            f"SELECT id, row_hash, part FROM _layer_map WHERE part IN ({clean_list}) "
            f"UNION ALL SELECT o.id, w.row_hash, '{part}' FROM read_parquet({sql_str(self._staged(part))}) o "
            "JOIN _layer_want w ON w.id = o.id ORDER BY id",
            self.folder / map_name,
        )
        meta = {"generation": gen, "parts": live, "map": map_name, "rows": rows}
        tmp = self.folder / f".parts.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / "parts.json")  # the commit
        self.generation, self.parts = gen, live
        for p in plan["dirty"]:
            _remove(self.folder / p)
        self._move_in(part)
        self._remove_unnamed(meta)
        self._plan = None

    def _move_in(self, part: str) -> None:
        src = self._staged(part).parent
        os.replace(src, self.folder / part)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()
