"""A layer stored by batch: one part per landed batch (or slice of a large one), written whole.

::

    <folder>/manifest.json            the commit point: generation, every live part and its counters
    <folder>/<key>/data.parquet       a part's rows (the layer's columns, in id order)
    <folder>/<key>/rejected.parquet   what the stage dropped from the part's input (stages only)
    <folder>/<key>/part.json          the part's own record (its generation: for recovery)
    <folder>/.staging/<key>/          a part written by a run that has not committed yet
    <folder>/.lock                    one writer at a time (an OS lock: released if the writer dies)

A part's ``key`` is ``<source>/<part>`` (the raw layer keeps one such folder per source, keys
``<part>``). The layer is the union of the live parts' ``data.parquet`` files; readers glob them.

What a part records (:class:`PartInfo`) is what lets the layer below skip work:

* ``chain``: a fingerprint of how its rows were computed (the stage's code version and settings
  and, recursively, its input part's chain). Two parts with the same chain hold the same row for
  an id whenever both hold that id.
* ``ids``: a fingerprint of the set of ids in ``data.parquet``; ``input_ids``: that of the input
  part when this part was computed.

A stage below reprocesses a part only when its expected chain differs (everything), or its
input's ids differ (only the ids that are new to it; ids that left are dropped).

Order of a write: every new or changed part goes to ``.staging/<key>/`` (``part.json`` last);
``manifest.json`` is replaced atomically (the commit); then each staged folder is moved in. A
run that fails before the commit leaves the layer as it was, and its staged parts stay where a
later run of the same work may adopt them (:meth:`BatchedLayer.adopt`) instead of computing them
again. One that fails after the commit is completed by the next :meth:`BatchedLayer.load`. A
reader may, for the instant between two renames, miss a part being moved. Nothing here imports
Dagster.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import duckdb

from dataset_platform import atomic

MANIFEST = "manifest.json"
PART_JSON = "part.json"
DATA = "data.parquet"
REJECTED = "rejected.parquet"
#: the ids fingerprint of an empty part
NO_IDS = "0:0000000000000000"


@dataclass(frozen=True)
class PartInfo:
    key: str
    gen: int = 0  # the layer generation that wrote the part's files
    chain: str = ""  # how its rows were computed (see the module docstring)
    ids: str = NO_IDS  # fingerprint of the ids in data.parquet
    input_ids: str = ""  # fingerprint of the input part's ids when computed
    rows: int = 0  # rows in data.parquet
    #: stage counters: input, kept, rejected, reasons {rule: n}, extra {name: number}
    counters: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> PartInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def ids_fingerprint(con: duckdb.DuckDBPyConnection, relation_sql: str) -> str:
    """Fingerprint of the set of ids of a relation (order-independent: count and xor of md5s)."""
    n, x = con.sql(f"SELECT count(*), coalesce(bit_xor(md5_number_upper(CAST(id AS VARCHAR))), 0) "
                   f"FROM ({relation_sql})").fetchall()[0]
    return f"{int(n)}:{int(x):016x}"


def ids_fingerprints(con: duckdb.DuckDBPyConnection, relation_sql: str, key_col: str = "key") -> dict[str, str]:
    """:func:`ids_fingerprint` per value of ``key_col`` in one pass."""
    rows = con.sql(f"SELECT {key_col}, count(*), coalesce(bit_xor(md5_number_upper(CAST(id AS VARCHAR))), 0) "
                   f"FROM ({relation_sql}) GROUP BY 1").fetchall()
    return {k: f"{int(n)}:{int(x):016x}" for k, n, x in rows}


class BatchedLayer:
    def __init__(self, folder: Path, name: str):
        self.folder = Path(folder)
        self.name = name
        self.generation = 0
        self.parts: dict[str, PartInfo] = {}
        self.extra: dict = {}
        self._staged: dict[str, PartInfo] = {}
        self._dropped: set[str] = set()
        self._loaded = False

    # ------------------------------------------------------------------ reading
    def _read_manifest(self) -> dict:
        f = self.folder / MANIFEST
        if not f.exists():
            return {}
        return json.loads(f.read_text(encoding="utf-8"))

    def exists(self) -> bool:
        return (self.folder / MANIFEST).exists()

    def load(self) -> BatchedLayer:
        """Read the commit point, finish a commit that was interrupted, remove what no commit
        names (staged parts stay: a later run may adopt them)."""
        meta = self._read_manifest()
        self.generation = int(meta.get("generation", 0))
        self.parts = {k: PartInfo.from_json({**v, "key": k}) for k, v in sorted(meta.get("parts", {}).items())}
        self.extra = dict(meta.get("extra", {}))
        self._staged, self._dropped = {}, set()
        for key, info in self.parts.items():
            if _gen_of(self.part_dir(key)) == info.gen:
                continue
            staged = self._staging(key)
            if _gen_of(staged) == info.gen:  # committed, not yet moved in
                self._move_in(key)
            else:
                raise FileNotFoundError(
                    f"{self.folder}: committed part {key} (generation {info.gen}) is missing; delete "
                    f"{self.folder / MANIFEST} to rebuild the layer from its input")
        self._remove_unnamed()
        self._loaded = True
        return self

    def part_dir(self, key: str) -> Path:
        return self.folder / key

    def file(self, key: str, name: str = DATA) -> Path:
        return self.folder / key / name

    def files(self, name: str = DATA, keys: list[str] | None = None) -> list[Path]:
        """Files ``name`` of the live parts (of ``keys``), in key order, that exist."""
        out = []
        for k in sorted(self.parts if keys is None else keys):
            f = self.file(k, name)
            if f.exists():
                out.append(f)
        return out

    def rows(self) -> int:
        return sum(p.rows for p in self.parts.values())

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def locked(self) -> Iterator[BatchedLayer]:
        """Hold the layer's writer lock, load it, and yield it (one writer at a time)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield self.load()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @property
    def next_generation(self) -> int:
        return self.generation + 1

    def stage(self, key: str) -> Path:
        """An empty staging folder for a new version of part ``key``: write its files there, then
        call :meth:`staged`."""
        d = self._staging(key)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def staged(self, info: PartInfo) -> PartInfo:
        """Record the files written into :meth:`stage`'s folder as the part's next version."""
        info = replace(info, gen=self.next_generation)
        atomic.write_text(self._staging(info.key) / PART_JSON, json.dumps(asdict(info), sort_keys=True) + "\n")
        self._staged[info.key] = info
        self._dropped.discard(info.key)
        return info

    def adopt(self, key: str, chain: str, input_ids: str) -> PartInfo | None:
        """A part staged by an earlier run that did not commit, if it was computed the same way
        from the same input (then it is staged for this commit as it is); else None."""
        d = self._staging(key)
        f = d / PART_JSON
        if not f.exists():
            return None
        try:
            info = PartInfo.from_json(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        if info.key != key or info.chain != chain or info.input_ids != input_ids or not (d / DATA).exists():
            return None
        return self.staged(info)

    def drop(self, key: str) -> None:
        """The part leaves the layer at the next commit."""
        self._staged.pop(key, None)
        if key in self.parts:
            self._dropped.add(key)

    def keep(self, info: PartInfo) -> None:
        """Update what the manifest records of a live part whose files stay as they are."""
        if info.key not in self.parts:
            raise KeyError(info.key)
        self.parts[info.key] = replace(info, gen=self.parts[info.key].gen)

    @property
    def pending(self) -> bool:
        return bool(self._staged or self._dropped)

    def commit(self, extra: dict | None = None) -> None:
        """Make the staged parts live and the dropped ones go (see the module docstring)."""
        if extra is not None:
            self.extra = dict(extra)
        gen = self.next_generation
        parts = {k: v for k, v in self.parts.items() if k not in self._dropped}
        parts.update(self._staged)
        meta = {"layer": self.name, "generation": gen, "rows": sum(p.rows for p in parts.values()),
                "parts": {k: _part_json(v) for k, v in sorted(parts.items())}, "extra": self.extra}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.folder / MANIFEST, json.dumps(meta, indent=1, sort_keys=True) + "\n")  # the commit
        self.generation, self.parts = gen, dict(sorted(parts.items()))
        for key in sorted(self._staged):
            self._move_in(key)
        for key in sorted(self._dropped):
            _remove(self.part_dir(key))
        self._staged, self._dropped = {}, set()
        self._remove_unnamed()

    # ------------------------------------------------------------------ internals
    def _staging(self, key: str) -> Path:
        return self.folder / ".staging" / key

    def _move_in(self, key: str) -> None:
        live, staged = self.part_dir(key), self._staging(key)
        live.parent.mkdir(parents=True, exist_ok=True)
        if live.exists():
            trash = self.folder / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(live, trash)
        os.replace(staged, live)
        _remove(self.folder / ".trash")

    def _remove_unnamed(self) -> None:
        """Part folders no commit names (and the single file of a layer written before parts)."""
        if not self.folder.is_dir():
            return
        for p in self.folder.iterdir():
            if p.name.startswith(".") or p.name == MANIFEST:
                continue
            if p.is_file():
                if p.suffix == ".parquet" or p.name in ("stats.json", "merged.json", "parts.json"):
                    p.unlink()  # a layer file of an earlier version of this package
                continue
            if (p / PART_JSON).exists() or (p / DATA).exists():  # a part of a depth-1 layer
                if p.name not in self.parts:
                    _remove(p)
                continue
            for q in list(p.iterdir()) if p.is_dir() else []:
                if q.is_dir() and f"{p.name}/{q.name}" not in self.parts and (
                        (q / PART_JSON).exists() or (q / DATA).exists()):
                    _remove(q)
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        _remove(self.folder / ".trash")


def _part_json(info: PartInfo) -> dict:
    d = asdict(info)
    d.pop("key")
    return d


def _gen_of(part_dir: Path) -> int | None:
    try:
        return int(json.loads((part_dir / PART_JSON).read_text(encoding="utf-8"))["gen"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()
